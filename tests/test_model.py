"""``load()`` and ``AsyncModel``: both ways to open and close a model, what ``model.info`` reports,
and a real pretrained model giving the same answers as OpenVINO's synchronous call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import models
import numpy as np
import openvino as ov
import pytest
from concurrency import gather

import aioinfer

pytestmark = pytest.mark.anyio


async def test_async_with_closes_the_model() -> None:
    async with aioinfer.load(models.linear(), device="CPU", config=models.EXACT) as model:
        assert isinstance(model, aioinfer.AsyncModel)
        assert not model.closed
        out = await model(np.ones((2, 4), np.float32))  # __call__ is infer
        np.testing.assert_array_equal(out[0], np.full((2, 4), 3, np.float32))
    assert model.closed
    with pytest.raises(aioinfer.ClosedError, match="closed"):
        await model.infer(np.ones((1, 4), np.float32))


async def test_async_with_closes_the_model_when_the_body_raises() -> None:
    with pytest.raises(LookupError):
        async with aioinfer.load(models.linear(), device="CPU") as model:
            raise LookupError("the body failed")
    assert model.closed


async def test_awaited_load_and_aclose_twice() -> None:
    model = await aioinfer.load(models.linear(), device="CPU", config=models.EXACT)
    out = await model.infer(np.zeros((1, 4), np.float32))
    np.testing.assert_array_equal(out["y"], np.ones((1, 4), np.float32))
    assert "linear" in repr(model) and "CPU" in repr(model)
    await model.aclose()
    await model.aclose()  # idempotent
    assert model.closed and "closed" in repr(model)
    with pytest.raises(aioinfer.ClosedError):
        await model.infer(np.zeros((1, 4), np.float32))


async def test_info_describes_the_model_and_how_it_runs() -> None:
    async with aioinfer.load(models.two_in_two_out(), device="CPU", num_requests=3) as model:
        info = model.info
    assert info.name == "two_by_two"
    assert [i.name for i in info.inputs] == ["a", "b"]
    assert [i.shape for i in info.inputs] == [(2, 3), (2, 3)]
    assert [i.element_type for i in info.inputs] == ["f32", "i32"]
    assert [i.dtype for i in info.inputs] == [np.dtype(np.float32), np.dtype(np.int32)]
    assert [o.name for o in info.outputs] == ["sum", "prod"]
    assert [o.names for o in info.outputs] == [("sum",), ("prod",)]
    assert info.device == "CPU"
    assert info.execution_devices == ("CPU",)
    assert info.num_requests == 3
    assert info.config["PERFORMANCE_HINT"] == "THROUGHPUT"  # aioinfer's default hint
    as_json = json.loads(json.dumps(info.to_dict()))
    assert as_json["inputs"][1] == {"name": "b", "names": ["b"], "shape": [2, 3], "element_type": "i32"}
    assert as_json["num_requests"] == 3


async def test_info_shows_dynamic_dimensions_as_minus_one_and_the_callers_hint() -> None:
    config = {"PERFORMANCE_HINT": "LATENCY"}
    async with aioinfer.load(models.dynamic_sum(), device="CPU", config=config) as model:
        info = model.info
    assert info.inputs[0].shape == (-1, -1)
    assert info.outputs[0].shape == (-1,)
    assert info.config["PERFORMANCE_HINT"] == "LATENCY"


async def test_auto_device_reports_where_it_executes() -> None:
    async with aioinfer.load(models.linear(), device="AUTO", config=models.EXACT) as model:
        out = await model.infer(np.full((1, 4), 5, np.float32))
        info = model.info
    np.testing.assert_array_equal(out[0], np.full((1, 4), 11, np.float32))
    assert info.device == "AUTO"
    assert any("CPU" in d for d in info.execution_devices), info.execution_devices


async def test_pretrained_classifier_matches_openvinos_synchronous_call() -> None:
    """The PP-OCR text-orientation classifier shipped in the rapidocr wheel, compiled the same way
    (CPU, THROUGHPUT, f32): the awaited answer is the synchronous answer, bit for bit."""
    path = models.rapidocr_model("cls")
    config = {"PERFORMANCE_HINT": "THROUGHPUT", **models.EXACT}
    reference = ov.Core().compile_model(str(path), "CPU", config)
    rng = np.random.default_rng(3)
    xs = [rng.random((int(rng.integers(1, 4)), 3, 48, 192), np.float32) for _ in range(12)]
    expected = [reference(x)[0] for x in xs]

    async with aioinfer.load(path, device="CPU", config=models.EXACT) as model:
        outs = await gather(*(model.infer(x) for x in xs))
        info = model.info
    assert info.inputs[0].shape == (-1, 3, -1, -1)
    assert info.outputs[0].shape == (-1, 2)
    for x, want, out in zip(xs, expected, outs, strict=True):
        assert out[0].shape == (len(x), 2)
        np.testing.assert_array_equal(out[0], want)
        np.testing.assert_allclose(out[0].sum(axis=1), 1, rtol=1e-5)  # softmax over two orientations


async def test_infer_in_two_halves_adapt_anywhere_then_run_adapted(linear_model) -> None:
    x = np.arange(8, dtype=np.float64).reshape(2, 4)
    arrays = await anyio.to_thread.run_sync(linear_model.adapt, x)  # checked and converted off the loop
    assert list(arrays) == [0] and arrays[0].dtype == np.float32
    assert linear_model.stats().submitted == 0  # adapting runs nothing
    out = await linear_model.run_adapted(arrays)
    np.testing.assert_array_equal(out["y"], models.linear_expected(x))
    with pytest.raises(aioinfer.InputShapeError, match=r"expected shape \[\?,4\], got \[1, 5\]"):
        linear_model.adapt(np.ones((1, 5), np.float32))
    assert linear_model.stats().submitted == 1


# Imports aioinfer._model without the package's __init__ (which imports every layer for the public
# names), then the frame layer, printing which of the upper layers each import loaded.
LAYERS_SCRIPT = """
import json, sys, types
package = types.ModuleType("aioinfer")
package.__path__ = json.loads(sys.argv[1])
sys.modules["aioinfer"] = package
upper = ("cv2", "tqdm", "aioinfer._map", "aioinfer._sources")
import aioinfer._model
with_model = [name for name in upper if name in sys.modules]
import aioinfer._map
print(json.dumps([with_model, [name for name in upper if name in sys.modules]]))
"""


def test_the_awaitable_model_does_not_import_the_frame_and_progress_layers() -> None:
    argv = [sys.executable, "-c", LAYERS_SCRIPT, json.dumps(list(aioinfer.__path__))]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    with_model, with_map = json.loads(done.stdout)
    assert with_model == []  # AsyncModel.map imports them when called
    assert with_map == ["cv2", "tqdm", "aioinfer._map", "aioinfer._sources"]  # what the check sees


# -- precision ---------------------------------------------------------------------------------


def _runtime_float_precision(model: aioinfer.AsyncModel) -> str:
    """What the runtime model says the model computes in, read here independently of aioinfer."""
    found: set[str] = set()
    for op in model.compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) not in ("Const", "Input"):  # weights may be stored in f16
            found |= set(info["outputPrecisions"].astype(str).split(","))
    return next(p for p in ("bf16", "f16", "f32") if p in found)


async def test_precision_f32_gives_exact_results_and_says_f32() -> None:
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32) * 1000 + 0.123
    async with aioinfer.load(models.linear(), device="CPU", precision="f32") as model:
        assert model.info.precision == "f32" == _runtime_float_precision(model)
        assert model.info.config["INFERENCE_PRECISION_HINT"] == "f32"
        assert model.info.to_dict()["precision"] == "f32"
        np.testing.assert_array_equal((await model(x))[0], models.linear_expected(x))


@pytest.mark.parametrize("precision", ["bf16", "f16", None])
async def test_precision_reported_is_what_the_runtime_model_runs(precision: str | None) -> None:
    # a bf16 or f16 hint runs in what the CPU supports (f32 without bf16): info says what runs
    x = np.random.default_rng(2).random((1, 3, 16, 16), np.float32)
    async with aioinfer.load(
        models.slow_conv(size=16, layers=2, channels=8), device="CPU", precision=precision
    ) as model:
        assert model.info.precision == _runtime_float_precision(model)
        out = await model(x)
        assert out[0].shape == (1, 2) and np.isfinite(out[0]).all()


async def test_f16_weights_computed_in_f32_count_as_f32(tmp_path: Path) -> None:
    path = tmp_path / "conv.xml"
    ov.save_model(models.slow_conv(size=16, layers=1, channels=8), path)  # weights stored as f16
    async with aioinfer.load(path, device="CPU", precision="f32") as model:
        assert model.info.precision == "f32"


async def test_precision_on_auto_is_reported_from_the_runtime_model() -> None:
    async with aioinfer.load(models.slow_conv(size=16, layers=1, channels=8), precision="f32") as model:
        assert model.info.precision == "f32"


@pytest.mark.parametrize("bad", ["fp64", "F32", "", 32])
def test_an_unknown_precision_is_refused_naming_the_choices(bad: object) -> None:
    with pytest.raises(ValueError, match=r"precision must be one of f32, bf16, f16 or None, got"):
        aioinfer.load(models.linear(), device="CPU", precision=bad)  # type: ignore[arg-type]


def test_a_precision_contradicting_the_config_is_refused() -> None:
    with pytest.raises(ValueError, match=r"precision='bf16' conflicts with config INFERENCE_PRECISION_HINT"):
        aioinfer.load(models.linear(), device="CPU", precision="bf16", config=models.EXACT)


async def test_a_precision_agreeing_with_the_config_is_accepted() -> None:
    config = {"INFERENCE_PRECISION_HINT": ov.Type.f32}
    async with aioinfer.load(models.linear(), device="CPU", precision="f32", config=config) as model:
        assert model.info.precision == "f32"
