"""Segmentation on a model whose per-pixel class scores are the input channels themselves, and on
crafted constant score and id maps."""

from __future__ import annotations

import json

import cv2
import models
import numpy as np
import pytest

import aioinfer
from aioinfer import tasks

pytestmark = pytest.mark.anyio


async def test_class_map_is_resized_back_to_the_image():
    async with tasks.load(
        models.identity_image(), task="segmentation", labels=["blue", "green", "red"], config=models.EXACT
    ) as seg:
        image = np.zeros((48, 64, 3), np.uint8)
        image[:, :32] = (255, 0, 0)  # left half blue (channel 0)
        image[:, 32:] = (0, 0, 255)  # right half red (channel 2)
        pred = await seg.predict(image)
        assert pred.class_map.shape == (48, 64) and pred.class_map.dtype == np.int32
        assert (pred.class_map[:, :30] == 0).all() and (pred.class_map[:, 34:] == 2).all()
        data = json.loads(json.dumps(pred.to_dict()))
        assert [c["label"] for c in data["classes"]] == ["blue", "red"]
        assert sum(c["pixels"] for c in data["classes"]) == 48 * 64
        assert len(pred.to_dict(include_map=True)["class_map"]) == 48
        drawn = seg.draw(image, pred)
        assert drawn.shape == image.shape and not np.array_equal(drawn, image)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(np.random.default_rng(0).integers(0, 3, (1, 5, 8, 8)), id="5-class-scores-with-ties"),
        pytest.param(np.random.default_rng(1).random((1, 2, 8, 8)), id="2-class-scores"),
        pytest.param(np.random.default_rng(2).integers(0, 4, (1, 1, 8, 8)), id="ids-1x1xHxW"),
        pytest.param(np.random.default_rng(3).integers(0, 4, (1, 8, 8)), id="ids-1xHxW"),
    ],
)
async def test_class_map_of_scores_or_ids_matches_numpy(head):
    head = head.astype(np.float32)
    expected = head[0].argmax(axis=0) if head.ndim == 4 and head.shape[1] > 1 else head.reshape(8, 8)
    expected = expected.astype(np.int32)
    async with tasks.load(
        models.constant_head([1, 3, 8, 8], head), task="segmentation", config=models.EXACT
    ) as seg:
        (out,) = seg.model.info.outputs
        if head.ndim == 4 and head.shape[1] > 1:  # the arg-max is in the graph: only the ids come back
            assert (out.names, out.shape, out.element_type) == (("ids",), (1, 8, 8), "i32")
        same_size = await seg.predict(np.zeros((8, 8, 3), np.uint8))
        np.testing.assert_array_equal(same_size.class_map, expected)  # ties: the lowest id, as numpy
        larger = await seg.predict(np.zeros((20, 28, 3), np.uint8))
        assert larger.class_map.dtype == np.int32
        np.testing.assert_array_equal(
            larger.class_map, cv2.resize(expected, (28, 20), interpolation=cv2.INTER_NEAREST)
        )


async def test_a_loaded_model_segments_as_the_same_model_loaded_by_the_task():
    # the task cannot build its arg-max into a model loaded already: it runs on the scores in Python
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = (255, 0, 0)
    image[:, 32:] = (0, 0, 255)
    image[20:30] = (0, 200, 0)
    async with tasks.load(models.identity_image(), task="segmentation", config=models.EXACT) as seg:
        want = await seg.predict(image)
    model = await aioinfer.load(models.identity_image(), device="CPU", config=models.EXACT)
    async with tasks.load(model, task="segmentation") as seg:
        assert seg.model.info.outputs[0].shape == (1, 3, 32, 32)  # the scores, not ids
        got = await seg.predict(image)
    np.testing.assert_array_equal(got.class_map, want.class_map)
    assert set(np.unique(got.class_map)) == {0, 1, 2}
