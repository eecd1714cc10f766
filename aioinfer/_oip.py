"""Tensors of the Open Inference Protocol (KServe v2) in and out of HTTP bodies: its datatypes, JSON
tensors (flat or nested ``data``) and the binary tensor data extension, to and from numpy.

Every size a client declares is checked before anything is allocated: the JSON header's length
(``Inference-Header-Content-Length``) against the body, each tensor's ``shape`` x item size against
what is left of ``max_decoded_bytes``, each ``binary_data_size`` against that and against the bytes
that follow the header; the JSON header, and the outputs answered as JSON, hold at most
``max_json_values`` values (:func:`aioinfer._codecs.check_json_values`). Errors are
:class:`DecodeError` (400) and :class:`TooLargeError` (413) naming what was wrong and what was
expected.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _codecs as codecs
from ._errors import DecodeError
from ._inputs import TensorInfo
from ._outputs import Outputs

HEADER_LENGTH = "inference-header-content-length"
DATATYPES: dict[str, np.dtype] = {
    name: np.dtype(kind)
    for name, kind in (
        ("BOOL", np.bool_),
        ("INT8", np.int8),
        ("INT16", np.int16),
        ("INT32", np.int32),
        ("INT64", np.int64),
        ("UINT8", np.uint8),
        ("UINT16", np.uint16),
        ("UINT32", np.uint32),
        ("UINT64", np.uint64),
        ("FP16", np.float16),
        ("FP32", np.float32),
        ("FP64", np.float64),
        ("BYTES", np.object_),  # one bytes object per element: encoded images, for tasks only
    )
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}
MAX_DIMS = 32  # dimensions of one tensor's shape
# what a task takes and answers: encoded images in, each one's prediction as JSON out
TASK_INPUT = TensorInfo("image", ("image",), (-1,), "string", np.dtype(np.object_))
TASK_OUTPUT = TensorInfo("prediction", ("prediction",), (-1,), "string", np.dtype(np.object_))
_LENGTH = struct.Struct("<I")  # the length before each element of a BYTES tensor's binary data
BINARY_INSTEAD = (
    "send large tensors as binary data (the binary tensor data extension: binary_data_size, "
    "Inference-Header-Content-Length) or over gRPC"
)


def datatype(dtype: np.dtype | None) -> str:
    """The OIP datatype of numpy ``dtype`` (``""`` when the protocol has none for it)."""
    return _NAMES.get(np.dtype(dtype), "") if dtype is not None else ""


def tensor_metadata(info: TensorInfo) -> dict[str, Any]:
    """``{"name", "datatype", "shape"}`` of a model input or output (``-1``: any size)."""
    shape = list(info.shape) if info.shape is not None else [-1]  # any rank: one dimension of any size
    return {"name": info.name, "datatype": datatype(info.dtype), "shape": shape}


@dataclass
class InferRequest:
    """A decoded ``/infer`` request: the inputs by name, the outputs wanted (all if ``None``) and
    whether each is answered binary."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None
    binary: dict[str, bool]
    binary_default: bool
    parameters: dict[str, Any]  # the request's own (e.g. sequence_id)


