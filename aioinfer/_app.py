"""The Starlette app behind ``aioinfer serve`` and ``aioinfer.asgi.create_app``: routes, request
decoding, and the mapping of errors to HTTP statuses."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from http import HTTPStatus
from typing import Any

import anyio
import cv2
import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._batcher import Batcher, can_batch
from ._errors import (
    AioInferError,
    ClosedError,
    InferenceError,
    InferTimeout,
    InputError,
    QueueFull,
    SettingsError,
)
from ._inputs import InputAdapter
from ._metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from ._model import AsyncModel
from ._outputs import Outputs

log = logging.getLogger("aioinfer.serve")

NPY, NPZ, JSON = "application/x-npy", "application/x-npz", "application/json"
# bodies and outputs larger than this are (de)coded on a worker thread: JSON costs far more per byte
OFF_LOOP_BYTES = {JSON: 64 * 1024, NPY: 4 * 2**20, NPZ: 1 * 2**20}
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (QueueFull, 503),
    (ClosedError, 503),
    (InferTimeout, 504),
    (InputError, 422),
    (SettingsError, 422),
    (InferenceError, 422),  # inputs the model accepts by shape but fails to run: that request's fault
)


class Service:
    """The model (and task, if any) an app serves, and the limits it serves it under."""

    def __init__(
        self,
        source: Any,
        *,
        max_batch_size: int,
        max_delay_ms: float,
        max_queue: int,
        timeout: float | None,
        max_body_bytes: int,
    ) -> None:
        self.source = source
        self.max_batch_size = max_batch_size
        self.max_delay_ms = max_delay_ms
        self.max_queue = max_queue
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.model: AsyncModel | None = None
        self.task: Any = None
        self.batcher: Batcher | None = None
        self.adapt: InputAdapter | None = None  # the checks and conversion of what /v1/infer gets
        self.metrics = Metrics(self.queue_depth)
        self.load_error: str | None = None
        self.loaded = asyncio.Event()  # set once loading succeeded or failed
        self._outstanding = 0
        self._limiter = anyio.CapacityLimiter(4)
        if isinstance(source, AsyncModel) or _is_task(source):
            self._attach(source)

    # -- lifecycle ------------------------------------------------------------------------------

    def _attach(self, obj: Any) -> None:
        self.task = obj if _is_task(obj) else None
        self.model = obj.model if self.task is not None else obj
        if self.max_batch_size > 1 and can_batch(self.model):
            self.batcher = Batcher(
                self.model,
                max_batch_size=self.max_batch_size,
                max_delay_ms=self.max_delay_ms,
                on_batch=self.metrics.batch_size.observe,
            )
        elif self.max_batch_size > 1:
            log.warning(
                "model %r has no usable batch dimension: dynamic batching is off", self.model.info.name
            )
        self.adapt = self.batcher._adapt if self.batcher is not None else self.model._adapt
        batching = f"batches of up to {self.batcher.max_batch_size}" if self.batcher else "no batching"
        log.info("model %r ready on %s (%s)", self.model.info.name, self.model.info.device, batching)
        self.loaded.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Load the source if needed, serve until ``stop`` is set, then close what this app opened."""
        async with contextlib.AsyncExitStack() as stack:
            if self.model is None:
                try:
                    self._attach(await stack.enter_async_context(self.source))
                except Exception as exc:
                    self.load_error = f"{type(exc).__name__}: {exc}"
                    log.error("loading the model failed: %s", self.load_error)
                    self.loaded.set()
                    return
            if self.batcher is not None:
                stack.push_async_callback(self.batcher.aclose)
            await stop.wait()

    def require_model(self) -> AsyncModel:
        if self.model is None or self.model.closed:
            reason = (
                f"loading the model failed: {self.load_error}"
                if self.load_error
                else "the model is still loading"
            )
            raise HTTPException(503, reason, headers={"Retry-After": "1"})
        return self.model

    def queue_depth(self) -> float:
        """Calls waiting for the model: in the batcher and in the model's request queue."""
        if self.model is None:
            return 0
        return (self.batcher.pending if self.batcher else 0) + self.model.stats().queued

    # -- serving ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def admit(self) -> Iterator[AsyncModel]:
        """Count one request; beyond what the model runs at once plus ``max_queue``, refuse it at once."""
        model = self.require_model()
        capacity = model.info.num_requests * (self.batcher.max_batch_size if self.batcher else 1)
        if self._outstanding >= capacity + self.max_queue:
            raise QueueFull(f"{self.max_queue} requests already wait for the model (max_queue); retry later")
        self._outstanding += 1
        try:
            yield model
        finally:
            self._outstanding -= 1

    async def infer(self, arrays: dict[int, np.ndarray]) -> Outputs:
        """Run inputs already converted by ``self.adapt`` (in the batcher if batching)."""
        if self.batcher is not None:
            return await self.batcher._infer_adapted(arrays, timeout=self.timeout)
        return await self.require_model()._infer_adapted(arrays, timeout=self.timeout)

    async def predict(self, image: np.ndarray) -> Any:
        try:
            with anyio.fail_after(self.timeout):
                return await self.task.predict(image)
        except TimeoutError as exc:
            if isinstance(exc, InferTimeout):
                raise
            raise InferTimeout(f"the prediction did not finish within {self.timeout:g} s") from None

    async def in_thread(self, func: Any, *args: Any) -> Any:
        """Run ``func`` on one of a few worker threads (decoding must not block the event loop)."""
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)

    async def off_loop(self, kind: str, size: int, func: Any, *args: Any) -> Any:
        """Run ``func`` on a worker thread when ``size`` bytes of ``kind`` are worth the hop, else inline."""
        if size > OFF_LOOP_BYTES.get(kind, OFF_LOOP_BYTES[NPZ]):
            return await self.in_thread(func, *args)
        return func(*args)

    async def read_body(self, request: Request) -> bytes:
        """The request body, refused with 413 as soon as it exceeds ``max_body_bytes``."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _too_large(int(declared), self.max_body_bytes)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _too_large(size, self.max_body_bytes)
            chunks.append(chunk)
        return b"".join(chunks)


# -- routes -------------------------------------------------------------------------------------


class _Routes:
    def __init__(self, service: Service) -> None:
        self.s = service

    async def infer(self, request: Request) -> Response:
        with self.s.admit():
            body = await self.s.read_body(request)
            kind = _media_type(request.headers.get("content-type", JSON))
            arrays = await self.s.off_loop(kind, len(body), _decode_tensors, body, kind, self.s.adapt)
            outputs = await self.s.infer(arrays)
            fmt = _response_format(request.headers.get("accept", JSON), len(outputs))
            return await self.s.off_loop(fmt, sum(a.nbytes for a in outputs), _encode_outputs, outputs, fmt)

    async def predict(self, request: Request) -> Response:
        self._task()
        with self.s.admit():
            body = await self.s.read_body(request)
            if _media_type(request.headers.get("content-type", "")) == "multipart/form-data":
                body = await _multipart_file(request, body)
            image = await self.s.in_thread(_decode_image, body)
            prediction = await self.s.predict(image)
            return _json(prediction.to_dict())

    async def info(self, request: Request) -> Response:
        model = self.s.require_model()
        batcher = self.s.batcher
        return _json(
            {
                "model": model.info.to_dict(),
                "task": self.s.task.info.to_dict() if self.s.task is not None else None,
                "batching": {
                    "enabled": batcher is not None,
                    "max_batch_size": batcher.max_batch_size if batcher else 1,
                    "max_delay_ms": self.s.max_delay_ms if batcher else 0,
                },
                "limits": {
                    "max_queue": self.s.max_queue,
                    "timeout_s": self.s.timeout,
                    "max_body_bytes": self.s.max_body_bytes,
                },
                "stats": model.stats().to_dict(),
            }
        )

    async def get_settings(self, request: Request) -> Response:
        return _json(dict(self._task().settings))

    async def patch_settings(self, request: Request) -> Response:
        task = self._task()
        changes = _json_body(await self.s.read_body(request))
        if not isinstance(changes, dict):
            raise HTTPException(
                400, f"send a JSON object of settings to change, got {type(changes).__name__}"
            )
        task.update_settings(**changes)
        return _json(dict(task.settings))

    async def live(self, request: Request) -> Response:
        return _json({"status": "live"})

    async def ready(self, request: Request) -> Response:
        model = self.s.model
        if model is not None and not model.closed:
            return _json({"status": "ready", "model": model.info.name})
        status = "failed" if self.s.load_error else "loading"
        return _json({"status": status, "error": self.s.load_error}, 503)

    async def metrics(self, request: Request) -> Response:
        return Response(self.s.metrics.render(), media_type=CONTENT_TYPE)

    def _task(self) -> Any:
        self.s.require_model()
        if self.s.task is None:
            raise HTTPException(404, "this server runs a bare model, not a task: use POST /v1/infer")
        return self.s.task

    def table(self) -> list[Route]:
        return [
            Route("/v1/infer", self.infer, methods=["POST"]),
            Route("/v1/predict", self.predict, methods=["POST"]),
            Route("/v1/info", self.info, methods=["GET"]),
            Route("/v1/settings", self.get_settings, methods=["GET"]),
            Route("/v1/settings", self.patch_settings, methods=["PATCH"]),
            Route("/health/live", self.live, methods=["GET"]),
            Route("/health/ready", self.ready, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]


def create_app(
    model_or_task: Any,
    *,
    max_batch_size: int = 8,
    max_delay_ms: float = 2.0,
    max_queue: int = 256,
    timeout: float | None = 30.0,
    max_body_bytes: int = 16 * 2**20,
) -> Starlette:
    """An ASGI app serving ``model_or_task`` over HTTP (routes: see :mod:`aioinfer.asgi`).

    ``model_or_task`` is an :class:`AsyncModel` or a task (both stay open: the caller owns them), or
    something to enter as an async context manager in the app's lifespan, such as
    ``aioinfer.load(...)`` or ``aioinfer.tasks.load(...)``: then the app loads it in the background
    (``/health/ready`` answers 503 until it is compiled) and closes it at shutdown.

    Concurrent ``/v1/infer`` requests are batched into one inference of up to ``max_batch_size`` rows,
    waiting at most ``max_delay_ms`` (1 turns batching off; so does a model without a batch
    dimension). Beyond ``max_queue`` waiting requests the app answers 503 with ``Retry-After``;
    after ``timeout`` seconds 504; bodies over ``max_body_bytes`` 413; inputs that do not fit the
    model 400/422 with what was expected.
    """
    service = Service(
        model_or_task,
        max_batch_size=max_batch_size,
        max_delay_ms=max_delay_ms,
        max_queue=max_queue,
        timeout=timeout,
        max_body_bytes=max_body_bytes,
    )
    routes = _Routes(service).table()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop), name="aioinfer-service")
        try:
            yield
        finally:
            stop.set()
            await runner

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(MetricsMiddleware, metrics=service.metrics, routes={r.path for r in routes})],
        exception_handlers={AioInferError: _error_response, HTTPException: _error_response},
    )
    app.state.service = service
    return app


# -- encoding and decoding ----------------------------------------------------------------------


async def _error_response(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _json(
            {"error": HTTPStatus(exc.status_code).phrase, "message": exc.detail}, exc.status_code, exc.headers
        )
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    headers = {"Retry-After": "1"} if status == 503 else None
    return _json({"error": type(exc).__name__, "message": str(exc)}, status, headers)


def _json(content: Any, status: int = 200, headers: Any = None) -> Response:
    body = json.dumps(content, separators=(",", ":")).encode()  # NaN/Infinity allowed: outputs may hold them
    return Response(body, status, headers, media_type=JSON)


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise HTTPException(400, f"the body is not valid JSON: {exc}") from None


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def _decode_tensors(body: bytes, kind: str, adapt: InputAdapter) -> dict[int, np.ndarray]:
    """The model's inputs, checked and converted by ``adapt``, from a JSON ``{"inputs": ...}`` (an
    array, a list by input index, or an object by input name), a ``.npy`` array or a ``.npz``
    archive by input name."""
    if kind == JSON:
        payload = _json_body(body)
        if not isinstance(payload, dict) or "inputs" not in payload:
            raise HTTPException(
                400,
                'send a JSON object {"inputs": ...}: an array, a list by input index, '
                "or an object by input name",
            )
        return adapt(payload["inputs"])
    if kind in (NPY, NPZ, "application/octet-stream"):
        try:
            loaded = np.load(io.BytesIO(body), allow_pickle=False)
        except (
            ValueError,
            OSError,
            EOFError,
            MemoryError,
        ) as exc:  # MemoryError: a header lying about its size
            raise HTTPException(400, f"the body is not a .npy array or .npz archive ({exc!r})") from None
        return adapt(dict(loaded.items()) if isinstance(loaded, np.lib.npyio.NpzFile) else loaded)
    raise HTTPException(415, f"unsupported Content-Type {kind!r}: send {JSON}, {NPY} or {NPZ}")


def _response_format(accept: str, n_outputs: int) -> str:
    """``.npz`` or ``.npy`` (one output only) when the client accepts it, else JSON."""
    accepted = {_media_type(part) for part in accept.split(",")}
    if NPZ in accepted:
        return NPZ
    return NPY if NPY in accepted and n_outputs == 1 else JSON


def _encode_outputs(outputs: Outputs, fmt: str) -> Response:
    if fmt == JSON:
        return _json({"outputs": {name: array.tolist() for name, array in outputs.to_dict().items()}})
    buffer = io.BytesIO()
    if fmt == NPZ:
        np.savez(buffer, **outputs.to_dict())  # type: ignore[arg-type]
    else:
        np.save(buffer, outputs[0])
    return Response(buffer.getvalue(), media_type=fmt)


async def _multipart_file(request: Request, body: bytes) -> bytes:
    """The bytes of the uploaded file (the field ``image``, else the first file) of a form."""

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async with Request(request.scope, replay).form(max_files=1, max_fields=16) as form:  # bad forms: 400
        files = {key: value for key, value in form.multi_items() if not isinstance(value, str)}
        upload = files.get("image") or next(iter(files.values()), None)
        if upload is None:
            raise HTTPException(400, "the form has no file: upload the image as the field 'image'")
        return await upload.read()


def _decode_image(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise HTTPException(
            400,
            f"the body ({len(data)} bytes) is not an image OpenCV can decode: "
            "send JPEG, PNG, BMP or TIFF bytes",
        )
    return image


def _is_task(obj: Any) -> bool:
    return hasattr(obj, "predict") and isinstance(getattr(obj, "model", None), AsyncModel)


def _too_large(size: int, limit: int) -> HTTPException:
    return HTTPException(413, f"the body has {size} bytes or more; this server takes at most {limit}")
