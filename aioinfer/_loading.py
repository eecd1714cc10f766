"""Reading, reshaping and compiling a model (blocking: callers run this on a worker thread)."""

from __future__ import annotations

import functools
import io
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import openvino as ov
from openvino.preprocess import PrePostProcessor

from ._errors import (
    DeviceNotAvailableError,
    ModelLoadError,
    ModelNotFoundError,
    UnsupportedModelFormatError,
    WeightsNotFoundError,
    ov_message,
)
from ._inputs import numpy_misreads

ModelSource = Union[str, "os.PathLike[str]", bytes, ov.Model]
ShapeLike = Sequence[int] | str
ReshapeSpec = ShapeLike | Mapping[str | int, ShapeLike] | None

SUPPORTED_SUFFIXES = (".xml", ".onnx", ".tflite", ".pdmodel", ".pb")
_VIRTUAL_DEVICES = {"AUTO", "MULTI", "HETERO", "BATCH"}


@functools.cache
def core() -> ov.Core:
    """The process-wide OpenVINO Core (one per process keeps plugin state and caches shared)."""
    return ov.Core()


def read_model(source: ModelSource) -> ov.Model:
    """Read a model from a path, raw bytes, or pass an ``openvino.Model`` through (copied)."""
    if isinstance(source, ov.Model):
        return source.clone()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _read_bytes(bytes(source))
    if not isinstance(source, (str, os.PathLike)):
        raise UnsupportedModelFormatError(
            f"cannot load a model from {type(source).__name__}: expected a path, bytes or openvino.Model"
        )
    return _read_path(Path(source))


