"""``RemoteModel``: a model served by an Open Inference Protocol server, with the face of a local
:class:`~aioinfer.AsyncModel` (``infer``, ``map``, ``info``, ``stats``, ``aclose`` and the internal
``Runner`` halves), over a :class:`Transport` (HTTP or gRPC) that moves one request's tensors."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeVar

import anyio
import numpy as np
import openvino as ov

from .. import _bridge
from .. import _oip as oip
from .._errors import (
    AioInferError,
    ClosedError,
    DecodeError,
    InferenceError,
    InferTimeout,
    InputDtypeError,
    InputError,
    ModelLoadError,
    ModelNotFoundError,
    QueueFull,
    SessionError,
    TooLargeError,
)
from .._inputs import InputAdapter, Inputs, TensorInfo
from .._model import AsyncModel, ModelInfo
from .._outputs import Outputs
from .._runner import Arrays
from .._stats import Recorder, Stats

Tensor = tuple[str, str, np.ndarray]  # an input as sent: its name, OIP datatype and array
_RAISE_IT = "raise it in load(url, config=...)"
T = TypeVar("T")


@dataclass(frozen=True)
class Bounds:
    """The most one answer of a server may make this process hold (``load(url, config=...)``)."""

    max_answer_bytes: int  # the answer's bytes, as declared and as received
    max_json_values: int  # JSON values or typed contents, converted one by one holding the GIL

    def check_bytes(self, nbytes: int) -> None:
        """:class:`TooLargeError` if an answer of ``nbytes`` bytes is over ``max_answer_bytes``."""
        if nbytes > self.max_answer_bytes:
            raise TooLargeError(
                f"the server's answer takes {nbytes} bytes or more, over max_answer_bytes="
                f"{self.max_answer_bytes}, the most this client reads of one answer: {_RAISE_IT}"
            )

    def check_values(self, values: int, what: str) -> None:
        """:class:`TooLargeError` if ``what`` of ``values`` values is over ``max_json_values``."""
        if values > self.max_json_values:
            raise TooLargeError(
                f"the server's answer holds {what} of up to {values} values, over max_json_values="
                f"{self.max_json_values}, the most this client converts one by one (every other task "
                f"of this thread waits meanwhile): ask for binary data, or {_RAISE_IT}"
            )


class Transport(Protocol):
    """One connection (pool) to a server, for one model: its metadata and its inferences."""

    url: str

    async def metadata(self) -> dict[str, Any]:
        """The model's metadata as the protocol has it: ``{"name", "inputs", "outputs"}``, each
        tensor ``{"name", "datatype", "shape"}``; raises the aioinfer error of a failure."""
        ...

    async def infer(self, tensors: Sequence[Tensor]) -> dict[str, np.ndarray]:
        """The outputs of one inference of ``tensors``, by name; raises the aioinfer error of a
        failure (:class:`QueueFull` for a busy server, ...)."""
        ...

    async def aclose(self) -> None:
        """Close the connections. Idempotent."""
        ...


class RemoteModel(AsyncModel):
    """A model on an inference server, used like a local one: inputs are checked here against the
    server's metadata before anything is sent; at most ``num_requests`` requests are in flight, more
    callers wait FIFO (at most ``max_queue`` of them, then :class:`QueueFull`). Bound to the event
    loop it was loaded in. ``stats().device_ms`` is each request's round trip to the server."""

    def __init__(
        self,
        transport: Transport,
        metadata: Mapping[str, Any],
        *,
        num_requests: int,
        max_queue: int | None,
        config: Mapping[str, Any],
    ) -> None:
        self._bridge = _bridge.current()
        self._transport = transport
        inputs = _tensors(metadata, "inputs")
        self._adapter = InputAdapter(inputs, [ov.PartialShape(list(i.shape or ())) for i in inputs])
        self._sent = tuple((i.name, t["datatype"]) for i, t in zip(inputs, metadata["inputs"], strict=True))
        self._unsendable = next(
            (
                f"input {info.name!r} is {datatype}, which numpy cannot hold: this client cannot send it"
                for info, (_, datatype) in zip(inputs, self._sent, strict=True)
                if info.dtype is None
            ),
            "",
        )
        outputs = _tensors(metadata, "outputs")
        self._output_names = tuple(o.name for o in outputs)
        self._output_index = {name: i for i, name in enumerate(self._output_names)}
        self.info = ModelInfo(
            name=str(metadata["name"]),
            inputs=inputs,
            outputs=outputs,
            device=transport.url,
            execution_devices=(transport.url,),
            num_requests=num_requests,
            config=dict(config),
            precision=None,
        )
        self._free = anyio.Semaphore(num_requests, fast_acquire=True)
        self._max_queue = max_queue
        self._answer_timeout: float | None = config.get("answer_timeout")  # for calls without timeout=
        self._stats = Recorder()
        self._queued = 0
        self._running = 0
        self._pending = 0  # calls accepted and not yet returned
        self._scopes: set[anyio.CancelScope] = set()
        self._idle: anyio.Event | None = None
        self._closed = False
        self._aborted = False

    async def infer(self, inputs: Inputs, *, timeout: float | None = None) -> Outputs:
        """Run the model on the server and return its outputs (see :meth:`AsyncModel.infer`).
        Raises :class:`InputError` before anything is sent for inputs that do not fit the
        server's metadata, :class:`QueueFull` when ``max_queue`` callers wait or the server is busy
        (503), :class:`InferTimeout` after ``timeout`` seconds, or the model's ``answer_timeout``
        if none is given (the request is abandoned), :class:`ServerConnectionError` when the
        server cannot be reached."""
        return await self.run_adapted(self.adapt(inputs), timeout)

    __call__ = infer

    def adapt(self, inputs: Inputs) -> Arrays:
        """``inputs`` checked against the server's metadata and converted to its arrays by input
        index; raises an :class:`InputError` for inputs that do not fit. Safe on any thread."""
        arrays = self._adapter(inputs)
        if self._unsendable:
            raise InputDtypeError(self._unsendable)
        return arrays

    async def run_adapted(self, arrays: Arrays, timeout: float | None = None) -> Outputs:
        """The second half of :meth:`infer`, for ``arrays`` made by :meth:`adapt`."""
        self._bridge.check()
        self._admit()
        stats = self._stats
        stats.submitted += 1
        self._pending += 1
        start = time.perf_counter()
        limit = timeout if timeout is not None else self._answer_timeout
        deadline = math.inf if limit is None else anyio.current_time() + limit
        scope = anyio.CancelScope(deadline=deadline)
        self._scopes.add(scope)
        outcome = "cancelled"
        try:
            with scope:
                outputs = await self._run(arrays)
                outcome = "completed"
                stats.await_ms.append((time.perf_counter() - start) * 1e3)
                return outputs
        except Exception:
            outcome = "failed"
            raise
        finally:
            self._settle(scope, outcome)
        # here only when this call's own scope was cancelled: its timeout, or aclose()'s deadline
        if self._aborted and anyio.current_time() < deadline:
            raise ClosedError("the model was closed while this call was in flight")
        if timeout is None:
            raise InferTimeout(
                f"the server did not answer within {limit:g} s, the model's answer_timeout (pass "
                "timeout= to the call, or config={'answer_timeout': ...} to load)"
            )
        raise InferTimeout(f"the server did not answer within {timeout:g} s")

    def _admit(self) -> None:
        """Take one more call, or refuse it: closed, or ``max_queue`` callers already wait."""
        if self._closed:
            raise ClosedError("the model is closed: it takes no more work")
        if self._max_queue is not None and self._free.value == 0 and self._queued >= self._max_queue:
            self._stats.rejected += 1
            raise QueueFull(
                f"{self._queued} callers already wait for one of {self.info.num_requests} requests "
                f"(max_queue={self._max_queue}); retry later"
            )

    async def _run(self, arrays: Arrays) -> Outputs:
        self._queued += 1
        try:
            await self._free.acquire()
        finally:
            self._queued -= 1
        self._running += 1
        try:
            start = time.perf_counter()
            tensors = [(name, datatype, arrays[i]) for i, (name, datatype) in enumerate(self._sent)]
            named = await self._transport.infer(tensors)
            self._stats.device_ms.append((time.perf_counter() - start) * 1e3)
            return self._outputs(named)
        finally:
            self._running -= 1
            self._free.release()

    def _outputs(self, named: Mapping[str, np.ndarray]) -> Outputs:
        """The server's outputs in the metadata's order."""
        try:
            arrays = [named[name] for name in self._output_names]
        except KeyError as exc:
            raise InferenceError(
                f"the server answered without output {exc.args[0]!r}: it sent {sorted(named)}"
            ) from None
        return Outputs(arrays, self._output_names, self._output_index)

    def _settle(self, scope: anyio.CancelScope, outcome: str) -> None:
        """Count a call that returns (``outcome``: completed, failed, cancelled: timeouts and
        calls that aclose() abandoned included)."""
        self._scopes.discard(scope)
        self._pending -= 1
        setattr(self._stats, outcome, getattr(self._stats, outcome) + 1)
        if self._pending == 0 and self._idle is not None:
            self._idle.set()

    def stats(self) -> Stats:
        """Counters and latency percentiles (``device_ms``: each request's round trip)."""
        return self._stats.snapshot(self._running, self._queued, self.info.num_requests)

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop taking work, let the calls already made finish (at most ``timeout`` seconds, then
        they fail with :class:`ClosedError` and their requests are abandoned), and close the
        connections. Idempotent."""
        self._closed = True
        if self._pending:
            self._idle = anyio.Event()
            with anyio.move_on_after(timeout):
                await self._idle.wait()
            if self._pending:
                self._aborted = True
                for scope in list(self._scopes):
                    scope.cancel()
                with anyio.CancelScope(shield=True):
                    await self._idle.wait()
        await self._transport.aclose()

    def session(self, *, timeout: float | None = None) -> NoReturn:
        """Not here: a remote model's state lives on its server (the protocol's sequence
        parameters); raises :class:`SessionError`."""
        raise SessionError(f"{self!r} runs on its server: it has no sessions here")

    @property
    def compiled(self) -> NoReturn:
        """A remote model has no OpenVINO compiled model here: it runs on its server."""
        raise AttributeError(f"{self!r} runs on its server: it has no compiled model here")

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.info.num_requests} requests"
        return f"<RemoteModel {self.info.name!r} at {self.info.device} ({state})>"


def _tensors(metadata: Mapping[str, Any], key: str) -> tuple[TensorInfo, ...]:
    """The model's ``key`` ("inputs", "outputs") from its metadata; :class:`ModelLoadError` if
    the server's metadata is not the protocol's."""
    try:
        tensors = tuple(tensor_info(t) for t in metadata[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"the server's model metadata has no valid {key!r}: {exc!r:.200}") from None
    names = [t.name for t in tensors]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ModelLoadError(f"the server's model metadata names {key} {twice} more than once")
    return tensors


def tensor_info(meta: Mapping[str, Any]) -> TensorInfo:
    """A :class:`TensorInfo` of one tensor of the protocol's metadata (``-1``: a dynamic size);
    ``dtype`` is ``None`` for a datatype numpy cannot hold (BF16, ...). ``ValueError`` for a shape
    that is not a list of at most :data:`~aioinfer._oip.MAX_DIMS` sizes >= -1 within int64."""
    name, datatype, shape = str(meta["name"]), str(meta["datatype"]), meta["shape"]
    if (
        isinstance(shape, (str, bytes, Mapping))
        or len(shape) > oip.MAX_DIMS
        or not all(type(d) is int and -1 <= d < 2**63 for d in shape)
    ):
        raise ValueError(
            f"input or output {name!r}: shape {shape!r:.100}, expected a list of at most "
            f"{oip.MAX_DIMS} sizes >= -1"
        )
    dtype = oip.DATATYPES.get(datatype)
    if dtype is None:
        element = datatype.lower()
    else:
        element = "string" if dtype.kind == "O" else ov.Type(dtype).get_type_name()
    return TensorInfo(name, (name,), tuple(shape), element, dtype)


def output_array(name: str, datatype: str, shape: Iterable[Any], data: bytes | memoryview) -> np.ndarray:
    """Output ``name`` of the server's answer from its raw bytes, a writable array of its own;
    :class:`InferenceError` for one that is not the protocol's (checked before it is allocated)."""
    dtype = output_dtype(name, datatype)
    shape = output_shape(name, shape)
    if dtype.kind == "O":
        try:
            return oip.read_bytes(f"output {name!r}", data, shape)
        except DecodeError as exc:
            raise InferenceError(f"the server's answer is not the protocol's: {exc}") from None
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise InferenceError(
            f"the server answered output {name!r} {datatype}{shape} with {len(data)} bytes of data"
        )
    return np.frombuffer(bytearray(data), dtype).reshape(shape)


