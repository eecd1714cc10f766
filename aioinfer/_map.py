"""``amap``: run an async function over a (sync or async) iterable with bounded concurrency."""

from __future__ import annotations

import asyncio
import functools
import time
import warnings
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import anyio
from anyio.abc import AsyncResource
from tqdm.auto import tqdm

from . import _bridge
from ._errors import FrameError, ItemCancelledError
from ._sources import Frame, FrameSource, guard_source, source_name
from ._spawn import Task, spawn, wait

T = TypeVar("T")


@dataclass(frozen=True, eq=False)  # compared by identity: it holds arrays
class MapResult(Generic[T]):
    """One item's outcome, paired with what the function was given for it.

    ``input`` is what the function received: for a :class:`Frame` its ``image`` (and ``index`` and
    ``timestamp_ms`` are the frame's); for any other item the item itself (``index`` is its position
    in the iterable, ``timestamp_ms`` is ``None``). ``output`` is what the function returned (of
    type ``T``). ``error`` is set (and ``output`` is ``None``) only with ``return_exceptions=True``;
    for a frame the source could not read, it is that frame's :class:`FrameError` and ``input`` is
    ``None``.
    """

    index: int
    timestamp_ms: float | None
    input: Any
    output: T
    error: BaseException | None = None

    @property
    def frame(self) -> Any:
        """Deprecated alias of :attr:`input` (it was renamed: for a frame it is the frame's image)."""
        warnings.warn("MapResult.frame is deprecated; use MapResult.input", DeprecationWarning, stacklevel=2)
        return self.input


@dataclass(frozen=True)
class MapStats:
    """A snapshot of a running map: items read from the source, inferred (successfully), failed (the
    function raised, or the source could not read the frame), dropped by the source's ``drop``
    policy, in flight (running now), results yielded per second."""

    read: int
    inferred: int
    failed: int
    dropped: int
    in_flight: int
    fps: float


