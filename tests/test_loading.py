"""Reading, reshaping and compiling models from every source ``load()`` accepts, and the specific
error each kind of bad source gets."""

from __future__ import annotations

from pathlib import Path

import models
import numpy as np
import openvino as ov
import pytest

import aioinfer

pytestmark = pytest.mark.anyio

AVAILABLE = ov.Core().available_devices


async def infer_linear(model: aioinfer.AsyncModel) -> None:
    """The loaded model is linear(): it answers 2x + 1 exactly."""
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    out = await model.infer(x)
    np.testing.assert_array_equal(out[0], models.linear_expected(x))


@pytest.fixture
def linear_ir(tmp_path: Path) -> Path:
    """linear() saved as an OpenVINO IR (.xml + .bin) in the test's directory."""
    xml = tmp_path / "linear.xml"
    ov.save_model(models.linear(), xml)
    assert xml.with_suffix(".bin").exists()
    return xml


async def test_missing_path_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.xml"
    with pytest.raises(aioinfer.ModelNotFoundError) as info:
        await aioinfer.load(missing, device="CPU")
    assert str(missing) in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.path == missing


async def test_ir_from_its_path_and_without_its_weights(linear_ir: Path) -> None:
    async with aioinfer.load(linear_ir, device="CPU", config=models.EXACT) as model:
        await infer_linear(model)
    async with aioinfer.load(str(linear_ir), device="CPU", config=models.EXACT) as model:
        await infer_linear(model)

    weights = linear_ir.with_suffix(".bin")
    weights.unlink()
    with pytest.raises(aioinfer.WeightsNotFoundError) as info:
        await aioinfer.load(linear_ir, device="CPU")
    assert str(weights) in str(info.value) and str(linear_ir) in str(info.value)
    assert isinstance(info.value, aioinfer.ModelLoadError)


async def test_unsupported_suffix_lists_the_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "model.txt"
    path.write_text("not a model")
    with pytest.raises(aioinfer.UnsupportedModelFormatError) as info:
        await aioinfer.load(path, device="CPU")
    message = str(info.value)
    assert "'.txt'" in message and str(path) in message
    assert ".xml" in message and ".onnx" in message


async def test_garbage_in_a_model_file_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x00\xffgarbage" * 64)
    with pytest.raises(aioinfer.ModelLoadError, match="could not read") as info:
        await aioinfer.load(path, device="CPU")
    assert str(path) in str(info.value)


@pytest.mark.parametrize("data", [b"", b"\x00\xffgarbage" * 64], ids=["empty", "garbage"])
async def test_garbage_bytes_are_an_unsupported_format(data: bytes) -> None:
    with pytest.raises(aioinfer.UnsupportedModelFormatError, match="bytes"):
        await aioinfer.load(data, device="CPU")


async def test_a_source_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(aioinfer.UnsupportedModelFormatError, match="int"):
        await aioinfer.load(123, device="CPU")  # type: ignore[arg-type]


async def test_onnx_bytes_load_like_the_onnx_file() -> None:
    path = models.rapidocr_model("cls")
    x = np.random.default_rng(0).random((2, 3, 48, 192), np.float32)
    async with aioinfer.load(path.read_bytes(), device="CPU", config=models.EXACT) as from_bytes:
        got = await from_bytes.infer(x)
    async with aioinfer.load(path, device="CPU", config=models.EXACT) as from_path:
        want = await from_path.infer(x)
    np.testing.assert_array_equal(got[0], want[0])


async def test_reshape_at_load_with_one_shape_leaves_the_callers_model_alone() -> None:
    original = models.linear()
    async with aioinfer.load(original, device="CPU", config=models.EXACT, reshape=[2, 4]) as model:
        assert model.info.inputs[0].shape == (2, 4)
        await infer_linear(model)
        with pytest.raises(aioinfer.InputShapeError, match=r"expected shape \[2,4\], got \[3, 4\]"):
            await model.infer(np.zeros((3, 4), np.float32))
    assert original.inputs[0].get_partial_shape() == ov.PartialShape([-1, 4])


async def test_reshape_at_load_by_name_and_by_index() -> None:
    path = models.rapidocr_model("cls")
    for spec in ({"x": [1, 3, 48, 192]}, {0: (1, 3, 48, 192)}):
        async with aioinfer.load(path, device="CPU", reshape=spec) as model:
            assert model.info.inputs[0].shape == (1, 3, 48, 192)
            assert model.info.outputs[0].shape == (1, 2)
            out = await model.infer(np.zeros((1, 3, 48, 192), np.float32))
            assert out[0].shape == (1, 2)


async def test_bad_reshape_specs_are_load_errors() -> None:
    with pytest.raises(aioinfer.ModelLoadError, match="mapping by input name"):
        await aioinfer.load(models.two_in_two_out(), device="CPU", reshape=[2, 3])
    with pytest.raises(aioinfer.ModelLoadError, match=r"'c'.*\['a', 'b'\]"):
        await aioinfer.load(models.two_in_two_out(), device="CPU", reshape={"c": [2, 3]})
    with pytest.raises(aioinfer.ModelLoadError, match="cannot reshape"):  # a + b: [2,4] vs [2,3]
        await aioinfer.load(models.two_in_two_out(), device="CPU", reshape={"a": [2, 4]})


@pytest.mark.parametrize("device", ["GPU", "NPU", "HETERO:GPU,CPU"])
async def test_missing_device_names_the_available_ones(device: str) -> None:
    missing = device.removeprefix("HETERO:").split(",")[0]
    if any(d.split(".")[0] == missing for d in AVAILABLE):
        pytest.skip(f"this machine has a {missing}")
    with pytest.raises(aioinfer.DeviceNotAvailableError) as info:
        await aioinfer.load(models.linear(), device=device)
    message = str(info.value)
    assert repr(missing) in message
    assert all(d in message for d in AVAILABLE)
    assert info.value.available == AVAILABLE


async def test_num_requests_defaults_to_the_devices_optimal_number() -> None:
    async with aioinfer.load(models.linear(), device="CPU") as model:
        optimal = model.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        assert optimal >= 1
        assert model.info.num_requests == optimal == model.stats().num_requests


@pytest.mark.parametrize("device", ["HETERO:CPU", "AUTO", "AUTO:CPU"])
async def test_virtual_devices_pass_through_to_openvino(device: str) -> None:
    async with aioinfer.load(models.linear(), device=device, config=models.EXACT) as model:
        assert model.info.device == device
        await infer_linear(model)


async def test_cache_dir_gets_a_compiled_model_cache(tmp_path: Path) -> None:
    cache = tmp_path / "ov-cache"
    async with aioinfer.load(models.rapidocr_model("cls"), device="CPU", cache_dir=cache) as model:
        assert model.info.config.get("CACHE_DIR", str(cache)) == str(cache)
    entries = list(cache.iterdir())
    assert entries, "OpenVINO wrote nothing into cache_dir"
    async with aioinfer.load(models.rapidocr_model("cls"), device="CPU", cache_dir=cache) as model:
        out = await model.infer(np.zeros((1, 3, 48, 192), np.float32))
    assert out[0].shape == (1, 2)
    assert sorted(cache.iterdir()) == sorted(entries)  # the second load used the cache