async def coded(inline: bool, func: Callable[..., T], *args: Any) -> T:
    """``func(*args)``, encoding or decoding tensors: here if ``inline`` (cheap enough for the
    event loop), else on a worker thread."""
    return func(*args) if inline else await anyio.to_thread.run_sync(func, *args)


def output_dtype(name: str, datatype: str) -> np.dtype:
    """The numpy dtype of output ``name`` answered as ``datatype``; :class:`InferenceError` if none."""
    dtype = oip.DATATYPES.get(datatype)
    if dtype is None:
        raise InferenceError(
            f"the server answered output {name!r} as {datatype!r:.40}, which numpy cannot hold"
        )
    return dtype


def output_shape(name: str, shape: Iterable[Any]) -> list[int]:
    """The shape of output ``name`` as answered; :class:`InferenceError` unless it is a list of at
    most :data:`~aioinfer._oip.MAX_DIMS` sizes >= 0."""
    listed = isinstance(shape, Iterable) and not isinstance(shape, (str, bytes, Mapping))
    dims = list(shape) if listed else None
    if dims is None or len(dims) > oip.MAX_DIMS or not all(type(d) is int and d >= 0 for d in dims):
        raise InferenceError(
            f"the server answered output {name!r} with shape {shape!r:.100}: a shape is a list of at "
            f"most {oip.MAX_DIMS} sizes >= 0"
        )
    return dims


def server_error(status: int, message: str, url: str) -> AioInferError:
    """The aioinfer error of a server's answer ``status`` (HTTP's; gRPC codes are mapped to it)."""
    if status == 404:
        return ModelNotFoundError(url, message)
    if status == 503:
        return QueueFull(f"the server is busy or unavailable (503): {message}; retry later")
    if status in (408, 504):
        return InferTimeout(f"the server gave up on the request ({status}): {message}")
    if status == 413:
        return TooLargeError(f"the server refused the request as too large (413): {message}")
    if 400 <= status < 500:
        return InputError(f"the server refused the inputs ({status}): {message}")
    return InferenceError(f"the server failed the request ({status}): {message}")