def _read_path(path: Path) -> ov.Model:
    if not path.exists():
        raise ModelNotFoundError(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnsupportedModelFormatError(
            f"unsupported model format {suffix or '(no suffix)'!r} for {str(path)!r}; "
            f"expected one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if suffix == ".xml" and not path.with_suffix(".bin").exists():
        raise WeightsNotFoundError(path, path.with_suffix(".bin"))
    try:
        return core().read_model(str(path))
    except RuntimeError as exc:
        raise ModelLoadError(f"OpenVINO could not read {str(path)!r}: {ov_message(exc)}") from exc


def _read_bytes(data: bytes) -> ov.Model:
    if not data:
        raise UnsupportedModelFormatError("cannot load a model from empty bytes")
    try:
        return core().read_model(io.BytesIO(data))
    except RuntimeError as exc:
        raise UnsupportedModelFormatError(
            f"OpenVINO could not read the {len(data)} model bytes (expected an ONNX or IR model "
            f"serialized in memory): {ov_message(exc)}"
        ) from exc


def reshape(model: ov.Model, spec: ReshapeSpec) -> None:
    """Reshape ``model`` in place: one shape for a single-input model, or a mapping by name/index."""
    if spec is None:
        return
    if not isinstance(spec, Mapping):
        if len(model.inputs) != 1:
            raise ModelLoadError(
                f"reshape needs a mapping by input name: the model has {len(model.inputs)} inputs"
            )
        spec = {0: spec}
    shapes: dict[Any, ov.PartialShape] = {}
    for key, shape in spec.items():
        port = model.inputs[key] if isinstance(key, int) else _input_by_name(model, key)
        shapes[port] = ov.PartialShape(shape if isinstance(shape, str) else [int(d) for d in shape])
    try:
        model.reshape(shapes)
    except RuntimeError as exc:
        raise ModelLoadError(f"cannot reshape the model to {dict(spec)}: {ov_message(exc)}") from exc


def _input_by_name(model: ov.Model, name: str) -> ov.Output:
    for port in model.inputs:
        if name in port.get_names():
            return port
    names = [p.any_name for p in model.inputs]
    raise ModelLoadError(f"reshape names input {name!r}, but the model's inputs are {names}")


def with_numpy_inputs(model: ov.Model) -> ov.Model:
    """``model`` with an f32 interface on every float input numpy cannot hold (bf16, f8, ...): the
    graph converts, exactly. OpenVINO's own Python conversion would misread an array given for them."""
    exotic = [i for i, port in enumerate(model.inputs) if numpy_misreads(port.get_element_type())]
    if not exotic:
        return model
    ppp = PrePostProcessor(model)
    for i in exotic:
        ppp.input(i).tensor().set_element_type(ov.Type.f32)
    return ppp.build()


def check_device(device: str) -> None:
    """Raise DeviceNotAvailableError if ``device`` names a physical device this machine lacks.

    Virtual devices (AUTO, MULTI, HETERO, BATCH) pass through; the devices they list are checked.
    """
    available = core().available_devices
    for name in _physical_devices(device):
        if name in available or ("." not in name and any(d.split(".")[0] == name for d in available)):
            continue
        raise DeviceNotAvailableError(device, name, available)


def _physical_devices(device: str) -> list[str]:
    head, _, rest = device.partition(":")
    if head.upper() in _VIRTUAL_DEVICES:
        return [
            n for part in rest.split(",") for n in _physical_devices(re.sub(r"\(.*\)$", "", part.strip()))
        ]
    return [device.strip()] if device.strip() else []


def compile_model(model: ov.Model, device: str, config: Mapping[str, Any]) -> ov.CompiledModel:
    """Compile ``model`` on ``device`` with ``config``; OpenVINO's failures become ModelLoadError."""
    check_device(device)
    try:
        return core().compile_model(model, device, dict(config))
    except RuntimeError as exc:
        raise ModelLoadError(
            f"OpenVINO could not compile the model for {device!r}: {ov_message(exc)}"
        ) from exc


def runtime_precisions(compiled: ov.CompiledModel) -> frozenset[str] | None:
    """The precisions (``f32``, ``bf16``, ``i32``, ...) the nodes of the compiled model run in, as
    its runtime model tells; ``None`` when the device does not tell."""
    try:
        runtime = compiled.get_runtime_model()
        return frozenset(
            op.get_rt_info()["runtimePrecision"].astype(str)
            for op in runtime.get_ordered_ops()
            if "runtimePrecision" in op.get_rt_info()
        )
    except RuntimeError:
        return None


PRECISIONS = ("f32", "bf16", "f16")
PRECISION_HINT = "INFERENCE_PRECISION_HINT"
_PRECISION_NAMES = {"f32": "f32", "fp32": "f32", "float32": "f32", "bf16": "bf16", "bfloat16": "bf16"}
_PRECISION_NAMES |= {"f16": "f16", "fp16": "f16", "float16": "f16"}


def with_precision(config: Mapping[str, Any], precision: str | None) -> dict[str, Any]:
    """``config`` with OpenVINO's ``INFERENCE_PRECISION_HINT`` set to ``precision`` (``"f32"``,
    ``"bf16"`` or ``"f16"``; ``None``: ``config`` unchanged, so the device's default). Raises
    :class:`ValueError` for another precision, or when ``config`` already sets the hint to a
    different precision."""
    if precision is None:
        return dict(config)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} or None, got {precision!r}")
    given = config.get(PRECISION_HINT)
    if given is not None and _precision_name(given) != precision:
        raise ValueError(
            f"precision={precision!r} conflicts with config {PRECISION_HINT}={given!r}: give one of them"
        )
    return {**config, PRECISION_HINT: precision}


def _precision_name(value: Any) -> str:
    """A precision hint as given in a config (``"FP32"``, ``ov.Type.bf16``, ...) in short form."""
    text = value.get_type_name() if isinstance(value, ov.Type) else str(value)
    return _PRECISION_NAMES.get(text.strip().lower(), text)


def used_precision(compiled: ov.CompiledModel) -> str | None:
    """The floating-point precision the compiled model really computes in: the narrowest one its
    computing nodes produce (``"bf16"`` or ``"f16"`` if any does, else ``"f32"``), by its runtime
    model; where the device does not tell, its ``INFERENCE_PRECISION_HINT``; ``None`` if neither is
    known. Weights stored in f16 and computed in f32 count as f32. (A CPU without bf16 runs a
    ``"bf16"`` hint in f32: this says ``"f32"`` then.)"""
    produced = _produced_precisions(compiled)
    if produced:
        return next((p for p in ("bf16", "f16", "f32") if p in produced), None)
    try:
        return _precision_name(compiled.get_property(PRECISION_HINT))
    except RuntimeError:
        return None


def _produced_precisions(compiled: ov.CompiledModel) -> set[str] | None:
    """The precisions of the outputs of the runtime model's nodes but its constants and inputs
    (``None`` when the device gives no runtime model)."""
    try:
        infos = [op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops()]
    except RuntimeError:
        return None
    return {
        name
        for info in infos
        if "outputPrecisions" in info and _layer_type(info) not in ("Const", "Input")
        for name in re.split(r"[,\s]+", info["outputPrecisions"].astype(str))
        if name
    }


def _layer_type(info: Any) -> str | None:
    """A runtime model node's layer type (``Convolution``, ``Const``, ...), if the device says it."""
    return info["layerType"].astype(str) if "layerType" in info else None
