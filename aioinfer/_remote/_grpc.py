"""The Open Inference Protocol over gRPC, client side, on ``grpc.aio`` (asyncio only): ModelMetadata
and ModelInfer with every input as ``raw_input_contents``; outputs read from
``raw_output_contents`` or from typed ``contents``. One channel per model, receiving messages of at
most ``max_answer_bytes``; typed contents are counted before they are converted."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np

from .. import _codecs as codecs
from .. import _oip as oip
from .._errors import AioInferError, InferenceError, InferTimeout, ServerConnectionError, TooLargeError
from .._oip_proto import CONTENTS, SERVICE, messages, typed_values
from ._model import Bounds, Tensor, coded, output_array, output_dtype, output_shape, server_error

# a gRPC status as the HTTP status it stands for (UNAVAILABLE: see _error)
_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
}


class GrpcTransport:
    """Calls to model ``name`` (version ``version``, ``""`` for the server's choice) at
    ``target`` (``host:port``), over TLS if ``secure``."""

    def __init__(
        self,
        url: str,
        target: str,
        name: str,
        version: str,
        *,
        secure: bool,
        headers: Mapping[str, str],
        connect_timeout: float,
        bounds: Bounds,
    ) -> None:
        self.url = url
        self._name, self._version = name, version
        self._metadata = tuple((k.lower(), v) for k, v in headers.items()) or None
        self._connect_timeout = connect_timeout
        self._bounds = bounds
        options = [
            ("grpc.max_receive_message_length", bounds.max_answer_bytes),
            ("grpc.max_send_message_length", -1),  # the server says what it takes
        ]
        if secure:
            self._channel = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(), options=options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        self.m = m = messages()
        self._model_metadata = self._method("ModelMetadata")
        self._model_infer = self._method("ModelInfer")
        self._request = m["ModelInferRequest"]

    def _method(self, name: str) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        return self._channel.unary_unary(
            f"/{SERVICE}/{name}",
            request_serializer=self.m[f"{name}Request"].SerializeToString,
            response_deserializer=self.m[f"{name}Response"].FromString,
        )

    async def metadata(self) -> dict[str, Any]:
        request = self.m["ModelMetadataRequest"](name=self._name, version=self._version)
        try:
            answer = await self._call(self._model_metadata, request, self._connect_timeout)
        except InferTimeout:
            raise ServerConnectionError(
                f"{self.url} did not answer the model's metadata within "
                f"connect_timeout={self._connect_timeout:g} s"
            ) from None
        tensors = {
            key: [
                {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in getattr(answer, key)
            ]
            for key in ("inputs", "outputs")
        }
        return {"name": answer.name or self._name, **tensors}

    async def infer(self, tensors: Sequence[Tensor]) -> dict[str, np.ndarray]:
        size = sum(a.nbytes for _, _, a in tensors)
        request = await coded(size <= codecs.OFF_LOOP_BYTES[codecs.NPY], self._infer_request, tensors)
        answer = await self._call(self._model_infer, request, None)
        raw = answer.raw_output_contents
        if raw:  # bytes only copied; typed contents converted one by one, as costly as JSON
            inline = sum(len(data) for data in raw) <= codecs.OFF_LOOP_BYTES[codecs.NPY]
        else:
            inline = answer.ByteSize() <= codecs.OFF_LOOP_BYTES[codecs.JSON]
        return await coded(inline, self._outputs, answer)

    def _infer_request(self, tensors: Sequence[Tensor]) -> Any:
        """A ModelInferRequest of ``tensors``, every one as ``raw_input_contents``."""
        request = self._request(
            model_name=self._name,
            model_version=self._version,
            raw_input_contents=[
                oip.write_bytes(a) if a.dtype.kind == "O" else np.ascontiguousarray(a).tobytes()
                for _, _, a in tensors
            ],
        )
        add = request.inputs.add
        for name, datatype, array in tensors:
            add(name=name, datatype=datatype, shape=array.shape)
        return request

    def _outputs(self, answer: Any) -> dict[str, np.ndarray]:
        """The outputs of a ModelInferResponse by name, raw or typed."""
        raw = answer.raw_output_contents
        if not raw:
            self._bounds.check_values(typed_values(answer.outputs), "typed contents")
            return {t.name: _typed(t) for t in answer.outputs}
        if len(raw) != len(answer.outputs):
            raise InferenceError(
                f"the server answered {len(answer.outputs)} outputs with {len(raw)} raw contents"
            )
        return {
            t.name: output_array(t.name, t.datatype, t.shape, data)
            for t, data in zip(answer.outputs, raw, strict=True)
        }

    async def _call(
        self, method: grpc.aio.UnaryUnaryMultiCallable[Any, Any], request: Any, timeout: float | None
    ) -> Any:
        """The answer of one call. It is awaited through a future of this loop, not grpc's own
        task: a caller's cancellation (a timeout, aclose) then reaches it as the backend's own,
        and the call is cancelled on the channel."""
        call = method(request, timeout=timeout, metadata=self._metadata)
        done = asyncio.get_running_loop().create_future()
        call.add_done_callback(lambda _: None if done.done() else done.set_result(None))
        try:
            await done
        except BaseException:
            call.cancel()
            raise
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None

    def _error(self, exc: grpc.aio.AioRpcError) -> AioInferError:
        """The aioinfer error of a failed call. UNAVAILABLE is the server's "busy" (QueueFull)
        while the channel is connected, else a connection that failed or was lost."""
        code, message = exc.code(), exc.details() or exc.code().name
        connected = self._channel.get_state() == grpc.ChannelConnectivity.READY
        if code == grpc.StatusCode.UNAVAILABLE and not connected:
            return ServerConnectionError(f"cannot reach {self.url}: {message}")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and f"vs. {self._bounds.max_answer_bytes})" in message:
            # grpc's own refusal of an answer over this channel's receive limit ("Received message
            # larger than max (N vs. LIMIT)"); a server's refusal of the request names its limit
            return TooLargeError(
                f"the server's answer is over max_answer_bytes={self._bounds.max_answer_bytes}, the "
                f"most this client reads of one answer ({message}): raise it in load(url, config=...)"
            )
        return server_error(_STATUS.get(code, 500), f"{code.name}: {message}", self.url)

    async def aclose(self) -> None:
        await self._channel.close()


def _typed(tensor: Any) -> np.ndarray:
    """An output sent as typed ``contents`` (a server that does not answer raw bytes)."""
    dtype, shape = output_dtype(tensor.name, tensor.datatype), output_shape(tensor.name, tensor.shape)
    field = CONTENTS.get(tensor.datatype)
    if field is None:
        raise InferenceError(f"the server answered output {tensor.name!r} as {tensor.datatype!r} contents")
    values = getattr(tensor.contents, field)
    if len(values) != math.prod(shape):
        raise InferenceError(
            f"the server answered output {tensor.name!r} with {len(values)} values for {shape}"
        )
    return np.array(list(values), dtype).reshape(shape)
