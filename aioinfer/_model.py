"""``AsyncModel``, the awaitable face of a compiled model, and ``load()`` that makes one."""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
import openvino as ov
from anyio.abc import AsyncResource

from . import _loading, _reaper
from ._errors import SessionError
from ._inputs import InputAdapter, Inputs, TensorInfo
from ._mappable import Mappable
from ._outputs import Outputs
from ._pool import RequestPool
from ._runner import Arrays
from ._session import Session, SessionCalls
from ._stats import Stats

DEFAULT_HINT = "THROUGHPUT"


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded and how it runs."""

    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    device: str
    execution_devices: tuple[str, ...]
    num_requests: int
    config: dict[str, Any] = field(default_factory=dict)
    # the float precision the model really computes in ("f32", "bf16", "f16"), None if unknown
    precision: str | None = None
    # it keeps state between calls (ReadValue/Assign): call it in a session (AsyncModel.session)
    stateful: bool = False
    # at most this many compiled copies, each kept on one recurring input shape (load's shape_lanes)
    shape_lanes: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "name": self.name,
            "inputs": [i.to_dict() for i in self.inputs],
            "outputs": [o.to_dict() for o in self.outputs],
            "device": self.device,
            "execution_devices": list(self.execution_devices),
            "num_requests": self.num_requests,
            "config": dict(self.config),
            "precision": self.precision,
            "stateful": self.stateful,
            "shape_lanes": self.shape_lanes,
        }


class AsyncModel(Mappable[Outputs], AsyncResource):
    """A compiled model served by a pool of infer requests; ``await model.infer(x)`` from any task.

    Made by :func:`load`. Bound to the event loop it was loaded in. Also the two halves of
    ``infer``, :meth:`adapt` and :meth:`run_adapted` (the internal ``_runner.Runner`` interface).
    """

    def __init__(
        self,
        compiled: ov.CompiledModel,
        *,
        device: str,
        num_requests: int | None = None,
        max_queue: int | None = None,
        share_inputs: bool = False,
        precision: str | None = None,
        shape_lanes: int = 1,
        compile_lane: Callable[[], ov.CompiledModel] | None = None,
    ) -> None:
        """``precision``: what :func:`_loading.used_precision` says of ``compiled`` (pass it when
        known: finding it reads the runtime model); ``None``: found here. ``shape_lanes`` > 1 takes
        ``compile_lane``, which compiles one more copy of ``compiled`` (see :func:`load`); a model
        with state keeps one."""
        # the compiled model's one owner in aioinfer is a spare request: the last reference then
        # always dies in a request's destructor, which releases the GIL. The compiled model's own
        # destructor keeps it while joining the device's threads, and one of those (AUTO) may need
        # it to release a callback: a freeze (see _reaper.py)
        _reaper.start()  # before any request exists that may have to be buried
        self._keeper = compiled.create_infer_request()
        stateful = bool(self._keeper.query_state())
        lanes = 1 if stateful or compile_lane is None else shape_lanes
        n = num_requests or _optimal_requests(compiled)
        outputs = tuple(TensorInfo.of(p) for p in compiled.outputs)
        self._adapter = InputAdapter(
            [TensorInfo.of(p) for p in compiled.inputs], [p.get_partial_shape() for p in compiled.inputs]
        )
        self._pool = RequestPool(
            compiled,
            n,
            output_names=[o.name or str(i) for i, o in enumerate(outputs)],
            output_index={name: i for i, o in enumerate(outputs) for name in o.names},
            max_queue=max_queue,
            share_inputs=share_inputs,
            lanes=lanes,
            compile_lane=compile_lane,
        )
        self.info = ModelInfo(
            name=_model_name(compiled),
            inputs=self._adapter.inputs,
            outputs=outputs,
            device=device,
            execution_devices=tuple(_property(compiled, "EXECUTION_DEVICES", [device])),
            num_requests=n,
            config=_compile_config(compiled),
            precision=precision or _loading.used_precision(compiled),
            stateful=stateful,
            shape_lanes=lanes,
        )

    async def infer(self, inputs: Inputs, *, timeout: float | None = None) -> Outputs:
        """Run the model on ``inputs`` and return its outputs.

        ``inputs`` is one array (single-input model), a list by input index, or a dict by input name.
        Waits FIFO for a free request; raises :class:`QueueFull` at once when ``max_queue`` callers
        already wait, :class:`InferTimeout` after ``timeout`` seconds, an :class:`InputError` for
        inputs that do not fit the model, :class:`InferenceError` if the device fails. Cancelling
        the caller drops the job, or gives it up on the device (cancelled there if the model's
        shapes are static, else left to finish), and its result is discarded. A model with
        state raises :class:`SessionError`: call it through :meth:`session`.
        """
        self._stateless()
        return await self._pool.run(self._adapter(inputs), timeout)

    __call__ = infer

    def adapt(self, inputs: Inputs) -> Arrays:
        """The first half of :meth:`infer`: ``inputs`` checked and converted to the model's arrays
        by input index; raises an :class:`InputError` for inputs that do not fit. Safe on any thread."""
        return self._adapter(inputs)

    async def run_adapted(self, arrays: Arrays, timeout: float | None = None) -> Outputs:
        """The second half of :meth:`infer`, for ``arrays`` made by :meth:`adapt` (not checked again)."""
        self._stateless()
        return await self._pool.run(arrays, timeout)

    def session(self, *, timeout: float | None = None) -> _Loading[Session]:
        """Reserve one infer request for a stream of calls that share the model's state (reset at
        the start): ``async with model.session() as s: y = await s.infer(x)``. Other callers keep the
        rest of the pool. At most ``num_requests`` sessions at once: more wait FIFO with the other
        callers (:class:`QueueFull` beyond ``max_queue``, :class:`InferTimeout` after ``timeout``
        seconds). However a session ends (exit, cancellation, abandoned), its request goes back to
        the pool; the next session resets its state. Works for any model (one without state simply
        keeps its calls on one request, in order)."""

        async def reserve() -> Session:
            return Session(self, self._pool, await self._pool.reserve(timeout))

        return _Loading(reserve)

    def _stateless(self) -> None:
        if self.info.stateful:
            raise SessionError(
                f"model {self.info.name!r} keeps state between calls (ReadValue/Assign): call it in "
                "a session, `async with model.session() as s: await s.infer(x)`, so that each stream "
                "keeps its own state"
            )

    def _map_target(self) -> tuple[Callable[[Any], Awaitable[Outputs]], int]:
        return self.infer, self.info.num_requests

    def _session_target(self) -> tuple[Callable[[Any], Awaitable[Outputs]], Callable[[], object]]:
        calls = SessionCalls(self)
        return calls, calls.end

    def stats(self) -> Stats:
        """Counters (submitted, completed, failed, cancelled, rejected, in flight, queued) and
        latency percentiles in ms of device time and of the whole await."""
        return self._pool.stats()

    @property
    def closed(self) -> bool:
        return self._pool.closed

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop taking work, let what was submitted finish (at most ``timeout`` seconds, then it is
        failed with ClosedError and given up as a cancelled call is), and release the requests. A
        copy of the model still compiling for a new input shape (``shape_lanes``) is waited for,
        past ``timeout``: OpenVINO cannot stop a compile, and it must not outlive the model (nor
        run on at interpreter exit). Idempotent."""
        await self._pool.aclose(timeout)

    @property
    def compiled(self) -> ov.CompiledModel:
        """The OpenVINO compiled model behind this one (do not keep it past the model's life: its
        last reference, if it is yours, is released holding the GIL)."""
        return self._keeper.get_compiled_model()

    def __del__(self) -> None:
        # collected on OpenVINO's callback thread (by the garbage collector): there, the compiled
        # model's destructor could join the very thread it runs on
        if _reaper.on_callback_thread() and getattr(self, "_keeper", None) is not None:
            _reaper.bury(self, "_keeper")

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.info.num_requests} requests"
        return f"<AsyncModel {self.info.name!r} on {self.info.device} ({state})>"


