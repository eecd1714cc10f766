"""The Open Inference Protocol over HTTP, client side, on httpx (asyncio and trio): model metadata
and ``/infer`` with the binary tensor data extension (inputs and outputs as raw bytes after a JSON
header) or, with ``binary_data=False``, JSON tensors. One ``httpx.AsyncClient`` per model."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import httpx
import numpy as np

from .. import _codecs as codecs
from .. import _oip as oip
from .._errors import InferenceError, ModelLoadError, ServerConnectionError
from ._model import Tensor, output_array, server_error

KEEPALIVE_S = 2.0  # an idle connection is closed after this many seconds
# how a request sent on a connection the server has just closed fails
_STALE = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


class HttpTransport:
    """Requests to ``url`` (``http(s)://host:port[/prefix]/v2/models/NAME[/versions/V]``), each on
    a keep-alive connection of its own: as many as the model's requests in flight, made as needed
    and kept for the next request. (Clients of one connection each: httpx's shared pool scans all
    its connections, polling each socket, for every request it assigns, which at 64 connections
    costs more than the request.) A request whose kept-alive connection the server closed as it
    went out, unanswered, is sent once more on a new connection."""

    def __init__(self, url: str, *, binary: bool, headers: Mapping[str, str], connect_timeout: float) -> None:
        self.url = url
        self._binary = binary
        self._options: dict[str, Any] = {
            "headers": dict(headers),
            "timeout": httpx.Timeout(None, connect=connect_timeout),
            # idle connections are dropped here before a server does (uvicorn after 5 s, httpx's
            # own default too): a request sent as the server closes its connection fails
            "limits": httpx.Limits(
                max_connections=1, max_keepalive_connections=1, keepalive_expiry=KEEPALIVE_S
            ),
        }
        self._clients: list[httpx.AsyncClient] = []  # every one made, idle or not
        self._idle: list[httpx.AsyncClient] = []
        self._served: set[httpx.AsyncClient] = set()  # clients whose connection has been answered on
        self._infer_url = url.rstrip("/") + "/infer"

    async def metadata(self) -> dict[str, Any]:
        response = await self._send("GET", self.url)
        metadata = _json(response.content)
        if not isinstance(metadata, dict):
            raise ModelLoadError(f"{self.url} answered metadata that is not a JSON object")
        return metadata

    async def infer(self, tensors: Sequence[Tensor]) -> dict[str, np.ndarray]:
        size = sum(a.nbytes for _, _, a in tensors)
        inline = size <= codecs.OFF_LOOP_BYTES[codecs.JSON]
        encode = encode_binary if self._binary else encode_json
        body, headers = encode(tensors) if inline else await anyio.to_thread.run_sync(encode, tensors)
        response = await self._send("POST", self._infer_url, content=body, headers=headers)
        length = response.headers.get(oip.HEADER_LENGTH)
        if len(response.content) <= codecs.OFF_LOOP_BYTES[codecs.JSON]:
            return decode_response(response.content, length)
        return await anyio.to_thread.run_sync(decode_response, response.content, length)

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """The server's answer, read whole; a non-200 answer as its aioinfer error."""
        client = self._client()
        try:
            try:
                response = await client.request(method, url, **kwargs)
            except _STALE:
                if client not in self._served:
                    raise
                # its kept-alive connection was closed by the server as the request went out (no
                # answer came): once more, on a new connection
                response = await client.request(method, url, **kwargs)
            self._served.add(client)
        except httpx.TransportError as exc:
            raise ServerConnectionError(f"cannot reach {self.url}: {exc!r}") from exc
        finally:
            self._idle.append(client)
        if response.status_code != 200:
            raise server_error(response.status_code, _message(response), self.url)
        return response

    def _client(self) -> httpx.AsyncClient:
        """An idle client (its connection open, if the server kept it), or a new one."""
        if self._idle:
            return self._idle.pop()
        client = httpx.AsyncClient(**self._options)
        self._clients.append(client)
        return client

    async def aclose(self) -> None:
        clients, self._clients, self._idle = self._clients, [], []
        self._served.clear()
        for client in clients:
            await client.aclose()


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


def decode_response(body: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    """The outputs of an ``/infer`` answer by name: JSON ``data`` or binary data after the header."""
    size = int(header_length) if header_length is not None and header_length.isdigit() else len(body)
    head = _json(body[:size])
    data = memoryview(body)[size:]
    outputs: dict[str, np.ndarray] = {}
    offset = 0
    try:
        for tensor in head["outputs"]:
            name, datatype, shape = tensor["name"], tensor["datatype"], tensor["shape"]
            nbytes = tensor.get("parameters", {}).get("binary_data_size")
            if nbytes is None:
                outputs[name] = _from_json(name, datatype, shape, tensor["data"])
            else:
                outputs[name] = output_array(name, datatype, shape, data[offset : offset + nbytes])
                offset += nbytes
    except (KeyError, TypeError, AttributeError) as exc:
        raise InferenceError(f"the server's answer is not the protocol's: {exc!r:.200}") from None
    return outputs


def _from_json(name: str, datatype: str, shape: list[int], values: list[Any]) -> np.ndarray:
    dtype = oip.DATATYPES.get(datatype)
    if dtype is None or len(values) != math.prod(shape):
        raise InferenceError(
            f"the server answered output {name!r} as {len(values)} {datatype} values for {shape}"
        )
    if dtype.kind == "O":
        return np.array([v.encode() if isinstance(v, str) else v for v in values], dtype).reshape(shape)
    return np.array(values, dtype).reshape(shape)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise InferenceError(f"the server answered with JSON that does not parse: {exc}") from None


def _message(response: httpx.Response) -> str:
    """What a server said about a failure: ``{"error": ...}`` as the protocol has it, else its text."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return str(error) if error else (response.text[:500] or response.reason_phrase)
