"""The Open Inference Protocol's HTTP routes (``/v2/...``) over the app's models, by name: health,
server and model metadata, readiness and ``/infer`` (JSON and binary tensors, :mod:`aioinfer._oip`),
under the same limits, admission and batching as ``/v1``. Errors answer ``{"error": "..."}``."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import _codecs as codecs
from . import _install
from . import _oip as oip
from ._errors import (
    AioInferError,
    ClosedError,
    DecodeError,
    InferTimeout,
    QueueFull,
    SessionError,
    TooLargeError,
)
from ._images import decode_image
from ._inputs import TensorInfo
from ._outputs import Outputs
from ._sequences import sequence_params

if TYPE_CHECKING:
    from ._app import Service

VERSION = "1"  # every model is served as its version 1
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (QueueFull, 503),
    (ClosedError, 503),
    (InferTimeout, 504),
    (TooLargeError, 413),
    (AioInferError, 400),  # undecodable bodies, inputs that do not fit, a model failing on them
)
Handler = Callable[[Request], Awaitable[Response]]


class OipRoutes:
    """``/v2`` routes serving ``services`` by model name."""

    def __init__(self, services: Mapping[str, Service]) -> None:
        self.services = services

    async def server_metadata(self, request: Request) -> Response:
        return _json(server_metadata())

    async def live(self, request: Request) -> Response:
        return _json({"live": True})

    async def ready(self, request: Request) -> Response:
        now = all([ready(service) for service in self.services.values()])
        return _json({"ready": now}, 200 if now else 503)

    async def model_ready(self, request: Request) -> Response:
        service = self._service(request)
        now = ready(service)
        return _json({"name": service.name, "ready": now}, 200 if now else 503)

    async def model_metadata(self, request: Request) -> Response:
        return _json(model_metadata(self._service(request)))

    async def infer(self, request: Request) -> Response:
        service = self._service(request)
        with service.abortable():
            return await self._infer(service, request)

    async def _infer(self, service: Service, request: Request) -> Response:
        service.refuse_if_full()
        body = await service.read_body(request)
        await service.decided()
        decode = functools.partial(
            oip.decode_request,
            max_decoded_bytes=service.max_decoded_bytes,
            expected=model_inputs(service),
            max_json_values=service.max_json_values,
        )
        header = request.headers.get(oip.HEADER_LENGTH)
        # what costs is the JSON to parse: binary data is only viewed (np.frombuffer)
        small = oip.header_size(header, len(body)) <= codecs.OFF_LOOP_BYTES[codecs.JSON]
        parsed = await service.off_loop(small, decode, body, header)
        selected = await run_request(service, parsed.inputs, parsed.outputs, small, parsed.parameters)
        encode = functools.partial(
            oip.encode_response,
            max_decoded_bytes=service.max_decoded_bytes,
            max_json_values=service.max_json_values,
        )
        small = sum(a.nbytes for a in selected.values()) <= codecs.OFF_LOOP_BYTES[codecs.JSON]
        content, header_length = await service.off_loop(small, encode, service.name, parsed, selected)
        if header_length is None:
            return Response(content, media_type=codecs.JSON)
        headers = {"Inference-Header-Content-Length": str(header_length)}
        return Response(content, headers=headers, media_type=codecs.OCTET_STREAM)

    def _service(self, request: Request) -> Service:
        return find_service(self.services, request.path_params["name"], request.path_params.get("version"))

    def table(self) -> list[Route]:
        routes: list[tuple[str, Handler, str]] = [
            ("/v2", self.server_metadata, "GET"),
            ("/v2/health/live", self.live, "GET"),
            ("/v2/health/ready", self.ready, "GET"),
        ]
        for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
            routes += [
                (base, self.model_metadata, "GET"),
                (base + "/ready", self.model_ready, "GET"),
                (base + "/infer", self.infer, "POST"),
            ]
        return [Route(path, _oip_errors(handler), methods=[method]) for path, handler, method in routes]


def find_service(services: Mapping[str, Service], name: str, version: str | None) -> Service:
    """The service of model ``name`` (``version`` 1 or any), else a 404 naming what is served."""
    service = services.get(name)
    if service is None:
        raise HTTPException(404, f"unknown model {name!r}: this server serves {sorted(services)}")
    if version and version != VERSION:
        raise HTTPException(404, f"model {name!r} has no version {version!r}: it has version {VERSION}")
    return service


def error_status(exc: HTTPException | AioInferError) -> tuple[int, str]:
    """The HTTP status of an error and the message that says what was wrong."""
    if isinstance(exc, HTTPException):
        return exc.status_code, exc.detail
    return next(code for kind, code in _STATUS if isinstance(exc, kind)), f"{type(exc).__name__}: {exc}"


def model_inputs(service: Service) -> dict[str, TensorInfo]:
    """What ``/infer`` takes by name: the model's inputs, or a task's encoded images (BYTES)."""
    service.require_model()
    if service.task is not None:
        return {oip.TASK_INPUT.name: oip.TASK_INPUT}
    return {info.name: info for info in service.require_model().info.inputs}


def model_metadata(service: Service) -> dict[str, Any]:
    """The protocol's metadata of the model ``service`` serves (503 while it loads): a task takes
    encoded images (``image``, BYTES) and answers each one's prediction as JSON (``prediction``)."""
    info = service.require_model().info
    task = service.task is not None
    return {
        "name": service.name,
        "versions": [VERSION],
        "platform": f"openvino/{service.task.info.task}" if task else "openvino",
        "inputs": [oip.tensor_metadata(t) for t in model_inputs(service).values()],
        "outputs": [oip.tensor_metadata(t) for t in ([oip.TASK_OUTPUT] if task else info.outputs)],
    }