T = TypeVar("T", bound=AsyncResource)


class _Loading(Generic[T]):
    """What :func:`load` returns: await it (the caller closes the result), or use it as
    ``async with`` (closed on exit)."""

    def __init__(self, factory: Callable[[], Awaitable[T]]) -> None:
        self._factory = factory
        self._model: T | None = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._factory().__await__()

    async def __aenter__(self) -> T:
        self._model = await self._factory()
        return self._model

    async def __aexit__(self, *exc: object) -> None:
        if self._model is not None:
            await self._model.aclose()


def load(
    model: str | os.PathLike[str] | bytes | ov.Model,
    *,
    device: str = "AUTO",
    num_requests: int | None = None,
    config: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    reshape: _loading.ReshapeSpec = None,
    max_queue: int | None = None,
    share_inputs: bool = False,
    precision: str | None = None,
    shape_lanes: int = 1,
) -> _Loading[AsyncModel]:
    """Read and compile ``model`` off the event loop and wrap it in an :class:`AsyncModel`.

    ``model``: a path (.xml beside its .bin, .onnx, .tflite, .pdmodel, .pb), the model's bytes, or
    an ``openvino.Model``. ``device`` passes through to OpenVINO (``CPU``, ``GPU``, ``AUTO``,
    ``HETERO:GPU,CPU``, ...). ``num_requests=None`` uses the device's optimal number of requests.
    ``config`` is OpenVINO's compile config; ``PERFORMANCE_HINT`` defaults to ``THROUGHPUT``.
    ``precision`` (``"f32"``, ``"bf16"``, ``"f16"``) sets OpenVINO's ``INFERENCE_PRECISION_HINT``;
    ``None`` keeps the device's default (bf16 on CPUs that support it: results then differ slightly
    from an f32 reference). A device runs what it supports (a CPU without bf16 runs f32):
    ``model.info.precision`` says what really runs. Raises :class:`ValueError` at once for another
    precision, or one that contradicts ``config``'s ``INFERENCE_PRECISION_HINT``.
    ``reshape`` fixes input shapes at load (one shape, or a mapping by input name/index).
    ``max_queue``: how many calls may wait, accepted and not yet running on the device (here:
    waiting for a free request), before the next is refused at once with :class:`QueueFull`;
    ``None``: no bound. ``share_inputs=True`` lets the device read the caller's arrays
    without a copy: then an input array must not be modified until its ``infer`` has returned, and
    no other request may run on ``model.compiled`` (OpenVINO's CPU plugin can then write a copied
    input into the last shared array).

    ``shape_lanes=N`` (> 1) is for a model fed a few recurring input shapes (batches of varying
    size, text lines of varying width): OpenVINO's CPU plugin prepares a compiled model for one
    shape at a time, and pays again (about as much as a small inference) at each change. The model
    then runs on up to N compiled copies, each kept on one shape, the shapes called most keeping
    theirs; a copy is compiled off the loop when a shape called twice finds none free (one at a
    time), and the calls meanwhile run on the others. Each copy is the same model compiled the
    same way (the same answers), and costs its compile time and memory. ``stats().lanes`` counts
    the copies made. A model with state keeps one.

    ``model`` may also be the URL of a model on an Open Inference Protocol server (aioinfer's,
    Triton, OpenVINO Model Server, KServe, MLServer): ``http(s)://host:port/v2/models/NAME``
    (``/versions/V`` optional) or ``grpc://host:port/NAME``. The result has the same API, checks
    inputs against the server's metadata before sending them, keeps at most ``num_requests``
    requests in flight (default 64) and ``max_queue`` callers waiting; ``config`` then holds the
    client's options (see :func:`aioinfer._remote.load_url`) and the other arguments must be left
    at their defaults.

    Use as ``model = await load(...)`` or ``async with load(...) as model``.
    """
    if isinstance(shape_lanes, bool) or not isinstance(shape_lanes, int) or shape_lanes < 1:
        raise ValueError(f"shape_lanes must be an integer >= 1, got {shape_lanes!r}")
    if isinstance(model, str) and "://" in model:  # a model on an inference server
        local = (device != "AUTO", cache_dir, reshape, share_inputs, precision, shape_lanes != 1)
        if any(option is not None and option is not False for option in local):
            raise ValueError("a remote model takes only num_requests, max_queue and config")
        from ._remote import load_url

        return load_url(model, num_requests=num_requests, max_queue=max_queue, config=config)
    cfg = _loading.with_precision({"PERFORMANCE_HINT": DEFAULT_HINT, **(config or {})}, precision)
    if cache_dir is not None:
        cfg["CACHE_DIR"] = str(Path(cache_dir))

    def compile_() -> tuple[ov.CompiledModel, str | None, Callable[[], ov.CompiledModel] | None]:
        ov_model = _loading.read_model(model)
        _loading.reshape(ov_model, reshape)
        prepared = _loading.with_numpy_inputs(ov_model)
        compiled = _loading.compile_model(prepared, device, cfg)
        lane = functools.partial(_loading.compile_model, prepared, device, cfg) if shape_lanes > 1 else None
        return compiled, _loading.used_precision(compiled), lane

    async def make() -> AsyncModel:
        compiled, used, lane = await anyio.to_thread.run_sync(compile_)
        return AsyncModel(
            compiled,
            device=device,
            num_requests=num_requests,
            max_queue=max_queue,
            share_inputs=share_inputs,
            precision=used,
            shape_lanes=shape_lanes,
            compile_lane=lane,
        )

    return _Loading(make)


def _optimal_requests(compiled: ov.CompiledModel) -> int:
    return max(1, int(_property(compiled, "OPTIMAL_NUMBER_OF_INFER_REQUESTS", 1)))


def _property(compiled: ov.CompiledModel, name: str, default: Any) -> Any:
    try:
        return compiled.get_property(name)
    except RuntimeError:
        return default


def _model_name(compiled: ov.CompiledModel) -> str:
    return str(_property(compiled, "NETWORK_NAME", "model"))


def _compile_config(compiled: ov.CompiledModel) -> dict[str, Any]:
    """The compiled model's readable properties, as JSON-friendly values."""
    config: dict[str, Any] = {}
    for key in _property(compiled, "SUPPORTED_PROPERTIES", {}):
        if key in ("SUPPORTED_PROPERTIES", "NETWORK_NAME", "EXECUTION_DEVICES"):
            continue
        value = _property(compiled, key, None)
        if isinstance(value, ov.Type):
            value = value.get_type_name()
        config[key] = value if isinstance(value, (bool, int, float, str)) or value is None else str(value)
    return config
