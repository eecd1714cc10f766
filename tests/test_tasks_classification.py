"""Classification on a model whose logits are the mean of each input channel (so answers are known)."""

from __future__ import annotations

import json

import models
import numpy as np
import pytest

import aioinfer
from aioinfer import tasks
from aioinfer.tasks._classification import probabilities
from aioinfer.tasks._preprocess import embed_normalization

pytestmark = pytest.mark.anyio


def softmax(x):
    e = np.exp(np.asarray(x, np.float64) - np.max(x))
    return e / e.sum()


async def test_top_k_with_labels_and_softmax():
    async with tasks.load(
        models.channel_means(), task="classification", labels=["blue", "green", "red"], config=models.EXACT
    ) as cls:
        image = np.zeros((48, 64, 3), np.uint8)
        image[:] = (1, 3, 2)  # BGR: the model sees raw BGR channels
        pred = await cls.predict(image)
        expected = softmax([1, 3, 2])
        assert [(c.label, c.label_id) for c in pred.classes] == [("green", 1), ("red", 2), ("blue", 0)]
        assert [c.score for c in pred.classes] == pytest.approx([expected[1], expected[2], expected[0]])
        assert pred.top.label == "green" and pred.image_size == (48, 64)
        cls.update_settings(top_k=1)
        assert [c.label for c in (await cls.predict(image)).classes] == ["green"]
        cls.update_settings(top_k=3, min_score=0.3)
        assert [c.label for c in (await cls.predict(image)).classes] == ["green"]
        json.dumps(pred.to_dict())
        assert cls.info.input_size == (32, 32) and cls.info.to_dict()["labels"] == ["blue", "green", "red"]


MODEL_INFO = {"mean_values": "10 20 30", "scale_values": "2", "reverse_input_channels": "True"}


@pytest.mark.parametrize(
    ("normalization", "model_info", "logits"),
    [
        # B, G, R (100, 60, 40) → RGB (40, 60, 100) → ((40-10)/2, (60-20)/4, (100-30)/5)
        pytest.param(
            tasks.Normalization(mean=(10, 20, 30), scale=(2, 4, 5), rgb=True), {}, [15, 10, 14], id="given"
        ),
        # → RGB (40, 60, 100) → ((40-10)/2, (60-20)/2, (100-30)/2)
        pytest.param(None, MODEL_INFO, [15, 20, 35], id="from-runtime-info"),
        pytest.param(  # the given one wins over the model's
            tasks.Normalization(mean=(10, 20, 30), scale=(2, 4, 5), rgb=True),
            MODEL_INFO,
            [15, 10, 14],
            id="given-over-runtime-info",
        ),
    ],
)
async def test_normalization_and_rgb_order_run_in_the_graph(normalization, model_info, logits):
    model = models.channel_means()
    for key, value in model_info.items():
        model.set_rt_info(value, ["model_info", key])
    async with tasks.load(
        model, task="classification", normalization=normalization, config=models.EXACT
    ) as cls:
        image = np.zeros((32, 32, 3), np.uint8)
        image[:] = (100, 60, 40)
        pred = await cls.predict(image)
        expected = softmax(logits)
        assert {c.label_id: c.score for c in pred.classes} == pytest.approx(dict(enumerate(expected)))


async def test_labels_from_the_models_runtime_info():
    model = models.channel_means()
    model.set_rt_info("cat dog bird", ["model_info", "labels"])
    cls = await tasks.load(model, task="classification", config=models.EXACT)  # the awaitable form
    assert cls.labels == ("cat", "dog", "bird")
    await cls.aclose()
    assert cls.model.closed


def test_probabilities_pass_through_or_softmax():
    assert probabilities(np.array([0.2, 0.8])).tolist() == pytest.approx([0.2, 0.8])
    assert probabilities(np.array([[0.0, 0.0]])).tolist() == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize(
    ("normalization", "logits"),
    [
        # as in the graph: B, G, R (100, 60, 40) → RGB (40, 60, 100) → ((40-10)/2, (60-20)/4, (100-30)/5)
        pytest.param(
            tasks.Normalization(mean=(10, 20, 30), scale=(2, 4, 5), rgb=True), [15, 10, 14], id="given"
        ),
        pytest.param(None, [100, 60, 40], id="raw-bgr"),  # a loaded model's runtime info is not at hand
    ],
)
async def test_a_loaded_model_with_float_input_is_normalized_on_the_worker_thread(normalization, logits):
    model = await aioinfer.load(models.channel_means(), device="CPU", config=models.EXACT)
    assert model.info.inputs[0].shape == (1, 3, 32, 32) and model.info.inputs[0].element_type == "f32"
    async with tasks.load(model, task="classification", normalization=normalization) as cls:
        assert cls.model is model and cls.input_size == (32, 32)
        image = np.zeros((48, 64, 3), np.uint8)
        image[:] = (100, 60, 40)
        pred = await cls.predict(image)
        expected = softmax(logits)
        assert {c.label_id: c.score for c in pred.classes} == pytest.approx(dict(enumerate(expected)))
    assert model.closed


async def test_a_loaded_model_that_takes_bgr_images_gets_them_as_they_are():
    normalized = embed_normalization(models.channel_means(), tasks.Normalization(mean=(10, 20, 30)))
    model = await aioinfer.load(normalized, device="CPU", config=models.EXACT)
    assert model.info.inputs[0].shape == (1, 32, 32, 3) and model.info.inputs[0].element_type == "u8"
    async with tasks.load(model, task="classification") as cls:
        image = np.zeros((32, 32, 3), np.uint8)
        image[:] = (100, 60, 40)
        pred = await cls.predict(image)
        expected = softmax([90, 40, 10])  # the model's own normalization, once
        assert {c.label_id: c.score for c in pred.classes} == pytest.approx(dict(enumerate(expected)))
    again = await aioinfer.load(normalized, device="CPU", config=models.EXACT)
    with pytest.raises(aioinfer.SettingsError, match="takes uint8 BGR images, which the model normalizes"):
        await tasks.load(again, task="classification", normalization=tasks.Normalization(scale=(2, 2, 2)))
    assert again.closed


async def test_a_loaded_model_that_takes_no_images_is_refused_and_closed():
    model = await aioinfer.load(models.linear(), device="CPU", config=models.EXACT)
    with pytest.raises(aioinfer.ModelLoadError, match=r"input 'x' of shape \[-1, 4\] takes no images"):
        await tasks.load(model, task="classification")
    assert model.closed
