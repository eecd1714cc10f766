"""``Batcher``: concurrent small calls grouped into one inference on a model with a batch dimension,
and the probe that shows whether batching leaves a model's answers unchanged."""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import anyio
import numpy as np
import openvino as ov
from anyio.abc import AsyncResource

from . import _bridge, _spawn
from ._checks import check_positive, deprecated_ms
from ._errors import (
    AioInferError,
    ClosedError,
    InferenceError,
    InferTimeout,
    InputShapeError,
    NotBatchableError,
    QueueFull,
)
from ._inputs import InputAdapter, Inputs, TensorInfo
from ._model import ModelInfo
from ._outputs import Outputs
from ._runner import Arrays, Runner

PROBE_ROWS = 3  # rows in the probe's batch (fewer if the model takes fewer)
PROBE_DIM = 64  # length of a dynamic non-batch dimension in the probe's inputs (conv nets need some)
# largest difference allowed between a row run in a batch and the same row run alone, as a fraction
# of the output's magnitude, by the lowest float precision the compiled model computes in: a batched
# kernel may sum in another order, nothing more
TOLERANCE = {"f64": 1e-9, "f32": 1e-4, "f16": 1e-2, "bf16": 5e-2, "f8e4m3": 0.25, "f8e5m2": 0.5}


class BatchableModel(Runner, Protocol):
    """What a :class:`Batcher` batches: a ``Runner`` (``adapt``, ``run_adapted``) with the model's
    ``info``, such as an :class:`~aioinfer.AsyncModel` or a remote model. One that also has an
    OpenVINO ``compiled`` model gives the batcher the bounds of its dynamic dimensions."""

    @property
    def info(self) -> ModelInfo: ...


class _Item:
    __slots__ = ("arrays", "future", "gone", "key", "size", "t_arrival")

    def __init__(self, arrays: dict[int, np.ndarray], future: _bridge.Future[Outputs]) -> None:
        self.arrays = arrays
        self.size = _batch_size(arrays)
        self.key = tuple((a.shape[1:], a.dtype.str) for _, a in sorted(arrays.items()))
        self.future = future
        self.gone = False  # its caller no longer waits (answered, cancelled or timed out)
        self.t_arrival = time.perf_counter()

    @property
    def live(self) -> bool:
        """Its caller still waits for an outcome."""
        return not (self.gone or self.future.done())