class _End:
    """Marks the end of the results; carries the source's error, if it failed."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _Job:
    __slots__ = ("index", "input", "task", "timestamp_ms")

    def __init__(self, index: int, timestamp_ms: float | None, input: Any, task: Task) -> None:
        self.index = index
        self.timestamp_ms = timestamp_ms
        self.input = input
        self.task = task


class _Wakeup:
    """One task of the loop waiting (``await wait()``) until another part of the loop calls
    ``wake()``; a wake-up with nobody waiting is lost, so the waiter checks again what it waits for."""

    __slots__ = ("_bridge", "_future")

    def __init__(self, bridge: _bridge.Bridge) -> None:
        self._bridge = bridge
        self._future: _bridge.Future[None] | None = None

    async def wait(self) -> None:
        future = self._future = self._bridge.future()
        await future

    def wake(self) -> None:
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_result(None)


class _Slots:
    """``max_in_flight``: the feeder takes a slot per item read, the consumer gives it back once the
    item is yielded."""

    __slots__ = ("_free", "_wakeup")

    def __init__(self, bridge: _bridge.Bridge, slots: int) -> None:
        self._free = slots
        self._wakeup = _Wakeup(bridge)

    async def acquire(self) -> None:
        while not self._free:
            await self._wakeup.wait()
        self._free -= 1

    def release(self) -> None:
        self._free += 1
        self._wakeup.wake()


class _Results:
    """The results for the consumer, in the order they are put (jobs, then the end)."""

    __slots__ = ("_items", "_wakeup")

    def __init__(self, bridge: _bridge.Bridge) -> None:
        self._items: deque[_Job | _End] = deque()
        self._wakeup = _Wakeup(bridge)

    def put_nowait(self, item: _Job | _End) -> None:
        self._items.append(item)
        self._wakeup.wake()

    async def get(self) -> _Job | _End:
        while not self._items:
            await self._wakeup.wait()
        return self._items.popleft()


class _State:
    """Everything the feeder task and the iterator share. Holds no reference to the iterator, so
    dropping the iterator (``break`` out of ``async for``) lets it cancel the work at once.
    ``fn`` is what runs on each item (its own task, per item)."""

    def __init__(
        self, fn: Callable[[Any], Awaitable[Any]], items: Any, max_in_flight: int, ordered: bool
    ) -> None:
        self.bridge = _bridge.current()
        self.fn = fn
        self.items = items
        self.ordered = ordered
        self.slots = _Slots(self.bridge, max_in_flight)
        self.results = _Results(self.bridge)
        self.running: set[Task] = set()
        self.source_done = False
        self.source_error: BaseException | None = None
        self.feeder: Task | None = None
        self.stop_requested = False  # the feeder was told to read no more (a CancelledError is ours)
        self.draining = False  # ... by stop(): the jobs in flight are still yielded
        self.read = self.inferred = self.failed = 0
        self.t0: float | None = None

    def submit(self, position: int, item: Any) -> None:
        """Start the job of one item read from the source: ``fn(item)``, ``fn(frame.image)`` for a
        Frame; for a frame the source could not read (its FrameError), a job failed with that error."""
        if isinstance(item, FrameError):
            job = _Job(item.index, None, None, spawn(self.bridge, _fail, item))
        elif isinstance(item, Frame):
            job = _Job(item.index, item.timestamp_ms, item.image, spawn(self.bridge, self.fn, item.image))
        else:
            job = _Job(position, None, item, spawn(self.bridge, self.fn, item))
        self.read += 1
        self.running.add(job.task)
        job.task.add_done_callback(lambda t: self._done(job))
        if self.ordered:
            self.results.put_nowait(job)

    def _done(self, job: _Job) -> None:
        self.running.discard(job.task)
        if not job.task.cancelled():
            job.task.exception()  # retrieved: a failure never yielded (after a break) is not logged
        if not self.ordered:
            self.results.put_nowait(job)
            if self.source_done and not self.running:
                self.results.put_nowait(_End(self.source_error))

    def finish_source(self, error: BaseException | None) -> None:
        self.source_done, self.source_error = True, error
        if self.ordered or not self.running:
            self.results.put_nowait(_End(error))

    def stop_reading(self, drain: bool) -> None:
        """Tell the feeder to read no more; ``drain``: the jobs in flight are still yielded (else
        nobody reads the results any more). A CancelledError the feeder sees from now on is ours."""
        self.stop_requested = True
        self.draining = self.draining or drain
        if self.feeder is not None:
            self.feeder.cancel()

    def cancel(self) -> list[Task]:
        """Stop reading and cancel every job not yet yielded; returns the tasks to await."""
        tasks: list[Task] = list(self.running)
        if self.feeder is not None:
            tasks.append(self.feeder)
        self.stop_reading(drain=False)
        for task in tasks:
            task.cancel()
        return tasks


async def _feed(state: _State) -> None:
    """The feeder task: reads the source into jobs, then marks the end of the results, with the
    source's error if it failed (whatever it raised, CancelledError included), so the consumer never
    waits for an end that does not come. Only once the consumer has gone does it end silently."""
    try:
        error = await guard_source(_read(state), source_name(state.items), lambda: state.stop_requested)
    except anyio.get_cancelled_exc_class():
        if not state.draining:
            raise
        error = None
    state.finish_source(error)


async def _fail(error: BaseException) -> Any:
    """The job of a frame the source could not read: fails with its FrameError."""
    raise error


async def _read(state: _State) -> None:
    """Submit the source's items, each only once a slot is free, so that at most ``max_in_flight``
    are read and not yet yielded. A frame the source could not read (FrameError) is a failed item."""
    iterator = _aiter(state.items)
    position = 0
    while not state.stop_requested:
        await state.slots.acquire()
        if state.stop_requested:  # stopped while it waited (trio may wake a task it then cancels)
            return
        try:
            item = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except FrameError as exc:  # that frame failed; the source goes on
            item = exc
        if state.stop_requested:  # a source that swallowed our cancellation: start nothing more
            return
        if state.t0 is None:
            state.t0 = time.perf_counter()
        state.submit(position, item)
        position += 1


class MapIterator(AsyncIterator[MapResult[T]], AsyncResource):
    """The async iterator :func:`amap` returns; also an async context manager.

    Leaving ``async for`` early (``break``, an exception, cancellation) cancels the jobs in flight;
    ``await it.aclose()`` (or ``async with``) also waits until they are cancelled. ``stop()`` reads
    no further but lets the jobs in flight finish and yields their results; unlike the rest, it
    may be called from any thread.
    """

    def __init__(
        self,
        fn: Callable[[Any], Awaitable[T]],
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        max_in_flight: int,
        ordered: bool,
        return_exceptions: bool,
        progress: bool,
        on_finish: Callable[[], object] | None = None,
    ) -> None:
        """``on_finish``: called once nothing more will be yielded (the end, an error, ``aclose``,
        cancellation, or the iterator collected unfinished), on the loop."""
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self._state = _State(fn, items, max_in_flight, ordered)
        self._on_finish = on_finish
        self._return_exceptions = return_exceptions
        self._finished = False
        unit = "frame" if isinstance(items, FrameSource) else "item"
        self._bar = tqdm(total=_length(items), unit=unit, dynamic_ncols=True) if progress else None

    def __aiter__(self) -> MapIterator[T]:
        return self

    async def __anext__(self) -> MapResult[T]:
        state = self._state
        state.bridge.check("this map", "made")
        if self._finished:
            raise StopAsyncIteration
        if state.feeder is None:
            state.feeder = spawn(state.bridge, _feed, state)
        try:
            message = await state.results.get()
            if not isinstance(message, _End):
                await wait([message.task])
        except BaseException:  # the consumer was cancelled
            self._finish()
            raise
        if self._finished:  # closed meanwhile (aclose from another task): its job was cancelled
            raise StopAsyncIteration
        if isinstance(message, _End):
            self._finish()
            if message.error is not None:
                raise message.error
            raise StopAsyncIteration
        return self._result(message)

    def _result(self, job: _Job) -> MapResult[T]:
        state = self._state
        state.slots.release()
        error = _job_error(job)
        if error is None:
            state.inferred += 1
        else:
            state.failed += 1
        if self._bar is not None:
            self._bar.update()
            postfix = _source_postfix(state.items)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
        if error is not None and not self._return_exceptions:
            self._finish()
            raise error
        output = cast(T, None) if error is not None else job.task.result()  # documented: None on error
        return MapResult(job.index, job.timestamp_ms, job.input, output, error)

    def _finish(self) -> list[Task]:
        """Nothing more will be yielded: cancel what is left, close the bar; returns the tasks
        cancelled (to await)."""
        self._finished = True
        tasks = self._state.cancel()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._call_on_finish()
        return tasks

    def _call_on_finish(self) -> None:
        on_finish, self._on_finish = self._on_finish, None
        if on_finish is not None:
            on_finish()

    def stop(self) -> None:
        """Read no more items; the jobs already in flight finish and are yielded, then iteration ends.

        Safe to call from any thread (a camera's, say): from another than the map's event loop, it
        is handed over to that loop, where it takes effect soon after (a map whose loop has ended is
        left as it is). From a signal handler, install it on the loop (``loop.add_signal_handler``,
        ``anyio.open_signal_receiver``): one that ``signal.signal`` runs on the loop's own thread
        interrupts the loop anywhere and does not wake it up."""
        state = self._state
        if state.bridge.is_current():
            state.stop_reading(drain=True)
        else:
            state.bridge.call_soon_threadsafe(functools.partial(state.stop_reading, drain=True))

    async def aclose(self) -> None:
        """Cancel the jobs in flight and wait until they are gone (even if the caller is being
        cancelled: as a task group's exit does). Idempotent."""
        self._state.bridge.check("this map", "made")
        tasks = [t for t in self._finish() if not t.done()]
        if tasks:
            with anyio.CancelScope(shield=True):
                await wait(tasks)

    def stats(self) -> MapStats:
        state = self._state
        elapsed = time.perf_counter() - state.t0 if state.t0 is not None else 0.0
        return MapStats(
            read=state.read,
            inferred=state.inferred,
            failed=state.failed,
            dropped=_source_dropped(state.items),
            in_flight=len(state.running),
            fps=round((state.inferred + state.failed) / elapsed, 3) if elapsed > 0 else 0.0,
        )

    def __del__(self) -> None:
        if getattr(self, "_finished", True):
            return
        if self._bar is not None:
            self._bar.close()
        state = self._state
        if state.bridge.is_current():
            state.cancel()
        else:  # a loop that is gone runs nothing any more: nothing to cancel
            state.bridge.call_soon_threadsafe(state.cancel)
        if self._on_finish is not None:  # not here: the collector may run this holding any lock
            state.bridge.call_soon_threadsafe(self._on_finish)


def amap(
    fn: Callable[[Any], Awaitable[T]],
    items: Iterable[Any] | AsyncIterable[Any],
    *,
    max_in_flight: int,
    ordered: bool = True,
    return_exceptions: bool = False,
    progress: bool = False,
    on_finish: Callable[[], object] | None = None,
) -> MapIterator[T]:
    """Await ``fn(item)`` for every item of ``items`` with at most ``max_in_flight`` running.

    ``items`` is any sync or async iterable, e.g. a :class:`~aioinfer.FrameSource`. An item is read
    only when fewer than ``max_in_flight`` items are read and not yet yielded, so a fast source never
    runs ahead of the consumer. A :class:`Frame` is unwrapped: ``fn(frame.image)``.

    Yields a :class:`MapResult` per item (``MapResult[T]`` for an ``fn`` returning ``T``), in input
    order with ``ordered=True``, as they complete otherwise. An exception from ``fn`` is raised at
    its item (the rest are cancelled), or returned in ``MapResult.error`` with
    ``return_exceptions=True``; so is a frame a FrameSource could not read (its
    :class:`FrameError`), after which the next frames keep coming. ``fn`` raising
    ``CancelledError`` on its own fails its item with :class:`ItemCancelledError`. An exception from
    the source is raised after the results of the items read before it, whatever it is: a source
    raising ``CancelledError`` on its own raises a :class:`SourceError` (it is neither the end of the
    items nor a cancellation of the consumer). Cancelling the consumer cancels the jobs in flight and
    raises ``CancelledError``. ``progress=True`` shows a tqdm bar (total when known).
    ``on_finish()`` is called on the loop once nothing more will be yielded (the end, an error,
    ``aclose``, cancellation, or the iterator collected unfinished).
    """
    return MapIterator(
        fn,
        items,
        max_in_flight=max_in_flight,
        ordered=ordered,
        return_exceptions=return_exceptions,
        progress=progress,
        on_finish=on_finish,
    )


def _job_error(job: _Job) -> BaseException | None:
    """The exception the job failed with, if any. Only ``fn`` itself can have cancelled a job whose
    result is yielded (the map cancels jobs only once nothing more is yielded): ItemCancelledError."""
    try:
        return job.task.exception()
    except asyncio.CancelledError as exc:  # what exception() raises for a cancelled job
        error = ItemCancelledError(
            f"the function mapped over item {job.index} raised CancelledError although the map was "
            "not cancelled"
        )
        error.__cause__ = exc
        return error


class _SyncIter:
    """A sync iterator seen as an async one (``next()`` runs on the loop: keep it cheap)."""

    __slots__ = ("_it",)

    def __init__(self, it: Iterator[Any]) -> None:
        self._it = it

    async def __anext__(self) -> Any:
        try:
            return next(self._it)
        except StopIteration:
            raise StopAsyncIteration from None


def _aiter(items: Iterable[Any] | AsyncIterable[Any]) -> Any:
    if isinstance(items, AsyncIterable):
        return items.__aiter__()
    return _SyncIter(iter(items))


def _length(items: Any) -> int | None:
    try:
        return len(items)
    except TypeError:
        return None


def _source_dropped(items: Any) -> int:
    return items.stats().dropped if isinstance(items, FrameSource) else 0


def _source_postfix(items: Any) -> dict[str, int]:
    """What the progress bar tells of a frame source, once not zero: frames dropped, outages
    survived (``reconnects``) and reconnection attempts (``attempts``)."""
    if not isinstance(items, FrameSource):
        return {}
    stats = items.stats()
    told = {"dropped": stats.dropped, "reconnects": stats.reconnects, "attempts": stats.reconnect_attempts}
    return {name: value for name, value in told.items() if value}
