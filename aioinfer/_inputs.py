"""Checking and converting what a caller passes to ``infer`` against the model's inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import openvino as ov

from ._errors import InputCountError, InputDtypeError, InputNameError, InputShapeError

Inputs = np.ndarray | Sequence[Any] | Mapping[str, Any] | Mapping[int, Any] | Mapping[str | int, Any]


# element types numpy holds exactly; OpenVINO maps the others to a stand-in (bf16 -> float16,
# f8/u4 -> uint8) that would convert callers' values wrongly, so those are left to OpenVINO
_EXACT_TYPES = {
    ov.Type.f64, ov.Type.f32, ov.Type.f16, ov.Type.boolean,
    ov.Type.i64, ov.Type.i32, ov.Type.i16, ov.Type.i8, ov.Type.u64, ov.Type.u32, ov.Type.u16, ov.Type.u8,
}  # fmt: skip


def numpy_dtype(etype: ov.Type) -> np.dtype | None:
    """The numpy dtype that holds ``etype`` exactly, or ``None`` (bf16, f8, u4, string, ...)."""
    return np.dtype(etype.to_dtype()) if etype in _EXACT_TYPES else None


def numpy_misreads(etype: ov.Type) -> bool:
    """A float type numpy lacks (bf16, f8, ...): an array given for it would be misread, not converted."""
    return etype.is_real() and numpy_dtype(etype) is None


_MISREAD_TYPES = {
    t.get_type_name() for t in vars(ov.Type).values() if isinstance(t, ov.Type) and numpy_misreads(t)
}


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output: its names, shape (``-1`` for a dynamic dimension) and element type."""

    name: str
    names: tuple[str, ...]
    shape: tuple[int, ...] | None
    element_type: str
    dtype: np.dtype | None

    @classmethod
    def of(cls, port: ov.Output) -> TensorInfo:
        pshape = port.get_partial_shape()
        shape = (
            None if pshape.rank.is_dynamic else tuple(d.get_length() if d.is_static else -1 for d in pshape)
        )
        names = tuple(sorted(port.get_names()))
        etype = port.get_element_type()
        return cls(port.any_name if names else "", names, shape, etype.get_type_name(), numpy_dtype(etype))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "name": self.name,
            "names": list(self.names),
            "shape": self.shape,
            "element_type": self.element_type,
        }


class InputAdapter:
    """Turns one caller's inputs into ``{index: ndarray}`` matching the model, or raises an InputError."""

    def __init__(self, inputs: Sequence[TensorInfo], partial_shapes: Sequence[ov.PartialShape]) -> None:
        self.inputs = tuple(inputs)
        self._pshapes = tuple(partial_shapes)
        # shapes whose dynamic dimensions are unbounded are checked in Python; others by OpenVINO
        self._simple = tuple(_unbounded_dynamic(p) for p in self._pshapes)
        self._by_name = {n: i for i, info in enumerate(self.inputs) for n in info.names}

    def __call__(self, data: Inputs) -> dict[int, np.ndarray]:
        return {i: self._convert(i, value) for i, value in self._by_index(data).items()}

    def _by_index(self, data: Inputs) -> dict[int, Any]:
        count = len(self.inputs)
        if isinstance(data, Mapping):
            items = self._by_key(data)
        elif isinstance(data, (list, tuple)) and (count > 1 or _arrays_by_index(data, count)):
            items = dict(enumerate(data))
        else:
            items = {0: data}
        if len(items) != count:
            raise InputCountError(
                f"the model takes {count} input(s) {self._names()}, got {len(items)}"
                + ("" if isinstance(data, Mapping) else " (pass a list by input index or a dict by name)")
            )
        return items

    def _by_key(self, data: Mapping[Any, Any]) -> dict[int, Any]:
        items: dict[int, Any] = {}
        keys: dict[int, str | int] = {}
        for key, value in data.items():
            index = self._index(key)
            if index in items:
                raise InputNameError(
                    f"input {self._names()[index]!r} is given twice (as {keys[index]!r} and {key!r})"
                )
            items[index], keys[index] = value, key
        return items

    def _index(self, key: str | int) -> int:
        if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(self.inputs):
            return key
        if isinstance(key, str) and key in self._by_name:
            return self._by_name[key]
        raise InputNameError(f"the model has no input {key!r}; its inputs are {self._names()}")

    def _names(self) -> list[str]:
        return [info.name or str(i) for i, info in enumerate(self.inputs)]

    def _convert(self, index: int, value: Any) -> np.ndarray:
        info = self.inputs[index]
        array = value if isinstance(value, np.ndarray) else _as_array(info, value)
        if info.dtype is not None and array.dtype != info.dtype:
            array = _cast(info, array)
        elif info.dtype is None and info.element_type in _MISREAD_TYPES:
            raise InputDtypeError(
                f"input {info.name!r} is {info.element_type}, which numpy cannot hold: load the model "
                "with aioinfer.load(), which gives such inputs an f32 interface"
            )
        if not self._fits(index, array.shape):
            raise InputShapeError(
                f"input {info.name!r}: expected shape {_fmt(info.shape)}, got {list(array.shape)}"
            )
        return array

    def _fits(self, index: int, shape: tuple[int, ...]) -> bool:
        expected = self.inputs[index].shape
        if self._simple[index] and expected is not None:
            if len(shape) != len(expected):
                return False
            return all(e < 0 or e == d for e, d in zip(expected, shape, strict=True))
        return bool(self._pshapes[index].compatible(ov.PartialShape(list(shape))))


def _unbounded_dynamic(pshape: ov.PartialShape) -> bool:
    return pshape.rank.is_static and all(
        d.is_static or (d.get_min_length() == 0 and d.get_max_length() < 0) for d in pshape
    )


def _as_array(info: TensorInfo, value: Any) -> np.ndarray:
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputDtypeError(
            f"input {info.name!r}: cannot make an array of {type(value).__name__} ({exc}); "
            f"expected an array of {info.dtype}"
        ) from exc


def _arrays_by_index(data: list[Any] | tuple[Any, ...], count: int) -> bool:
    """``[x]`` for a one-input model means "inputs by index" when it holds exactly one array."""
    return len(data) == count and all(isinstance(v, np.ndarray) for v in data)


def _cast(info: TensorInfo, array: np.ndarray) -> np.ndarray:
    target = info.dtype
    assert target is not None
    if array.dtype.kind in "biuf" and np.can_cast(array.dtype, target, casting="same_kind"):
        if target.kind in "iu" and not np.can_cast(array.dtype, target) and array.size:
            _check_range(info, array, np.iinfo(target))
        return array.astype(target)
    raise InputDtypeError(
        f"input {info.name!r}: dtype {array.dtype} cannot be converted to the model's {target} "
        f"({info.element_type}) without changing its kind (float to int, signed to unsigned, ...); "
        f"pass {target}"
    )


def _fmt(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "(any rank)"
    return "[" + ",".join("?" if d < 0 else str(d) for d in shape) + "]"


def _check_range(info: TensorInfo, array: np.ndarray, limits: np.iinfo) -> None:
    low, high = array.min(), array.max()
    if low < limits.min or high > limits.max:
        raise InputDtypeError(
            f"input {info.name!r}: values {low}..{high} do not fit the model's {info.dtype} "
            f"({limits.min}..{limits.max})"
        )