def decode_request(
    body: bytearray,
    header_length: str | None,
    *,
    max_decoded_bytes: int,
    expected: Mapping[str, TensorInfo],
    max_json_values: int = codecs.MAX_JSON_VALUES,
) -> InferRequest:
    """The request in ``body`` (a JSON header of at most ``max_json_values`` values, then the
    binary data of the inputs that declare a ``binary_data_size`` if ``header_length`` is given),
    each input checked against the model's ``expected`` inputs by name (its datatype exactly)."""
    size = header_size(header_length, len(body))
    payload = codecs.decode_json(
        bytes(body[:size]),
        max_decoded_bytes=max_decoded_bytes,
        max_json_values=max_json_values,
        instead=BINARY_INSTEAD,
    )
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise DecodeError('send a JSON object {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
    binary = memoryview(body)[size:]
    inputs: dict[str, np.ndarray] = {}
    budget, offset = max_decoded_bytes, 0
    for tensor in payload["inputs"]:
        name, dtype, shape = check_tensor(tensor, expected, inputs)
        nbytes = checked_size(name, dtype, shape, budget, max_decoded_bytes)
        budget -= nbytes
        declared = _binary_size(tensor)
        if declared is None:
            inputs[name] = _from_json(name, tensor.get("data"), dtype, shape)
            continue
        if dtype.kind == "O":
            if offset + declared > len(binary):
                raise DecodeError(
                    f"input {name!r}: binary_data_size {declared} is past the "
                    f"{len(binary) - offset} bytes left"
                )
            inputs[name] = read_bytes(f"input {name!r}", binary[offset : offset + declared], shape)
            offset += declared
            continue
        if declared != nbytes or offset + declared > len(binary):
            raise DecodeError(
                f"input {name!r}: binary_data_size {declared} does not fit: {datatype(dtype)}{shape} "
                f"takes {nbytes} bytes and {len(binary) - offset} bytes of binary data are left"
            )
        inputs[name] = np.frombuffer(binary, dtype, math.prod(shape), offset).reshape(shape)
        offset += declared
    if offset != len(binary):
        raise DecodeError(f"{len(binary) - offset} bytes follow the inputs' binary data; expected none")
    return _request(payload, inputs)


def _request(payload: dict[str, Any], inputs: dict[str, np.ndarray]) -> InferRequest:
    params = _params(payload, "the request")
    outputs, binary = None, {}
    if "outputs" in payload:
        if not isinstance(payload["outputs"], list):
            raise DecodeError('"outputs" must be a list of {"name": ...}')
        outputs = []
        for item in payload["outputs"]:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise DecodeError(f'each requested output must be {{"name": str}}, got {item!r:.100}')
            outputs.append(item["name"])
            binary[item["name"]] = bool(_params(item, f"output {item['name']!r}").get("binary_data", False))
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise DecodeError(f'"id" must be a string, got {type(request_id).__name__}')
    binary_default = bool(params.get("binary_data_output", False))
    return InferRequest(request_id, inputs, outputs, binary, binary_default, params)


def encode_response(
    model: str,
    request: InferRequest,
    outputs: Mapping[str, np.ndarray],
    *,
    max_decoded_bytes: int,
    max_json_values: int = codecs.MAX_JSON_VALUES,
) -> tuple[bytes, int | None]:
    """The answer's body and its JSON header's length (``None`` when no output is binary): the
    ``outputs`` requested (all if none were), each in JSON or binary as asked; refused before any
    is encoded if those asked as JSON fail :func:`aioinfer._codecs.check_json_values`."""
    binary = {name: request.binary.get(name, request.binary_default) for name in outputs}
    codecs.check_json_values(
        sum(array.size for name, array in outputs.items() if not binary[name]),
        "the outputs asked for as JSON hold",
        "ask for them as binary data (each output's binary_data parameter, or the request's "
        "binary_data_output)",
        max_json_values=max_json_values,
        max_decoded_bytes=max_decoded_bytes,
    )
    head: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": []}
    if request.id is not None:
        head["id"] = request.id
    blobs: list[bytes] = []
    for name, array in outputs.items():
        tensor: dict[str, Any] = {"name": name, "datatype": datatype(array.dtype), "shape": list(array.shape)}
        if binary[name]:
            blob = write_bytes(array) if array.dtype.kind == "O" else np.ascontiguousarray(array).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            values = array.ravel().tolist()
            tensor["data"] = (
                [v.decode("utf-8", "replace") for v in values] if array.dtype.kind == "O" else values
            )
        head["outputs"].append(tensor)
    header = codecs.dump_json(head)
    return (b"".join([header, *blobs]), len(header)) if blobs else (header, None)


def select_outputs(outputs: Outputs, wanted: list[str] | None) -> dict[str, np.ndarray]:
    """The outputs by name in the order asked (any of an output's names), or all in model order."""
    if wanted is None:
        return outputs.to_dict()
    selected = {}
    for name in wanted:
        try:
            selected[name] = outputs[name]
        except KeyError:
            raise DecodeError(f"unknown output {name!r}: the model's outputs are {outputs.names}") from None
    return selected


# -- one tensor ---------------------------------------------------------------------------------


def header_size(header_length: str | None, body_size: int) -> int:
    """The length of the JSON header of a body of ``body_size`` bytes (all of it without the binary
    extension's ``Inference-Header-Content-Length``); DecodeError for a header length that cannot be."""
    if header_length is None:
        return body_size
    if not header_length.isdigit() or int(header_length) > body_size:
        raise DecodeError(
            f"Inference-Header-Content-Length is {header_length[:20]!r}: expected the length of the "
            f"JSON header, at most the body's {body_size} bytes"
        )
    return int(header_length)


def checked_size(name: str, dtype: np.dtype, shape: list[int], budget: int, limit: int) -> int:
    """The bytes input ``name`` of ``dtype`` and ``shape`` takes, if within ``budget`` (what is left
    of ``limit``, the ``max_decoded_bytes`` of a request); else :class:`TooLargeError`."""
    return codecs._checked_size(tuple(shape), dtype, budget, limit, f"input {name!r}")


def check_tensor(
    tensor: Any, expected: Mapping[str, TensorInfo], seen: Mapping[str, Any]
) -> tuple[str, np.dtype, list[int]]:
    """Name, dtype and shape of one input tensor ``{"name", "shape", "datatype", ...}``, checked
    against the model's input of that name (not one of those already ``seen``)."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise DecodeError(f'each input must be {{"name", "shape", "datatype", "data"}}, got {tensor!r:.100}')
    name = tensor["name"]
    if name in seen:
        raise DecodeError(f"input {name!r} is sent twice")
    info = expected.get(name)
    if info is None:
        raise DecodeError(f"unknown input {name!r}: the model's inputs are {list(expected)}")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise DecodeError(
            f"input {name!r}: shape must be a list of at most {MAX_DIMS} sizes >= 0, got {shape!r:.100}"
        )
    want = datatype(info.dtype)
    if tensor.get("datatype") != want:
        raise DecodeError(
            f"input {name!r}: datatype {tensor.get('datatype')!r:.20}, expected {want or 'none'}"
        )
    return name, DATATYPES[want], shape


def _binary_size(tensor: dict[str, Any]) -> int | None:
    size = _params(tensor, f"input {tensor['name']!r}").get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise DecodeError(
            f"input {tensor['name']!r}: binary_data_size must be a whole number >= 0, got {size!r:.20}"
        )
    return size


def _params(obj: dict[str, Any], what: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise DecodeError(f'{what}: "parameters" must be an object, got {type(params).__name__}')
    return params


def read_bytes(what: str, data: memoryview | bytes, shape: list[int]) -> np.ndarray:
    """The elements of BYTES tensor ``what`` (``input 'x'``) of ``shape`` from its binary form
    (each one a 4-byte little-endian length, then that many bytes): exactly ``shape``'s count,
    filling ``data``. A count that ``data`` cannot hold is refused before anything is allocated."""
    count = math.prod(shape)
    if count * _LENGTH.size > len(data):
        raise DecodeError(
            f"{what}: {len(data)} bytes of BYTES data cannot hold the {count} elements of shape "
            f"{shape} (each takes at least {_LENGTH.size})"
        )
    elements = np.empty(count, np.object_)
    offset = 0
    for i in range(count):
        if offset + _LENGTH.size > len(data):
            raise DecodeError(f"{what}: the BYTES data ends before element {i} of {count}")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise DecodeError(
                f"{what}: BYTES element {i} declares {length} bytes; {len(data) - offset} are left"
            )
        elements[i] = bytes(data[offset : offset + length])
        offset += length
    if offset != len(data):
        raise DecodeError(f"{what}: {len(data) - offset} bytes follow its {count} BYTES elements")
    return elements.reshape(shape)


def write_bytes(array: np.ndarray) -> bytes:
    """The binary form of a BYTES tensor: each element's 4-byte length, then its bytes."""
    return b"".join(_LENGTH.pack(len(v)) + v for v in array.ravel().tolist())


def _bytes_from_json(name: str, data: list[Any], shape: list[int]) -> np.ndarray:
    """BYTES elements from JSON: a string (its UTF-8 bytes) or ``{"b64": "..."}`` (binary data)."""
    elements = np.empty(len(data), np.object_)
    for i, value in enumerate(data):
        if isinstance(value, str):
            elements[i] = value.encode()
        elif isinstance(value, dict) and isinstance(value.get("b64"), str):
            try:
                elements[i] = base64.b64decode(value["b64"], validate=True)
            except binascii.Error as exc:
                raise DecodeError(f"input {name!r}: element {i} is not valid base64: {exc}") from None
        else:
            raise DecodeError(f'input {name!r}: BYTES elements are strings or {{"b64": "..."}}')
    if elements.size != math.prod(shape):
        raise DecodeError(f"input {name!r}: {elements.size} values for shape {shape}")
    return elements.reshape(shape)


def _check_integers(name: str, dtype: np.dtype, data: list[Any]) -> None:
    """DecodeError unless the JSON values ``data`` are all integers: a 1.5 or a true sent for an
    integer input (even one true among integers, which numpy reads as 1) would be truncated or cast
    without a word. (Asked for the values' own type, numpy reads a UINT64 beyond 2**63 as float.)"""
    wrong = next((v for v in np.array(data, dtype=object).ravel() if type(v) is not int), None)
    if wrong is not None:
        found = {float: "numbers with a fraction or exponent", bool: "booleans"}.get(
            type(wrong), "other values"
        )
        raise DecodeError(f"input {name!r}: {datatype(dtype)} data must be integers, got {found}")


def _from_json(name: str, data: Any, dtype: np.dtype, shape: list[int]) -> np.ndarray:
    """``data`` (flat or nested as ``shape``) as an array of ``dtype`` and ``shape``; booleans only
    for BOOL, numbers only otherwise (what parsed JSON holds is already bounded)."""
    if not isinstance(data, list):
        raise DecodeError(f'input {name!r}: send "data" as a list of values or "binary_data_size"')
    if dtype.kind == "O":
        return _bytes_from_json(name, data, shape)
    try:
        if dtype.kind in "iu":
            _check_integers(name, dtype, data)
        array = np.array(data, dtype=object if dtype.kind == "b" else dtype).ravel()
    except (TypeError, ValueError, OverflowError) as exc:
        raise DecodeError(f"input {name!r}: data is not an array of {datatype(dtype)}: {exc}") from None
    if array.size != math.prod(shape):
        raise DecodeError(f"input {name!r}: {array.size} values for shape {shape}")
    if dtype.kind == "b":
        if not all(isinstance(v, bool) for v in array):
            raise DecodeError(f"input {name!r}: BOOL data must be true or false")
        array = array.astype(np.bool_)
    return array.reshape(shape)
