"""The Starlette app behind ``aioinfer serve`` and ``aioinfer.asgi.create_app``: routes, the limits
a request is served under (body size and time, admission, shutdown), and the mapping of errors to
HTTP statuses. Bodies are (de)coded by :mod:`aioinfer._codecs` and :mod:`aioinfer._images`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from http import HTTPStatus
from typing import Any

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import _codecs as codecs
from ._batcher import Batcher
from ._checks import check_optional, check_positive, deprecated_ms
from ._codecs import JSON
from ._errors import (
    AioInferError,
    ClosedError,
    DecodeError,
    InferenceError,
    InferTimeout,
    InputError,
    NotBatchableError,
    QueueFull,
    SessionError,
    SettingsError,
    TooLargeError,
    UnsupportedFormatError,
)
from ._images import DEFAULT_MAX_PIXELS, decode_image
from ._metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from ._model import AsyncModel
from ._monitor import loop_stats, monitored
from ._oip_routes import OipRoutes, ready
from ._outputs import Outputs
from ._runner import Arrays, Runner
from ._sequences import SequenceParams, Sequences
from ._stats import Latency

log = logging.getLogger("aioinfer.serve")

BATCHING = ("auto", "on", "off")  # create_app(batching=...): probe first, trust the user, never
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (QueueFull, 503),
    (ClosedError, 503),
    (InferTimeout, 504),
    (InputError, 422),
    (SettingsError, 422),
    (InferenceError, 422),  # inputs the model accepts by shape but fails to run: that request's fault
    (TooLargeError, 413),
    (UnsupportedFormatError, 415),
    (DecodeError, 400),
)


class Service:
    """The model (and task, if any) an app serves under ``name``, and the limits it serves it under."""

    def __init__(
        self,
        source: Any,
        *,
        name: str = "model",
        metrics: Metrics | None = None,
        max_batch_size: int,
        max_delay: float,
        batching: str,
        max_queue: int,
        timeout: float | None,
        max_body_bytes: int,
        max_decoded_bytes: int,
        max_json_values: int,
        max_pixels: int,
        body_timeout: float | None,
        sequence_idle_timeout: float = 60.0,
    ) -> None:
        if batching not in BATCHING:
            raise ValueError(f"batching must be one of {', '.join(map(repr, BATCHING))}, got {batching!r}")
        self.source = source
        self.name = name
        self.max_batch_size = check_positive("max_batch_size", max_batch_size, integer=True)
        self.max_delay = check_positive("max_delay", max_delay, zero=True)
        self.batching = batching
        self.batching_reason = "the model is still loading"  # why it batches, or why not
        self._deciding: asyncio.Task[None] | None = None  # the batching decision, made once
        self._batchers: list[Batcher] = []  # every batcher made, closed at shutdown
        self.max_queue = check_positive("max_queue", max_queue, integer=True, zero=True)
        self.timeout = check_optional("timeout", timeout)
        self.max_body_bytes = check_positive("max_body_bytes", max_body_bytes, integer=True)
        self.max_decoded_bytes = check_positive("max_decoded_bytes", max_decoded_bytes, integer=True)
        self.max_json_values = check_positive("max_json_values", max_json_values, integer=True)
        self.max_pixels = check_positive("max_pixels", max_pixels, integer=True)
        self.body_timeout = check_optional("body_timeout", body_timeout)
        self.sequences = Sequences(check_positive("sequence_idle_timeout", sequence_idle_timeout))
        self.model: AsyncModel | None = None
        self.task: Any = None
        self.batcher: Batcher | None = None
        self.runner: Runner | None = None  # what checks /v1/infer's inputs: the batcher or the model
        self.metrics = metrics or Metrics()
        self._on_batch = self.metrics.add_model(name, self.queue_depth, self.stages)
        self.load_error: str | None = None
        self.loaded = asyncio.Event()  # set once loading succeeded or failed
        self._outstanding = 0  # requests with decoded inputs, waiting for or running on the model
        self._limiter = anyio.CapacityLimiter(4)
        self._running: set[anyio.CancelScope] = set()  # requests that abort() ends
        self._aborted = False
        self._unobserve: Callable[[], None] = lambda: None  # ends the task's stages in the metrics
        if isinstance(source, AsyncModel) or _is_task(source):
            self._attach(source)

    # -- lifecycle ------------------------------------------------------------------------------

    def _attach(self, obj: Any) -> None:
        self.task = obj if _is_task(obj) else None
        self.model = obj.model if self.task is not None else obj
        self.runner = self.model  # until the batching decision
        if self.task is not None:
            self._unobserve = self.task.observe_stages(self.metrics.stage_observer(self.name))

    async def run(self, stop: asyncio.Event) -> None:
        """Load the source if needed and decide on batching (the app is ready then), serve until
        ``stop`` is set, then close what this app opened."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                if self.model is None:
                    self._attach(await stack.enter_async_context(self.source))
                stack.callback(lambda: self._unobserve())  # the task may outlive this app
                stack.push_async_callback(self._close_batchers)  # before the model closes
                await self.decided()
            except Exception as exc:
                self.load_error = f"{type(exc).__name__}: {exc}"
                log.error("loading the model failed: %s", self.load_error)
                return
            finally:
                self.loaded.set()
            stack.callback(self.sequences.close)
            while not stop.is_set():  # end idle sequences now and then
                with anyio.move_on_after(self.sequences.idle_timeout / 4):
                    await stop.wait()
                self.sequences.expire()

    @property
    def ready(self) -> bool:
        """The model is open and the batching decision is made."""
        model, deciding = self.model, self._deciding
        return model is not None and not model.closed and deciding is not None and deciding.done()

    def decide(self) -> asyncio.Task[None]:
        """The batching decision on the attached model, started once: by the app's lifespan, or by
        the first request of an app mounted without one."""
        if self._deciding is None:
            decision = self._decide_batching()
            self._deciding = asyncio.get_running_loop().create_task(decision, name="aioinfer-batching")
        return self._deciding

    async def decided(self) -> None:
        """Wait for the batching decision (503 while there is no model to decide on)."""
        self.require_model()
        await asyncio.shield(self.decide())  # a request that leaves does not cancel it

    async def _decide_batching(self) -> None:
        """Batch the model if the user declared it batch-separable (``on``) or the probe shows it is
        (``auto``); else serve it one request per inference, and say why in ``batching_reason``."""
        model = self.require_model()
        if model.info.stateful:
            self.batching_reason = "the model keeps state: each sequence runs on its own request"
        elif self.batching == "off" or self.max_batch_size == 1:
            setting = "batching='off'" if self.batching == "off" else "max_batch_size=1"
            self.batching_reason = f"turned off by the user ({setting})"
        else:
            options: dict[str, Any] = {
                "max_batch_size": self.max_batch_size,
                "max_delay": self.max_delay,
                "on_batch": self._on_batch,
            }
            try:
                if self.batching == "on":
                    batcher = Batcher(model, **options)
                else:
                    batcher = await Batcher.checked(model, **options)
            except NotBatchableError as exc:
                self.batching_reason = f"not batch-separable: {exc}"
                log.warning(
                    "model %r is served without batching, one request per inference: %s (if its rows "
                    "never interact, batching='on' / --batching on batches it without the check)",
                    model.info.name,
                    exc,
                )
            else:
                self.batcher, self.runner, self.batching_reason = batcher, batcher, batcher.basis
                self._batchers.append(batcher)
        batching = f"batches of up to {self.batcher.max_batch_size}" if self.batcher else "no batching"
        log.info("model %r ready on %s (%s)", model.info.name, model.info.device, batching)

    def _stop_batching(self, batcher: Batcher, exc: NotBatchableError) -> None:
        """Serve one request per inference from now on: ``batcher`` got outputs it cannot split."""
        if self.batcher is batcher:
            self.batcher, self.runner = None, self.require_model()
            self.batching_reason = f"turned off while serving: {exc}"
            log.warning("batching is off from now on: %s", exc)

    async def _close_batchers(self) -> None:
        for batcher in self._batchers:
            await batcher.aclose()

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

    def stages(self) -> dict[str, Latency]:
        """Latency of each stage of recent work: the model's (``device``, ``await``), the task's."""
        if self.model is None:
            return {}
        stats = self.model.stats()
        stages = {"device": stats.device_ms, "await": stats.await_ms}
        return stages | (self.task.stats().stages if self.task is not None else {})

    # -- serving ----------------------------------------------------------------------------------

    def refuse_if_full(self) -> AsyncModel:
        """The model, unless what it runs at once plus ``max_queue`` requests already wait for it:
        then 503 at once (before reading a body that could not run anyway)."""
        model = self.require_model()
        capacity = model.info.num_requests * (self.batcher.max_batch_size if self.batcher else 1)
        if self._outstanding >= capacity + self.max_queue:
            raise QueueFull(f"{self.max_queue} requests already wait for the model (max_queue); retry later")
        return model

    @contextlib.contextmanager
    def admit(self) -> Iterator[AsyncModel]:
        """Count one request whose inputs are read and decoded, while it waits for and runs on the
        model; refuse it at once beyond what the model runs plus ``max_queue``. Requests still
        sending their bodies are not counted: a slow client cannot hold a place in the queue."""
        model = self.refuse_if_full()
        self._outstanding += 1
        try:
            yield model
        finally:
            self._outstanding -= 1

    @contextlib.contextmanager
    def abortable(self) -> Iterator[None]:
        """Run one request so that :meth:`abort` can end it with a 503 (``ClosedError``)."""
        if self._aborted:
            raise ClosedError("the server is shutting down; retry on another instance")
        with anyio.CancelScope() as scope:
            self._running.add(scope)
            try:
                yield
            finally:
                self._running.discard(scope)
        if scope.cancelled_caught:
            raise ClosedError(
                "the server is shutting down and this request did not finish within its drain "
                "timeout; retry on another instance"
            )

    def abort(self) -> None:
        """End every request still running (reading its body, decoding, waiting or running on the
        model) with a 503: the drain timeout of a shutdown has passed."""
        self._aborted = True
        for scope in list(self._running):
            scope.cancel()

    async def infer(self, arrays: Arrays) -> Outputs:
        """Run inputs already converted by ``self.runner``: in the batcher if batching, else alone."""
        await self.decided()
        batcher = self.batcher
        if batcher is not None:
            try:
                return await batcher.run_adapted(arrays, timeout=self.timeout)
            except NotBatchableError as exc:  # the batch's outputs could not be split: run it alone
                self._stop_batching(batcher, exc)
        return await self.require_model().run_adapted(arrays, timeout=self.timeout)

    async def infer_named(
        self, inputs: dict[str, np.ndarray], inline: bool, sequence: SequenceParams | None = None
    ) -> Outputs:
        """Check ``inputs`` (by input name) against the model (here if ``inline``, else on a worker
        thread), then admit and run them as :meth:`infer` does, or in ``sequence``'s session."""
        await self.decided()
        model = self.require_model()
        if sequence is not None or model.info.stateful:
            return await self._infer_in_sequence(model, inputs, inline, sequence)
        assert self.runner is not None
        arrays = await self.off_loop(inline, self.runner.adapt, inputs)
        with self.admit():
            return await self.infer(arrays)

    async def _infer_in_sequence(
        self, model: AsyncModel, inputs: dict[str, np.ndarray], inline: bool, sequence: SequenceParams | None
    ) -> Outputs:
        """:meth:`infer_named` for a stateful model: in the session of ``sequence`` (required, and
        refused for a model without state)."""
        if sequence is None:
            raise SessionError(
                f"model {self.name!r} keeps state: send sequence_id (with sequence_start on a "
                "sequence's first request and sequence_end on its last)"
            )
        if not model.info.stateful:
            raise SessionError(f"model {self.name!r} keeps no state between requests: send no sequence_id")
        arrays = await self.off_loop(inline, model.adapt, inputs)
        with self.admit():
            async with self.sequences.session(model, sequence, self.timeout) as session:
                return await session.run_adapted(arrays, timeout=self.timeout)

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

    async def off_loop(self, inline: bool, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` here if ``inline`` (cheap enough for the event loop), else on a worker thread."""
        return func(*args) if inline else await self.in_thread(func, *args)

    async def read_body(self, request: Request) -> bytearray:
        """The request body (writable, so arrays can be views of it), refused with 413 as soon as it
        exceeds ``max_body_bytes``, and with 408 (closing the connection) if it has not all arrived
        within ``body_timeout`` seconds."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _too_large(int(declared), self.max_body_bytes)
        body = bytearray()
        with anyio.move_on_after(self.body_timeout) as deadline:
            async for chunk in request.stream():
                if len(body) + len(chunk) > self.max_body_bytes:
                    raise _too_large(len(body) + len(chunk), self.max_body_bytes)
                body += chunk
        if deadline.cancelled_caught:
            raise HTTPException(
                408,
                f"the body did not arrive within {self.body_timeout:g} s (body_timeout): "
                f"{len(body)} bytes came",
                headers={"Connection": "close"},
            )
        return body

    def decode_inputs(self, body: bytearray, kind: str, runner: Runner) -> Arrays:
        """The model's inputs in ``body``, decoded within ``max_decoded_bytes`` (and
        ``max_json_values``) and checked by ``runner``."""
        arrays = codecs.decode_tensors(
            body, kind, max_decoded_bytes=self.max_decoded_bytes, max_json_values=self.max_json_values
        )
        return runner.adapt(arrays)

    async def decode_settings(self, body: bytearray) -> Any:
        """The JSON value of a settings ``body``, decoded within ``max_decoded_bytes`` and
        ``max_json_values``, off the loop if large."""
        decode = functools.partial(
            codecs.decode_json,
            max_decoded_bytes=self.max_decoded_bytes,
            max_json_values=self.max_json_values,
            instead="send only the settings to change",
        )
        return await self.off_loop(codecs.decode_on_loop(body, JSON), decode, body)

    async def encode(self, outputs: Outputs, fmt: str) -> Response:
        """The answer of ``outputs`` in format ``fmt`` (JSON within ``max_json_values``), encoded
        off the loop if large."""
        encode = functools.partial(
            codecs.encode_outputs,
            max_decoded_bytes=self.max_decoded_bytes,
            max_json_values=self.max_json_values,
        )
        body = await self.off_loop(codecs.encode_on_loop(outputs, fmt), encode, outputs, fmt)
        return Response(body, media_type=fmt)


# -- routes -------------------------------------------------------------------------------------


class _Routes:
    """The ``/v1`` routes, about ``service`` (the first model), and the server's own: ``/health/*``
    (about every model of ``services``) and ``/metrics``."""

    def __init__(self, service: Service, services: Mapping[str, Service]) -> None:
        self.s = service
        self.services = services

    async def infer(self, request: Request) -> Response:
        self.s.refuse_if_full()
        body = await self.s.read_body(request)
        kind = codecs.body_kind(request.headers.get("content-type", JSON), body)
        inline = codecs.decode_on_loop(body, kind)
        arrays = await self.s.off_loop(inline, self.s.decode_inputs, body, kind, self.s.runner)
        with self.s.admit():
            outputs = await self.s.infer(arrays)
        fmt = codecs.response_format(request.headers.get("accept", JSON), len(outputs))
        return await self.s.encode(outputs, fmt)

    async def predict(self, request: Request) -> Response:
        self._task()
        self.s.refuse_if_full()
        body: bytes | bytearray = await self.s.read_body(request)
        if codecs.media_type(request.headers.get("content-type", "")) == "multipart/form-data":
            body = await _multipart_file(request, bytes(body))
        image = await self.s.in_thread(functools.partial(decode_image, max_pixels=self.s.max_pixels), body)
        with self.s.admit():
            prediction = await self.s.predict(image)
        return _json(prediction.to_dict())

    async def info(self, request: Request) -> Response:
        model = self.s.require_model()
        await self.s.decided()
        batcher = self.s.batcher
        return _json(
            {
                "model": model.info.to_dict(),
                "task": self.s.task.info.to_dict() if self.s.task is not None else None,
                "batching": {
                    "mode": self.s.batching,
                    "enabled": batcher is not None,
                    "max_batch_size": batcher.max_batch_size if batcher else 1,
                    "max_delay_ms": self.s.max_delay * 1e3 if batcher else 0,
                    "reason": self.s.batching_reason,
                },
                "limits": {
                    "max_queue": self.s.max_queue,
                    "timeout_s": self.s.timeout,
                    "max_body_bytes": self.s.max_body_bytes,
                    "max_decoded_bytes": self.s.max_decoded_bytes,
                    "max_json_values": self.s.max_json_values,
                    "max_pixels": self.s.max_pixels,
                    "body_timeout_s": self.s.body_timeout,
                },
                "stats": model.stats().to_dict(),
                "loop": None if (loop := loop_stats()) is None else loop.to_dict(),
            }
        )

    async def get_settings(self, request: Request) -> Response:
        return _json(dict(self._task().settings))

    async def patch_settings(self, request: Request) -> Response:
        task = self._task()
        changes = await self.s.decode_settings(await self.s.read_body(request))
        if not isinstance(changes, dict):
            raise HTTPException(
                400, f"send a JSON object of settings to change, got {type(changes).__name__}"
            )
        task.update_settings(**changes)
        return _json(dict(task.settings))

    async def live(self, request: Request) -> Response:
        return _json({"status": "live"})

    async def ready(self, request: Request) -> Response:
        """200 once every model served is ready (``model``: the name of the one /v1 serves), else
        503; each model's status under ``models``, the errors of those that failed to load."""
        statuses = {name: _status(service) for name, service in self.services.items()}
        if all(status == "ready" for status in statuses.values()):
            model = self.s.require_model()
            return _json({"status": "ready", "model": model.info.name, "models": statuses})
        worst = next(s for s in ("failed", "closed", "loading") if s in statuses.values())
        errors = [f"{name}: {s.load_error}" for name, s in self.services.items() if s.load_error]
        return _json({"status": worst, "error": "; ".join(errors) or None, "models": statuses}, 503)

    async def metrics(self, request: Request) -> Response:
        return Response(self.s.metrics.render(), media_type=CONTENT_TYPE)

    def _task(self) -> Any:
        self.s.require_model()
        if self.s.task is None:
            raise HTTPException(404, "this server runs a bare model, not a task: use POST /v1/infer")
        return self.s.task

    def table(self) -> list[Route]:
        routes = [
            ("/v1/infer", self.infer, "POST"),
            ("/v1/predict", self.predict, "POST"),
            ("/v1/info", self.info, "GET"),
            ("/v1/settings", self.get_settings, "GET"),
            ("/v1/settings", self.patch_settings, "PATCH"),
            ("/health/live", self.live, "GET"),
            ("/health/ready", self.ready, "GET"),
            ("/metrics", self.metrics, "GET"),
        ]
        return [Route(path, self._abortable(handler), methods=[method]) for path, handler, method in routes]

    def _abortable(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
        """``handler`` run under :meth:`Service.abortable`."""

        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            with self.s.abortable():
                return await handler(request)

        return run


def create_app(
    model_or_task: Any,
    *,
    name: str | None = None,
    max_batch_size: int = 8,
    max_delay: float = 0.002,
    batching: str = "auto",
    max_queue: int = 256,
    timeout: float | None = 30.0,
    max_body_bytes: int = 16 * 2**20,
    max_decoded_bytes: int = 256 * 2**20,
    max_json_values: int = codecs.MAX_JSON_VALUES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    body_timeout: float | None = 30.0,
    sequence_idle_timeout: float = 60.0,
    monitor_loop: bool = True,
    max_delay_ms: float | None = None,
) -> Starlette:
    """An ASGI app serving ``model_or_task`` over HTTP (routes: see :mod:`aioinfer.asgi`).

    Many models: ``model_or_task`` may be a mapping ``{name: model_or_task}``; each is served with
    its own batcher and limits (the ones given here) under its name on the Open Inference
    Protocol's ``/v2/models/{name}/...`` routes, and the ``/v1`` routes serve the first;
    ``/health/ready``, as ``/v2/health/ready``, is 200 only once every model is ready (its body
    gives each model's status under ``models``). One model is served under ``name`` (default: the
    model's own name if it is loaded, else ``"model"``).

    ``model_or_task`` is an :class:`AsyncModel` or a task (both stay open: the caller owns them), or
    something to enter as an async context manager in the app's lifespan, such as
    ``aioinfer.load(...)`` or ``aioinfer.tasks.load(...)``: then the app loads it in the background
    (``/health/ready`` answers 503 until it is compiled) and closes it at shutdown.

    Concurrent ``/v1/infer`` requests are batched into one inference of up to ``max_batch_size`` rows,
    waiting at most ``max_delay`` seconds, only where that cannot change an answer. ``batching``:

    * ``"auto"`` (default): batch only a model that a probe at start-up shows batch-separable: every
      output keeps one row per input row, and a batch of random rows gives each row what it gets
      alone (:meth:`Batcher.checked`; its few inferences count in the model's stats).
      ``/health/ready`` answers 503 until the probe is done.
    * ``"on"``: the caller declares the model batch-separable: batched without the probe.
    * ``"off"`` (as is ``max_batch_size=1``): one request per inference.

    A model without a leading batch dimension on every input and output is never batched, and a
    batch whose outputs do not come back with one row per input row turns batching off for good
    (its requests are run alone). ``GET /v1/info`` tells under ``batching`` whether it is on and
    why (``reason``); a model the check refused is logged once at warning level.

    Limits, each answered at once with a message naming it: a body over ``max_body_bytes`` 413; a
    body that would decode to more than ``max_decoded_bytes`` (the arrays' sizes, read from their
    headers before anything is decompressed; what JSON values take in Python), or an image
    declaring more than ``max_pixels`` pixels, 413 before decoding; a JSON body (``/v1/infer``,
    ``/v2`` infer's JSON header, ``PATCH /v1/settings``) that may hold more than
    ``max_json_values`` values (counted from its separators), 413 before parsing, and so is a JSON
    answer holding more (``Accept: application/json`` on ``/v1``, ``/v2`` outputs not asked as
    ``binary_data``), before encoding, and so are gRPC inputs sent as typed ``contents`` (not
    ``raw_input_contents``): parsing or building JSON, or converting typed contents, holds the GIL,
    stalling every other request meanwhile (~0.45 µs a value), so large tensors belong in
    ``.npy``/``.npz`` (``/v1``), the binary tensor data extension (``/v2``) or gRPC's raw contents;
    a body not all received within
    ``body_timeout`` seconds 408; beyond ``max_queue`` 503 with ``Retry-After``; after ``timeout``
    seconds 504. ``max_queue``: how many calls may wait, accepted and not yet running on the device
    (here: requests whose inputs are decoded, beyond what the model runs at once), before the next
    is refused at once with :class:`QueueFull`. Undecodable bodies answer 400, unsupported formats
    415, inputs that do not fit the model 422 with what was expected. Durations are in seconds and
    sizes in bytes (``max_delay_ms=``, in milliseconds, is a deprecated alias of ``max_delay``).
    Numbers that are not finite and positive raise ``ValueError`` naming the argument.

    With ``monitor_loop`` (default), the app measures its event loop's lag while it runs (its
    lifespan) with :func:`aioinfer.monitor_loop`'s defaults, or reports the monitor already watching
    that loop: ``GET /metrics`` has the histogram ``aioinfer_loop_lag_seconds`` and the counter
    ``aioinfer_loop_slow_events_total``, ``GET /v1/info`` the figures under ``loop``.

    A model with state (ReadValue/Assign) is served in sequences, as Triton's sequence batcher does:
    its ``/v2`` requests carry the parameters ``sequence_id``, ``sequence_start`` (first request:
    a new session, the state reset) and ``sequence_end`` (last request); each sequence runs on its
    own infer request, in the order its requests arrive, and one idle for
    ``sequence_idle_timeout`` seconds is ended. Requests without them (or with them for a model
    without state) answer 400.
    """
    sources = (
        dict(model_or_task)
        if isinstance(model_or_task, Mapping)
        else {name or _default_name(model_or_task): model_or_task}
    )
    for key in sources:
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"a model name must be a non-empty string without '/', got {key!r}")
    if not sources:
        raise ValueError("no model to serve: the mapping of models is empty")
    metrics = Metrics()
    limits: dict[str, Any] = dict(
        max_batch_size=max_batch_size,
        max_delay=deprecated_ms("max_delay", max_delay, max_delay_ms),
        batching=batching,
        max_queue=max_queue,
        timeout=timeout,
        max_body_bytes=max_body_bytes,
        max_decoded_bytes=max_decoded_bytes,
        max_json_values=max_json_values,
        max_pixels=max_pixels,
        body_timeout=body_timeout,
        sequence_idle_timeout=sequence_idle_timeout,
    )
    services = {key: Service(source, name=key, metrics=metrics, **limits) for key, source in sources.items()}
    service = next(iter(services.values()))
    routes = _Routes(service, services).table() + OipRoutes(services).table()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        runners = [
            asyncio.create_task(s.run(stop), name=f"aioinfer-service-{s.name}") for s in services.values()
        ]
        try:
            async with monitored() if monitor_loop else contextlib.nullcontext():
                yield
        finally:
            stop.set()
            await asyncio.gather(*runners)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(MetricsMiddleware, metrics=metrics, routes={r.path for r in routes})],
        exception_handlers={AioInferError: _error_response, HTTPException: _error_response},
    )
    app.state.service = service  # the first model's: /v1 serves it
    app.state.services = services
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
    return Response(codecs.dump_json(content), status, headers, media_type=JSON)


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


def _status(service: Service) -> str:
    """``ready``, ``loading``, ``failed`` (to load) or ``closed``: where ``service`` is; starts its
    batching decision if nothing did (a mounted app)."""
    if ready(service):
        return "ready"
    if service.load_error:
        return "failed"
    return "closed" if service.model is not None and service.model.closed else "loading"


def _default_name(obj: Any) -> str:
    """A loaded model's (or task's model's) own name; ``"model"`` for one still to load."""
    model = obj.model if _is_task(obj) else obj
    return model.info.name if isinstance(model, AsyncModel) and model.info.name else "model"


def _is_task(obj: Any) -> bool:
    return hasattr(obj, "predict") and isinstance(getattr(obj, "model", None), AsyncModel)


def _too_large(size: int, limit: int) -> HTTPException:
    return HTTPException(413, f"the body has {size} bytes or more; this server takes at most {limit}")
