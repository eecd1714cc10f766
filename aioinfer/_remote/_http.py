"""The Open Inference Protocol over HTTP, client side (asyncio and trio): model metadata and
``/infer`` with the binary tensor data extension (inputs and outputs as raw bytes after a JSON
header) or, with ``binary_data=False``, JSON tensors, over a keep-alive :mod:`._sessions` session.
What a server answers is read within :class:`~aioinfer._remote._model.Bounds` (its bytes as they
arrive, its JSON values counted before they are parsed)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import numpy as np

from .. import _codecs as codecs
from .. import _oip as oip
from .._errors import InferenceError, ModelLoadError, ServerConnectionError
from ._model import Bounds, Tensor, coded, output_array, output_dtype, output_shape, server_error
from ._sessions import session

_ERROR_JSON_BYTES = 64 * 1024  # an error answer's JSON is parsed up to this size, else shown as text


class HttpTransport:
    """Requests to ``url`` (``http(s)://host:port[/prefix]/v2/models/NAME[/versions/V]``) from the
    event loop ``backend`` (``asyncio``, ``trio``), on keep-alive connections: as many as the
    model's requests in flight, made as needed and kept for the next request."""

    def __init__(
        self,
        url: str,
        *,
        backend: str,
        binary: bool,
        headers: Mapping[str, str],
        connect_timeout: float,
        bounds: Bounds,
    ) -> None:
        self.url = url
        self._binary = binary
        self._bounds = bounds
        self._connect_timeout = connect_timeout
        self._session = session(backend, url, headers=headers, connect_timeout=connect_timeout, bounds=bounds)
        self._infer_url = url.rstrip("/") + "/infer"

    async def metadata(self) -> dict[str, Any]:
        """The model's metadata, answered within ``connect_timeout`` seconds in all."""
        with anyio.move_on_after(self._connect_timeout):
            _, body = await self._send("GET", self.url)
            inline = len(body) <= codecs.OFF_LOOP_BYTES[codecs.JSON]
            metadata = await coded(inline, _json, body, self._bounds, "its metadata")
            if isinstance(metadata, dict):
                return metadata
            raise ModelLoadError(f"{self.url} answered metadata that is not a JSON object")
        raise ServerConnectionError(
            f"{self.url} did not answer the model's metadata within "
            f"connect_timeout={self._connect_timeout:g} s"
        )

    async def infer(self, tensors: Sequence[Tensor]) -> dict[str, np.ndarray]:
        # binary data is only copied, JSON costs far more a byte: each is coded here while cheap
        size = sum(a.nbytes for _, _, a in tensors)
        encode = encode_binary if self._binary else encode_json
        inline = size <= codecs.OFF_LOOP_BYTES[codecs.NPY if self._binary else codecs.JSON]
        body, headers = await coded(inline, encode, tensors)
        answer_headers, answer = await self._send("POST", self._infer_url, body, headers)
        length = answer_headers.get(oip.HEADER_LENGTH)
        head = _header_size(answer, length)
        data = len(answer) - head
        inline = head <= codecs.OFF_LOOP_BYTES[codecs.JSON] and data <= codecs.OFF_LOOP_BYTES[codecs.NPY]
        return await coded(inline, decode_response, answer, length, self._bounds)

    async def _send(
        self, method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[Mapping[str, str], bytes]:
        """The server's answer (headers, body); a non-200 answer as its aioinfer error."""
        status, answer_headers, answer = await self._session.send(method, url, body, headers or {})
        if status != 200:
            raise server_error(status, _message(answer), self.url)
        return answer_headers, answer

    async def aclose(self) -> None:
        await self._session.aclose()


def encode_binary(tensors: Sequence[Tensor]) -> tuple[bytes, dict[str, str]]:
    """An ``/infer`` body with every input and output as binary data, and its headers."""
    blobs = [memoryview(_raw(a)) for _, _, a in tensors]
    head = {
        "inputs": [
            {"name": n, "datatype": d, "shape": list(a.shape), "parameters": {"binary_data_size": b.nbytes}}
            for (n, d, a), b in zip(tensors, blobs, strict=True)
        ],
        "parameters": {"binary_data_output": True},
    }
    header = codecs.dump_json(head)
    headers = {"Inference-Header-Content-Length": str(len(header)), "Content-Type": codecs.OCTET_STREAM}
    return b"".join([header, *blobs]), headers


def _raw(array: np.ndarray) -> bytes | memoryview:
    """An input's binary data: its bytes as they are in memory (a BYTES tensor's, encoded)."""
    return oip.write_bytes(array) if array.dtype.kind == "O" else np.ascontiguousarray(array).data


def encode_json(tensors: Sequence[Tensor]) -> tuple[bytes, dict[str, str]]:
    """An ``/infer`` body with every input and output as JSON, and its headers."""
    inputs = [
        {"name": n, "datatype": d, "shape": list(a.shape), "data": _json_values(a)} for n, d, a in tensors
    ]
    return codecs.dump_json({"inputs": inputs}), {"Content-Type": codecs.JSON}


def _json_values(array: np.ndarray) -> list[Any]:
    values = array.ravel().tolist()
    return [v.decode("utf-8") for v in values] if array.dtype.kind == "O" else values


def decode_response(body: bytes, header_length: str | None, bounds: Bounds) -> dict[str, np.ndarray]:
    """The outputs of an ``/infer`` answer by name: JSON ``data`` or binary data after the header,
    its JSON parsed only if it holds at most ``bounds.max_json_values`` values; the binary data
    exactly that of the outputs, each answered once."""
    size = _header_size(body, header_length)
    head = _json(body[:size], bounds, "JSON")
    data = memoryview(body)[size:]
    outputs: dict[str, np.ndarray] = {}
    offset = 0
    try:
        for tensor in head["outputs"]:
            name, datatype, shape = tensor["name"], tensor["datatype"], tensor["shape"]
            if name in outputs:
                raise InferenceError(f"the server answered output {name!r} twice")
            nbytes = tensor.get("parameters", {}).get("binary_data_size")
            if nbytes is None:
                outputs[name] = _from_json(name, datatype, shape, tensor["data"])
                continue
            if type(nbytes) is not int or not 0 <= nbytes <= len(data) - offset:
                raise InferenceError(
                    f"the server answered output {name!r} with binary_data_size {nbytes!r:.40}: "
                    f"{len(data) - offset} bytes of binary data are left"
                )
            outputs[name] = output_array(name, datatype, shape, data[offset : offset + nbytes])
            offset += nbytes
    except (KeyError, TypeError, AttributeError) as exc:
        raise InferenceError(f"the server's answer is not the protocol's: {exc!r:.200}") from None
    if offset != len(data):
        raise InferenceError(f"the server answered {len(data) - offset} bytes past its outputs' binary data")
    return outputs


def _header_size(body: bytes, header_length: str | None) -> int:
    """The bytes of an answer's JSON part: its ``Inference-Header-Content-Length``, else all."""
    if header_length is None:
        return len(body)
    if not header_length.isdigit() or int(header_length) > len(body):
        raise InferenceError(
            f"the server answered Inference-Header-Content-Length {header_length[:40]!r} "
            f"for {len(body)} bytes"
        )
    return int(header_length)


def _from_json(name: str, datatype: str, shape: list[int], values: list[Any]) -> np.ndarray:
    dtype, shape = output_dtype(name, datatype), output_shape(name, shape)
    if not isinstance(values, list) or len(values) != math.prod(shape):
        raise InferenceError(
            f"the server answered output {name!r} as {len(values)} {datatype} values for {shape}"
        )
    if dtype.kind == "O":
        if not all(isinstance(v, str) for v in values):
            raise InferenceError(f"the server answered output {name!r} as BYTES that are not all strings")
        return np.array([v.encode() for v in values], dtype).reshape(shape)
    try:
        array = np.array(values, dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InferenceError(
            f"the server answered output {name!r} with values that are not {datatype}: {exc}"
        ) from None
    return array.reshape(shape)


def _json(body: bytes, bounds: Bounds, what: str) -> Any:
    """The JSON value of ``body`` (``what`` the server answered), if it holds at most
    ``bounds.max_json_values`` values, counted from its separators before it is parsed."""
    bounds.check_values(codecs.json_values(body), what)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InferenceError(f"the server answered with JSON that does not parse: {exc}") from None


def _message(body: bytes) -> str:
    """What a server said about a failure: ``{"error": ...}`` as the protocol has it, else its text."""
    try:
        error = json.loads(body).get("error") if len(body) <= _ERROR_JSON_BYTES else None
    except (ValueError, AttributeError, RecursionError):
        error = None
    return str(error) if error else (body[:500].decode("utf-8", "replace") or "no message")
