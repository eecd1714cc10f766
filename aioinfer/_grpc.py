"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` (ServerLive,
ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer) on ``grpc.aio``, in the event
loop of the HTTP server and over the same :class:`~aioinfer._app.Service` objects (batcher, limits,
admission, drain). Messages come from aioinfer's own ``_proto/oip.proto`` (same names and field
numbers as KServe's and Triton's), read from its serialized descriptor into a pool of its own.

Errors end the call with the status a client expects: INVALID_ARGUMENT (bad input), NOT_FOUND
(unknown model or version), UNAVAILABLE (overloaded, loading, shutting down), DEADLINE_EXCEEDED
(timeout), RESOURCE_EXHAUSTED (too large), with the same messages as over HTTP.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
from starlette.exceptions import HTTPException

from . import _codecs as codecs
from . import _oip as oip
from . import _oip_routes as routes
from ._errors import AioInferError, DecodeError, TooLargeError
from ._oip_proto import CONTENTS, SERVICE, messages, typed_values

if TYPE_CHECKING:
    from ._app import Service

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
_METHODS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")


class InferenceService:
    """The RPCs of ``inference.GRPCInferenceService`` over ``services`` by model name."""

    def __init__(self, services: Mapping[str, Service]) -> None:
        self.services = services
        self.m = messages()

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self.m["ServerLiveResponse"](live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self.m["ServerReadyResponse"](ready=all([routes.ready(s) for s in self.services.values()]))

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        service = routes.find_service(self.services, request.name, request.version)
        return self.m["ModelReadyResponse"](ready=routes.ready(service))

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self.m["ServerMetadataResponse"](**routes.server_metadata())

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        service = routes.find_service(self.services, request.name, request.version)
        return self.m["ModelMetadataResponse"](**routes.model_metadata(service))

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        service = routes.find_service(self.services, request.model_name, request.model_version)
        with service.abortable():
            service.refuse_if_full()
            await service.decided()
            expected = routes.model_inputs(service)
            # what costs is typed contents to convert: raw contents are only viewed (np.frombuffer)
            typed = sum(tensor.contents.ByteSize() for tensor in request.inputs)
            inline = typed <= codecs.OFF_LOOP_BYTES[codecs.JSON]
            decode = functools.partial(
                decode_inputs,
                expected=expected,
                limit=service.max_decoded_bytes,
                max_values=service.max_json_values,
            )
            inputs = await service.off_loop(inline, decode, request)
            wanted = [o.name for o in request.outputs] or None
            outputs = await routes.run_request(service, inputs, wanted, inline, parameters(request))
            small = sum(a.nbytes for a in outputs.values()) <= codecs.OFF_LOOP_BYTES[codecs.JSON]
            return await service.off_loop(small, self._response, service.name, request.id, outputs)

    def _response(self, model: str, request_id: str, outputs: Mapping[str, np.ndarray]) -> Any:
        """Every output as raw bytes (``raw_output_contents``), as Triton answers."""
        tensor = self.m["ModelInferResponse"].InferOutputTensor
        return self.m["ModelInferResponse"](
            model_name=model,
            model_version=routes.VERSION,
            id=request_id,
            outputs=[
                tensor(name=name, datatype=oip.datatype(a.dtype), shape=list(a.shape))
                for name, a in outputs.items()
            ],
            raw_output_contents=[_raw_bytes(a) for a in outputs.values()],
        )

    def handler(self) -> grpc.GenericRpcHandler:
        """The service's methods, each answering errors with their status code."""
        m = self.m
        methods = {}
        for name in _METHODS:
            request, response = m[f"{name}Request"], m[f"{name}Response"]
            methods[name] = grpc.unary_unary_rpc_method_handler(
                self._counted(name, _statuses(getattr(self, name))),
                request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )
        return grpc.method_handlers_generic_handler(SERVICE, methods)

    def _counted(self, method: str, rpc: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        """``rpc`` counted in the app's metrics like an HTTP request: route ``grpc:METHOD``, status
        the gRPC code's name, model the one asked for (``""`` if none or unknown)."""
        metrics = next(iter(self.services.values())).metrics
        route = f"grpc:{method}"

        @functools.wraps(rpc)
        async def run(request: Any, context: grpc.aio.ServicerContext) -> Any:
            name = getattr(request, "model_name", None) or getattr(request, "name", "")
            model = name if name in self.services and method.startswith("Model") else ""
            start = time.perf_counter()
            status = "OK"
            try:
                return await rpc(request, context)
            except BaseException:
                code = context.code()
                status = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                metrics.requests.labels(model, route, status).inc()
                metrics.latency.labels(model, route).observe(time.perf_counter() - start)

        return run


def parameters(message: Any) -> dict[str, Any]:
    """A message's ``parameters`` map as plain values (unset ones left out)."""
    values: dict[str, Any] = {}
    for key, param in message.parameters.items():
        choice = param.WhichOneof("parameter_choice")
        if choice is not None:
            values[key] = getattr(param, choice)
    return values


def decode_inputs(
    request: Any, *, expected: Mapping[str, Any], limit: int, max_values: int = codecs.MAX_JSON_VALUES
) -> dict[str, np.ndarray]:
    """The inputs of a ``ModelInferRequest`` by name, from ``raw_input_contents`` (one per input,
    each exactly its shape's size) or typed ``contents`` (exactly its shape's count, at most
    ``max_values`` in all: Python converts them one by one, holding the GIL, as it parses JSON),
    each checked against the model's ``expected`` inputs and all within ``limit`` bytes."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise DecodeError(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: send one per input"
        )
    inputs: dict[str, np.ndarray] = {}
    budget = limit
    if not raw:
        _check_typed_values(request, max_values)
    for i, tensor in enumerate(request.inputs):
        head = {"name": tensor.name, "shape": list(tensor.shape), "datatype": tensor.datatype}
        name, dtype, shape = oip.check_tensor(head, expected, inputs)
        nbytes = oip.checked_size(name, dtype, shape, budget, limit)
        budget -= nbytes
        inputs[name] = _raw(name, raw[i], dtype, shape, nbytes) if raw else _typed(tensor, dtype, shape)
    return inputs


def _check_typed_values(request: Any, max_values: int) -> None:
    """TooLargeError unless the typed ``contents`` of all inputs hold at most ``max_values`` values."""
    values = typed_values(request.inputs)
    if values > max_values:
        raise TooLargeError(
            f"the inputs' typed contents hold {values} values, over max_json_values={max_values}, the "
            "most this server converts one by one (it holds up every other request meanwhile): send "
            "them as raw_input_contents"
        )


def _raw_bytes(array: np.ndarray) -> bytes:
    return oip.write_bytes(array) if array.dtype.kind == "O" else np.ascontiguousarray(array).tobytes()


def _raw(name: str, data: bytes, dtype: np.dtype, shape: list[int], nbytes: int) -> np.ndarray:
    if dtype.kind == "O":
        return oip.read_bytes(f"input {name!r}", data, shape)
    if len(data) != nbytes:
        raise DecodeError(
            f"input {name!r}: {len(data)} bytes of raw_input_contents; "
            f"{oip.datatype(dtype)}{shape} takes {nbytes}"
        )
    return np.frombuffer(bytearray(data), dtype).reshape(shape)  # writable: the model may share it


def _typed(tensor: Any, dtype: np.dtype, shape: list[int]) -> np.ndarray:
    kind = oip.datatype(dtype)
    field = CONTENTS.get(kind)
    if field is None:
        raise DecodeError(f"input {tensor.name!r}: send {kind} as raw_input_contents")
    values = getattr(tensor.contents, field)
    count = int(np.prod(shape))
    if len(values) != count:
        raise DecodeError(f"input {tensor.name!r}: {len(values)} values in {field} for shape {shape}")
    if kind == "BYTES":
        elements = np.empty(count, np.object_)
        elements[:] = list(values)
        return elements.reshape(shape)
    try:
        return np.array(values, dtype).reshape(shape)
    except (OverflowError, ValueError) as exc:
        raise DecodeError(f"input {tensor.name!r}: {field} do not fit {kind}: {exc}") from None


def _statuses(rpc: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]) -> Callable[..., Any]:
    """``rpc`` with aioinfer's errors ending the call with their gRPC status and message."""

    @functools.wraps(rpc)
    async def run(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await rpc(request, context)
        except (HTTPException, AioInferError) as exc:
            status, message = routes.error_status(exc)
            await context.abort(_CODES.get(status, grpc.StatusCode.INVALID_ARGUMENT), message)

    return run


def server(
    services: Mapping[str, Service], address: str, max_message_bytes: int
) -> tuple[grpc.aio.Server, int]:
    """A ``grpc.aio`` server of :class:`InferenceService` bound to ``address`` (``host:port``;
    port 0 for any free one), not started, and the port it is bound to. Messages larger than
    ``max_message_bytes`` are refused with RESOURCE_EXHAUSTED before they are read."""
    options = [("grpc.max_receive_message_length", max_message_bytes), ("grpc.so_reuseport", 0)]
    grpc_server = grpc.aio.server(options=options)
    grpc_server.add_generic_rpc_handlers((InferenceService(services).handler(),))
    port = grpc_server.add_insecure_port(address)
    return grpc_server, port