async def run_request(
    service: Service,
    inputs: dict[str, np.ndarray],
    wanted: list[str] | None,
    inline: bool,
    parameters: Mapping[str, Any],
) -> dict[str, np.ndarray]:
    """The outputs ``wanted`` (all if ``None``) of decoded ``inputs`` run on the model (checked
    here if ``inline``, else on a worker thread; in a sequence if ``parameters`` name one), or of a
    task's predictions."""
    sequence = sequence_params(parameters)
    if service.task is None:
        outputs = await service.infer_named(inputs, inline, sequence)
    elif sequence is not None:
        raise SessionError(f"model {service.name!r} is a task and keeps no state: send no sequence_id")
    else:
        if oip.TASK_INPUT.name not in inputs:
            raise DecodeError(f"send the images as the BYTES input {oip.TASK_INPUT.name!r}")
        outputs = await _predict(service, inputs[oip.TASK_INPUT.name])
    return oip.select_outputs(outputs, wanted)


async def _predict(service: Service, images: np.ndarray) -> Outputs:
    """Each encoded image's prediction as JSON bytes, in the images' shape: decoded within
    ``max_pixels`` on worker threads and predicted, as many at once as the model has requests. The
    first image that fails fails the request (its error names it)."""
    blobs = images.ravel().tolist()
    answers = np.empty(len(blobs), np.object_)
    limiter = anyio.CapacityLimiter(service.require_model().info.num_requests)
    failed: list[Exception] = []

    async def answer(i: int, blob: bytes, scope: anyio.CancelScope) -> None:
        async with limiter:
            decode = functools.partial(decode_image, max_pixels=service.max_pixels, name=f"image {i}")
            try:
                prediction = await service.predict(await service.in_thread(decode, blob))
            except Exception as exc:
                failed.append(exc)
                scope.cancel()
                return
            answers[i] = codecs.dump_json(prediction.to_dict())

    with service.admit():
        async with anyio.create_task_group() as tg:
            for i, blob in enumerate(blobs):
                tg.start_soon(answer, i, blob, tg.cancel_scope)
    if failed:
        raise failed[0]
    name = oip.TASK_OUTPUT.name
    return Outputs([answers.reshape(images.shape)], [name], {name: 0})


def server_metadata() -> dict[str, Any]:
    """The protocol's server metadata: name, version, extensions."""
    return {"name": "aioinfer", "version": _install.version(), "extensions": ["binary_tensor_data"]}


def ready(service: Service) -> bool:
    """Whether ``service`` is ready; starts its batching decision if nothing did (a mounted app)."""
    model = service.model
    if model is not None and not model.closed and not service.ready:
        service.decide()
    return service.ready


def _oip_errors(handler: Handler) -> Handler:
    """``handler`` with its errors answered as the protocol has them: ``{"error": "..."}``."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except (HTTPException, AioInferError) as exc:
            status, message = error_status(exc)
            headers = {"Retry-After": "1"} if status == 503 else getattr(exc, "headers", None)
            return _json({"error": message}, status, headers)

    return run


def _json(content: Any, status: int = 200, headers: Any = None) -> Response:
    return Response(codecs.dump_json(content), status, headers, media_type=codecs.JSON)