class Batcher(AsyncResource):
    """Groups concurrent ``infer`` calls into one inference of up to ``max_batch_size`` items.

    Each call passes inputs with a leading batch dimension (usually 1), exactly as the model takes
    them, and gets back only its own rows of every output. The first waiting call waits at most
    ``max_delay`` seconds for others to join; while every request of the model is busy, calls keep
    gathering, so batches grow with load. While a batch runs, the next one takes another of the
    model's requests only once it is full, else it keeps gathering until the device is idle: a few
    rows on each of several requests cost more than the same rows in one inference, and they take
    the CPU that brings in the next calls. A model with a fixed batch size ``N`` gets batches padded
    to ``N`` rows (``max_batch_size`` is capped at ``N``, as at the upper bound of a bounded
    dynamic batch dimension such as ``[1..N, ...]``).

    A call that is cancelled (a task's ``cancel()``, a cancel scope such as ``anyio.move_on_after``)
    or times out leaves the batch it joined running for the others. An input that does not fit the
    model fails only its own call (an :class:`InputError`); if a whole batch fails on the device,
    its calls are retried one by one so only the faulty one fails.
    ``max_queue``: how many calls may wait, accepted and not yet running on the device (here:
    waiting to join a batch), before the next is refused at once with :class:`QueueFull`; ``None``:
    no bound. ``partial_overlap=True`` lets a batch that is not full start beside a running one as
    soon as ``max_delay`` has passed and a request is free: for a device that runs several batches
    truly side by side with cores to spare, or a remote model, where a round trip rather than the
    CPU bounds a batch.

    Batching is only right for a model whose rows do not interact (``f([a, b]) == [f(a), f(b)]``).
    Constructing a ``Batcher`` declares that the model is such (``basis`` says so); it refuses, with
    :class:`NotBatchableError`, a model that has no leading batch dimension on every input and
    output or takes one row at most, and fails a batch whose outputs do not come back with one row
    per input row rather than hand out wrong rows. ``await Batcher.checked(model)`` proves the rest
    with a probe first.

    ``model``: an :class:`~aioinfer.AsyncModel`, a remote model, or any runner with ``info``,
    ``adapt`` and ``run_adapted`` (:class:`BatchableModel`). Works under asyncio, uvloop and trio;
    make and use it in one event loop (or ``trio.run``), the model's: from another, it raises
    :class:`EventLoopError`. ``async with Batcher(model) as b`` or ``await b.aclose()`` when done
    (the model itself stays open); between bursts of calls it keeps no background task. Like the
    model, it offers the two halves of ``infer``, :meth:`adapt` and :meth:`run_adapted` (the
    internal ``_runner.Runner``).
    """

    def __init__(
        self,
        model: BatchableModel,
        *,
        max_batch_size: int = 8,
        max_delay: float = 0.002,
        max_queue: int | None = None,
        on_batch: Callable[[int], None] | None = None,
        max_delay_ms: float | None = None,
        partial_overlap: bool = False,
    ) -> None:
        check_positive("max_batch_size", max_batch_size, integer=True)
        max_delay = deprecated_ms("max_delay", max_delay, max_delay_ms)  # max_delay_ms: deprecated
        check_positive("max_delay", max_delay, zero=True)  # NaN or inf would hang a batch
        self.model = model
        self._bridge = _bridge.current()
        self._fixed = _batch_dimension(model.info)
        shapes = _input_shapes(model)
        self.max_batch_size = min(max_batch_size, self._fixed or _max_rows(shapes) or max_batch_size)
        if self.max_batch_size < 2 <= max_batch_size:
            raise NotBatchableError(
                f"model {model.info.name!r} takes one row per inference: nothing to batch"
            )
        self.basis = "declared batch-separable by the caller (no probe)"  # why batching is trusted
        self.max_delay = max_delay
        self.max_queue = max_queue
        self._on_batch = on_batch
        self.partial_overlap = partial_overlap
        # a dynamic batch dimension: the model's own checks already let a call bring any rows
        self._adapter: Callable[[Inputs], Arrays] = (
            model.adapt if self._fixed is None else _relaxed_adapter(model.info.inputs, shapes)
        )
        self._pending: deque[_Item] = deque()
        self._limit = model.info.num_requests  # batches on the device at once
        self._running = 0  # batches started and not finished
        self._gathering = False  # a collector takes the calls that arrive
        self._collectors = 0  # collectors alive: the gathering one, others finishing their batches
        self._wakeup: _bridge.Future[None] | None = None  # the gathering collector's sleep
        self._stopped: list[_bridge.Future[None]] = []  # aclose() callers waiting for the collectors
        self._closed = False
        self.batches = 0  # batches run so far
        self.items = 0  # calls served by them

    @classmethod
    async def checked(cls, model: BatchableModel, **options: Any) -> Batcher:
        """A ``Batcher(model, **options)`` once a probe has shown that batching leaves the model's
        answers unchanged; else :class:`NotBatchableError` saying why.

        The probe makes random inputs of the model's dtypes (uniform in [0, 1) for floats, small
        distinct integers per row; ``PROBE_DIM`` for a dynamic non-batch dimension), runs a batch
        of up to ``PROBE_ROWS`` rows and each row alone through the model (those few inferences
        count in ``model.stats()``; nothing else about the model changes), and requires every
        output to keep one row per input row and each batched row to equal the row alone:
        exactly for integer outputs, within ``TOLERANCE`` of the output's magnitude for the lowest
        float precision the model computes in (``model.info.precision``). A probe the model fails
        to run means not batchable. Making the inputs and comparing the outputs run off the event
        loop; ``basis`` tells what the probe showed.
        """
        batcher = cls(model, **options)
        batcher.basis = await batcher._probe()
        return batcher

    async def _probe(self) -> str:
        """Run the probe of :meth:`checked`; return what it showed or raise NotBatchableError."""
        count = min(PROBE_ROWS, self.max_batch_size)
        model = self.model
        shapes = _input_shapes(model)
        rows = await anyio.to_thread.run_sync(_probe_rows, model.info.inputs, shapes, count)
        batch = {i: _stack([a], self._rows(count)) for i, a in rows.items()}
        alone = [{i: _stack([a[r : r + 1]], self._rows(1)) for i, a in rows.items()} for r in range(count)]
        try:  # one after another: a probe must not fill the model's queue
            results = [await model.run_adapted(model.adapt(x)) for x in (batch, *alone)]
        except ClosedError:
            raise
        except AioInferError as exc:
            raise NotBatchableError(
                f"the probe's inference failed ({type(exc).__name__}: {exc}): batching is not shown safe"
            ) from exc
        tolerance = _tolerance(model.info.precision)
        return await anyio.to_thread.run_sync(
            lambda: _compare(results[0], results[1:], self._rows, tolerance)
        )

    def _rows(self, size: int) -> int:
        """Rows of an inference that carries ``size`` rows of calls (padded to a fixed batch)."""
        return max(size, self._fixed or 0)

    @property
    def pending(self) -> int:
        """Calls waiting to join a batch."""
        return sum(1 for item in self._pending if item.live)

    async def infer(self, inputs: Inputs, *, timeout: float | None = None) -> Outputs:
        """Run ``inputs`` (leading batch dimension included) as part of a batch; return its own outputs.

        Raises like :meth:`AsyncModel.infer`: :class:`InputError` for inputs that do not fit,
        :class:`QueueFull`, :class:`InferTimeout` after ``timeout`` seconds, :class:`ClosedError`,
        :class:`EventLoopError` from another event loop.
        """
        self._admit()  # before converting: a refused call costs nothing
        return await self._submit(self._adapter(inputs), timeout)

    def adapt(self, inputs: Inputs) -> Arrays:
        """The first half of :meth:`infer`: ``inputs`` checked and converted (any number of rows on
        a dynamic batch dimension, at most the fixed batch size otherwise); raises an
        :class:`InputError` for inputs that do not fit. Safe on any thread."""
        return self._adapter(inputs)

    async def run_adapted(self, arrays: Arrays, timeout: float | None = None) -> Outputs:
        """The second half of :meth:`infer`, for ``arrays`` made by :meth:`adapt` (not checked again)."""
        self._admit()
        return await self._submit(arrays, timeout)

    def _admit(self) -> None:
        self._bridge.check("this batcher", "made")
        if self._closed:
            raise ClosedError("the batcher is closed: it takes no more work")
        if self.max_queue is not None and self.pending >= self.max_queue:
            raise QueueFull(
                f"{self.max_queue} calls already wait for a batch (max_queue={self.max_queue}); retry later"
            )

    async def _submit(self, arrays: dict[int, np.ndarray], timeout: float | None) -> Outputs:
        item = _Item(arrays, self._bridge.future())
        if self._fixed is not None and item.size > self._fixed:
            raise InputShapeError(f"the model takes at most {self._fixed} rows per call, got {item.size}")
        self._pending.append(item)
        self._wake()
        if not self._gathering:
            self._gathering = True
            self._collectors += 1
            collector = _spawn.spawn(self._bridge, self._collect)
            _COLLECTORS.add(collector)
            collector.add_done_callback(_COLLECTORS.discard)
        try:
            if timeout is None:
                return await item.future
            with anyio.move_on_after(timeout):
                return await item.future
            raise InferTimeout(f"inference did not finish within {timeout:g} s")
        finally:
            item.gone = True  # a batch that has not run yet skips it

    # -- the collector: a background task while calls wait or batches run ----------------------

    async def _collect(self) -> None:
        """Gather waiting calls into batches and start each (at most ``num_requests`` at once) until
        no call waits and no batch runs; then end (a later call starts another collector)."""
        try:
            async with anyio.create_task_group() as batches:
                while await self._ready():
                    batch = await self._gather()
                    self._running += 1
                    batches.start_soon(self._run, batch)
        finally:
            self._collectors -= 1
            if not self._collectors:
                for waiter in self._stopped:
                    if not waiter.done():
                        waiter.set_result(None)
                self._stopped.clear()

    async def _ready(self) -> bool:
        """True once a call waits and a request is free for its batch; False, and the collector takes
        no more calls, once no call waits and no batch runs."""
        while True:
            waiting = self._take_live_head()
            if waiting and self._running < self._limit:
                return True
            if not waiting and not self._running:
                self._gathering = False
                return False
            await self._sleep()

    async def _gather(self) -> list[_Item]:
        """The first waiting call and the others with its trailing shapes that join it until the
        batch is full, ``max_delay`` after it arrived once no other batch runs, or the batcher
        closes; a caller that leaves meanwhile gives its place back."""
        first = self._pending.popleft()
        batch, key, deadline = [first], first.key, first.t_arrival + self.max_delay
        while True:
            batch = [item for item in batch if item.live]
            size = sum(item.size for item in batch)
            size += self._join(batch, size, key)
            if size >= self.max_batch_size or self._closed or not batch:
                return batch
            remaining = deadline - time.perf_counter()
            if remaining <= 0 and (self.partial_overlap or not self._running):
                return batch
            with anyio.move_on_after(remaining if remaining > 0 else math.inf):
                await self._sleep()

    async def _sleep(self) -> None:
        """Wait until a call arrives or a batch ends."""
        self._wakeup = waiter = self._bridge.future()
        try:
            await waiter
        finally:
            if self._wakeup is waiter:
                self._wakeup = None

    def _wake(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _take_live_head(self) -> bool:
        while self._pending and not self._pending[0].live:
            self._pending.popleft()
        return bool(self._pending)

    def _join(self, batch: list[_Item], size: int, key: tuple[object, ...]) -> int:
        """Move waiting calls that fit into ``batch``, drop departed ones; return how many rows joined."""
        joined = 0
        keep: deque[_Item] = deque()
        for item in self._pending:
            if not item.live:
                continue
            if item.key == key and size + joined + item.size <= self.max_batch_size:
                batch.append(item)
                joined += item.size
            else:
                keep.append(item)
        self._pending = keep
        return joined

    async def _run(self, batch: list[_Item]) -> None:
        try:
            live = [item for item in batch if item.live]
            if live:
                await self._infer_batch(live)
        finally:
            self._running -= 1
            self._wake()

    async def _infer_batch(self, items: list[_Item]) -> None:
        sizes = [item.size for item in items]
        total = sum(sizes)
        rows = self._rows(total)
        try:
            # the arrays were checked and converted by self.adapt; a batch of them has the model's
            # trailing shapes and dtypes, and rows within its batch dimension (padded if fixed)
            inputs = {i: _stack([item.arrays[i] for item in items], rows) for i in items[0].arrays}
            outputs = await self.model.run_adapted(inputs)
            _check_rows(outputs, rows)
            # counted once it ran: a batch retried call by call below counts only its calls' runs
            self.batches += 1
            self.items += len(items)
            if self._on_batch is not None:
                self._on_batch(total)
        except InferenceError as exc:
            if len(items) == 1:
                _fail(items[0], exc)
            else:  # find the call the device chokes on: only it fails
                async with anyio.create_task_group() as alone:
                    for item in items:
                        if item.live:
                            alone.start_soon(self._infer_batch, [item])
            return
        except Exception as exc:  # NotBatchableError too: not retried, no call can get its own rows
            for item in items:
                _fail(item, exc)
            return
        offset = 0
        for item, n in zip(items, sizes, strict=True):
            if item.live:
                item.future.set_result(outputs.rows(offset, offset + n))
            offset += n

    async def aclose(self) -> None:
        """Take no more calls, finish those waiting (at once: no company can come any more) and
        running, then stop: no background task of the batcher is left. Idempotent."""
        self._bridge.check("this batcher", "made")
        self._closed = True
        self._wake()
        if self._collectors:
            waiter = self._bridge.future()
            self._stopped.append(waiter)
            await waiter

    def __repr__(self) -> str:
        limits = f"max_batch_size={self.max_batch_size} max_delay={self.max_delay:g}"
        return f"<Batcher {limits} on {self.model!r}>"


_COLLECTORS: set[_spawn.Task] = set()  # held while they run: asyncio keeps only weak references


def _batch_dimension(info: ModelInfo) -> int | None:
    """The model's fixed batch size, ``None`` if dynamic; NotBatchableError if it has no usable batch
    dimension."""
    ports = (*info.inputs, *info.outputs)
    if any(not port.shape for port in ports):
        raise NotBatchableError(
            f"model {info.name!r} has an input or output without a leading batch dimension"
        )
    dims = {port.shape[0] for port in ports if port.shape}
    fixed = dims - {-1}
    if len(fixed) > 1 or (fixed and -1 in {i.shape[0] for i in info.inputs if i.shape}):
        raise NotBatchableError(
            f"model {info.name!r} has inconsistent leading dimensions {sorted(dims)}: its outputs "
            "do not keep the inputs' batch dimension"
        )
    return fixed.pop() if fixed else None


def _input_shapes(model: BatchableModel) -> list[ov.PartialShape]:
    """Each input's shape: the OpenVINO compiled model's, with the bounds of dynamic dimensions that
    only it knows, when ``model`` has one (an AsyncModel); else ``model.info``'s (``-1``: any)."""
    compiled = getattr(model, "compiled", None)
    if isinstance(compiled, ov.CompiledModel):
        return [port.get_partial_shape() for port in compiled.inputs]
    return [
        ov.PartialShape.dynamic() if info.shape is None else ov.PartialShape(list(info.shape))
        for info in model.info.inputs
    ]


def _max_rows(shapes: Sequence[ov.PartialShape]) -> int | None:
    """The smallest upper bound of the inputs' batch dimensions, ``None`` if they are unbounded."""
    bounds = [shape[0].get_max_length() for shape in shapes]
    return min((b for b in bounds if b > 0), default=None)


def _relaxed_adapter(inputs: Sequence[TensorInfo], shapes: Sequence[ov.PartialShape]) -> InputAdapter:
    """The model's input checks with the batch dimension left free (a call brings any number of rows)."""
    infos, relaxed = [], []
    for info, shape in zip(inputs, shapes, strict=True):
        pshape = ov.PartialShape(shape)
        pshape[0] = ov.Dimension()
        relaxed.append(pshape)
        infos.append(dataclasses.replace(info, shape=(-1, *info.shape[1:])) if info.shape else info)
    return InputAdapter(infos, relaxed)


def _batch_size(arrays: dict[int, np.ndarray]) -> int:
    sizes = {int(a.shape[0]) for a in arrays.values()}
    if len(sizes) != 1:
        raise InputShapeError(
            f"every input must have the same number of rows (leading dimension); got {sorted(sizes)}"
        )
    return sizes.pop()


def _stack(parts: list[np.ndarray], rows: int) -> np.ndarray:
    """Concatenate along axis 0, padding with copies of the last row up to ``rows`` (one copy in all)."""
    pad = rows - sum(p.shape[0] for p in parts)
    if pad:
        parts = [*parts, np.broadcast_to(parts[-1][-1:], (pad, *parts[-1].shape[1:]))]
    return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def _fail(item: _Item, exc: BaseException) -> None:
    if item.live:
        item.future.set_exception(exc)


def _check_rows(outputs: Outputs, rows: int) -> None:
    """NotBatchableError unless every output has ``rows`` rows: one per input row of the batch."""
    for name, array in zip(outputs.names, outputs, strict=True):
        if array.shape[:1] != (rows,):
            raise NotBatchableError(
                f"output {name!r} came back with shape {list(array.shape)} for a batch of {rows} rows: "
                "the model does not keep one output row per input row, so no call can be given its own"
            )


def _probe_rows(
    inputs: Sequence[TensorInfo], shapes: Sequence[ov.PartialShape], count: int
) -> dict[int, np.ndarray]:
    """``count`` random, distinct rows of every input (the same seed every time)."""
    rng = np.random.default_rng(0)
    rows: dict[int, np.ndarray] = {}
    for i, (info, pshape) in enumerate(zip(inputs, shapes, strict=True)):
        if info.dtype is None:
            raise NotBatchableError(
                f"the probe cannot make values of type {info.element_type} for input {info.name!r}"
            )
        shape = (count, *(_probe_length(d) for d in list(pshape)[1:]))
        if info.dtype.kind == "f":
            rows[i] = rng.random(shape).astype(info.dtype)
        else:  # small integers (indices, masks), row r offset by r so that no two rows are equal
            offset = np.arange(count).reshape(-1, *[1] * (len(shape) - 1))
            values = rng.integers(0, 4, shape) + offset
            rows[i] = (values % 2 if info.dtype.kind == "b" else values).astype(info.dtype)
    return rows


def _probe_length(dim: ov.Dimension) -> int:
    """A static dimension's length; ``PROBE_DIM`` within the bounds of a dynamic one."""
    if dim.is_static:
        return int(dim.get_length())
    upper = int(dim.get_max_length())
    return max(int(dim.get_min_length()), min(PROBE_DIM, upper) if upper > 0 else PROBE_DIM)


def _tolerance(precision: str | None) -> tuple[float, str]:
    """The ``TOLERANCE`` of the float precision the model computes in (``model.info.precision``),
    and its name; the loosest one when it is not known."""
    if precision not in TOLERANCE:
        return max(TOLERANCE.values()), "an unknown precision"
    return TOLERANCE[precision], precision


def _compare(
    batch: Outputs, alone: Sequence[Outputs], rows_of: Callable[[int], int], tolerance: tuple[float, str]
) -> str:
    """What the probe showed: each row of ``batch`` equals the output of that row run ``alone``, on
    every output; else NotBatchableError naming the output and the difference."""
    limit, precision = tolerance
    count, worst = len(alone), 0.0
    for j, name in enumerate(batch.names):
        got = batch[j]
        for r, single in enumerate(alone):
            want = single[j]
            if want.shape[:1] != (rows_of(1),) or got.shape != (rows_of(count), *want.shape[1:]):
                raise NotBatchableError(
                    f"output {name!r} has shape {list(got.shape)} for a batch of {count} rows and "
                    f"{list(want.shape)} for one row: it does not keep one row per input row"
                )
            diff = _difference(got[r], want[0])
            if diff > limit:
                raise NotBatchableError(
                    f"the probe found rows interacting on output {name!r}: row {r} of a batch of {count} "
                    f"differs from the same row run alone (max diff {diff:.3g} of the output's magnitude; "
                    f"tolerance {limit:g} for {precision})"
                )
            worst = max(worst, diff)
    return (
        f"probe: each row of a batch of {count} random rows matched that row run alone on every "
        f"output (max diff {worst:.2g} of the output's magnitude; tolerance {limit:g} for {precision})"
    )


def _difference(got: np.ndarray, want: np.ndarray) -> float:
    """The largest difference between two arrays of one shape, as a fraction of their largest finite
    magnitude (``inf`` for any difference in integer or boolean arrays, or in NaN or inf positions)."""
    if np.array_equal(got, want, equal_nan=got.dtype.kind == "f"):
        return 0.0
    if got.dtype.kind != "f":
        return float("inf")
    a, b = got.astype(np.float64), want.astype(np.float64)
    if not np.array_equal(np.isfinite(a), np.isfinite(b)):
        return float("inf")
    finite = np.isfinite(a)
    if not np.array_equal(a[~finite], b[~finite], equal_nan=True):
        return float("inf")
    delta = np.abs(a[finite] - b[finite]).max()
    scale = max(np.abs(a[finite]).max(), np.abs(b[finite]).max())
    return float(delta / scale)
