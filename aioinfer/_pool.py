"""The bridge between OpenVINO's callback threads and the event loop: a pool of infer requests.

Threading rules, which every method below keeps:

* ``_lock`` (a ``threading.Lock``) guards the queue, the slots and the hand-over list. It is taken by
  the event loop, by OpenVINO's completion callbacks and by the watchdog thread, always briefly.
* Nothing but the event loop touches a future. Other threads append ``(job, outcome)`` to ``_done``
  and, when that list was empty, wake the loop once through the backend's own thread-safe wake-up
  (``_bridge.py``: asyncio's ``call_soon_threadsafe``, trio's ``TrioToken.run_sync_soon``).
* A request is restarted by whoever releases it: the completion callback starts the next queued job
  directly, so the device never waits for a busy loop.
* OpenVINO does not call the callback when a job fails or is cancelled on the device (``wait()``
  raises instead). The watchdog thread polls running requests and recovers those.
* A model may run on several compiled copies, one per recurring input shape (``_lanes.py``): each
  slot then holds one request of every copy, and a job runs on the copy its shape maps to. Copies
  beyond the first are compiled on a thread of their own, when a shape first finds none free.
* A session reserves one request (``reserve``): it leaves the shared pool, runs only the jobs given
  to it (``run(..., slot=)``), in order, from its own queue, until ``unreserve`` returns it.
* No infer request is ever released on OpenVINO's callback thread (its destructor would wait for
  that very callback): ``aclose()`` waits, off the loop, until the watchdog has ended and every
  request's last callback has returned, then drops the requests; a pool dropped without ``aclose()``
  hands its requests to the reaper thread (``_reaper.py``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import numpy as np
import openvino as ov

from . import _bridge, _reaper
from ._errors import ClosedError, InferenceError, InferTimeout, QueueFull, ov_message
from ._inputs import numpy_dtype
from ._lanes import ShapeLanes
from ._outputs import Outputs
from ._stats import Recorder, Stats

# a job's states: QUEUED -> RUNNING -> FINISHED (outcome handed to the loop) -> DONE (delivered);
# CANCELLED from any state before DONE
QUEUED, RUNNING, FINISHED, DONE, CANCELLED = "queued", "running", "finished", "done", "cancelled"
WATCH_INTERVAL_S = 0.02  # how often busy requests are checked for a failure the callback never reports
WATCH_NAP_AFTER_S = 1.0  # idle this long, the watchdog sleeps until the next job starts

logger = logging.getLogger("aioinfer")


class _Job:
    """One call, or (``inputs is None``) one reservation of a request for a session."""

    __slots__ = ("future", "inputs", "pinned", "slot", "state", "t_submit")

    def __init__(
        self, inputs: dict[int, np.ndarray] | None, future: _bridge.Future[Any], pinned: _Slot | None = None
    ) -> None:
        self.inputs = inputs
        self.future = future
        self.state = QUEUED
        self.slot: _Slot | None = None  # the slot running it
        self.pinned = pinned  # the reserved slot it must run on, if any
        self.t_submit = time.perf_counter()


class _Slot:
    """One infer request of each lane, and the job it is running (``job is None`` when idle)."""

    __slots__ = ("gen", "job", "queue", "request", "requests", "returning", "started", "tainted")

    def __init__(self, request: ov.InferRequest) -> None:
        self.requests: list[ov.InferRequest | None] = [request]  # by lane; emptied by aclose()
        self.request = request  # the current job's (the last one's when idle); None once released
        self.job: _Job | None = None
        self.gen = 0  # bumped at each assignment, so a late report about an older job is ignored
        self.started = False  # start_async of the current job has returned
        self.queue: deque[_Job] | None = None  # a session's own jobs while reserved, else None
        self.returning = False  # unreserved while busy: back to the pool once its queue is done
        self.tainted = False  # a session's job was given up while it ran: its state is unknown

    @property
    def reserved(self) -> bool:
        return self.queue is not None

    def __del__(self) -> None:
        # dropped without aclose(), maybe on OpenVINO's callback thread: the reaper releases it
        self.request = None  # the same object as one of ``requests``
        with contextlib.suppress(Exception):  # at interpreter exit the module may be gone
            _reaper.bury_all(self.requests)


class RequestPool:
    """At most ``len(requests)`` jobs on the device, further callers queued FIFO (bounded by
    ``max_queue``), results delivered to the event loop (asyncio, uvloop or trio) that created the pool."""

    def __init__(
        self,
        compiled: ov.CompiledModel,
        num_requests: int,
        *,
        output_names: Sequence[str],
        output_index: dict[str, int],
        max_queue: int | None = None,
        share_inputs: bool = False,
        lanes: int = 1,
        compile_lane: Callable[[], ov.CompiledModel] | None = None,
    ) -> None:
        """``lanes`` > 1: run each recurring input shape on a compiled copy of its own, up to
        ``lanes`` copies, made by ``compile_lane`` (see ``_lanes.py``)."""
        self._bridge = _bridge.current()
        self._lock = threading.Lock()
        self._max_queue = max_queue
        self._share_inputs = share_inputs
        # element types numpy holds exactly take the fast path (we fill the request's tensors);
        # others (bf16, f8, u4, ...) go through OpenVINO's own conversion in start_async
        self._fast_inputs = all(numpy_dtype(p.get_element_type()) is not None for p in compiled.inputs)
        self._n_out = len(compiled.outputs)
        self._device_cancel = _all_static(compiled)
        self._out_names = tuple(output_names)
        self._out_index = output_index
        _reaper.start()  # here, not where a slot may be collected (see _reaper.start)
        self._slots = [_Slot(compiled.create_infer_request()) for _ in range(num_requests)]
        # the callback holds the pool weakly: no reference cycle through OpenVINO's C++ side
        self._callback = functools.partial(_completion_callback, weakref.ref(self))
        for index, slot in enumerate(self._slots):
            slot.request.set_callback(self._callback, (index, 0))
        self._lanes = ShapeLanes(lanes if compile_lane is not None else 1)
        self._compile_lane = compile_lane
        self._grower: threading.Thread | None = None
        self._idle = list(reversed(self._slots))
        self._queue: deque[_Job] = deque()
        self._queued = 0  # live (not cancelled) jobs in _queue
        self._done: list[tuple[_Job, Outputs | None, BaseException | None, float]] = []
        self._stats = Recorder()
        self._closed = False
        self._stopped = False
        self._idle_waiters: list[_bridge.Future[None]] = []
        self._settle_waiters: list[_bridge.Future[None]] = []
        self._kick = threading.Event()
        self._releasing = threading.Lock()
        self._watchdog_napping = False
        self._watchdog = threading.Thread(
            target=_watch, args=(weakref.ref(self), self._kick), name="aioinfer-watchdog", daemon=True
        )
        self._watchdog.start()

    # -- the event loop's side ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    async def run(
        self, inputs: dict[int, np.ndarray], timeout: float | None = None, slot: _Slot | None = None
    ) -> Outputs:
        """Run one job (on the reserved ``slot`` if given, after its earlier jobs); cancelling the
        caller (a task's cancel(), a cancel scope) or the timeout drops it from the queue or gives it
        up on the device (see ``_cancel``), and frees its request."""
        outputs: Outputs = await self._await(_Job(inputs, self._bridge.future(), slot), timeout)
        return outputs

    async def reserve(self, timeout: float | None = None) -> _Slot:
        """Take one request out of the shared pool for a session, waiting FIFO with the other
        callers (``max_queue``, ``timeout`` as for ``run``); ``unreserve`` gives it back."""
        slot: _Slot = await self._await(_Job(None, self._bridge.future()), timeout)
        return slot

    async def _await(self, job: _Job, timeout: float | None) -> Any:
        self._bridge.check()
        if timeout is None:
            self._launch(job)
            return await self._outcome(job)
        with anyio.move_on_after(timeout):  # entered first: the deadline counts from the call
            self._launch(job)
            return await self._outcome(job)
        raise InferTimeout(f"inference did not finish within {timeout:g} s")

    def _launch(self, job: _Job) -> None:
        slot = self._submit(job)
        if slot is not None:
            self._start(slot, job)

    async def _outcome(self, job: _Job) -> Any:
        try:
            return await job.future
        except BaseException:  # cancelled (or failed: then it is DONE and _cancel does nothing)
            self._cancel(job)
            raise

    def _submit(self, job: _Job) -> _Slot | None:
        with self._lock:
            if self._closed:
                raise ClosedError("the model is closed: it takes no more work")
            if job.pinned is not None:
                return self._submit_pinned(job, job.pinned)
            if self._idle:
                slot = self._idle.pop()
                self._assign(slot, job)
                self._stats.submitted += job.inputs is not None
                self._wake_watchdog()
                return slot
            if self._max_queue is not None and self._queued >= self._max_queue:
                self._stats.rejected += 1
                raise QueueFull(
                    f"{self._queued} callers already wait for one of {len(self._slots)} requests "
                    f"(max_queue={self._max_queue}); retry later"
                )
            self._queue.append(job)
            self._queued += 1
            self._stats.submitted += job.inputs is not None
            return None

    def _submit_pinned(self, job: _Job, slot: _Slot) -> _Slot | None:
        """``_submit`` to a reserved slot (caller holds the lock): run now, or after its queue."""
        if slot.queue is None or slot.returning:
            raise ClosedError("the session has ended: its request went back to the pool")
        self._stats.submitted += 1
        if slot.job is None:
            self._assign(slot, job)
            self._wake_watchdog()
            return slot
        slot.queue.append(job)
        self._queued += 1
        return None

    async def settle(self, slot: _Slot) -> None:
        """Wait until reserved ``slot`` runs no job and has none queued (a job given up on the
        device finishes first)."""
        self._bridge.check()
        while slot.job is not None or any(j.state == QUEUED for j in slot.queue or ()):
            waiter = self._bridge.future()
            self._settle_waiters.append(waiter)
            await waiter

    def unreserve(self, slot: _Slot) -> None:
        """Give a reserved request back to the pool (any thread): at once if it is idle, else once
        the jobs already given to it are over."""
        with self._lock:
            if slot.queue is None:
                return
            if slot.job is not None or slot.queue:
                slot.returning = True
                return
            _unreserved(slot)
            nxt = self._next_queued()
            if nxt is not None:
                self._assign(slot, nxt)
            else:
                self._idle.append(slot)
        if nxt is not None:
            self._start(slot, nxt)

    def _wake_watchdog(self) -> None:
        """Caller holds the lock: a job starts, the watchdog must poll again."""
        if self._watchdog_napping:
            self._watchdog_napping = False
            self._kick.set()

    def _cancel(self, job: _Job) -> None:
        """The caller gave up: drop a queued job, give up a running one (cancelled on the
        device if the model's shapes are static, see ``_all_static``; else left to finish), discard
        a finished one's outcome. A session's job given up after it started leaves the session's
        state unknown: its slot is tainted."""
        with self._lock:
            state = job.state
            if state in (DONE, CANCELLED):
                return
            job.state = CANCELLED
            self._stats.cancelled += job.inputs is not None
            if state == QUEUED:
                self._queued -= 1
            elif job.pinned is not None:
                job.pinned.tainted = True
            slot = job.slot
            on_device = state == RUNNING and slot is not None and slot.started and self._device_cancel
            if on_device:  # a RUNNING job is its slot's current one: under the lock it cannot move on
                slot.request.cancel()  # type: ignore[union-attr]
        if on_device:
            self._kick.set()

    def _drain(self) -> None:
        """Runs on the loop: deliver every outcome handed over since the last wake-up."""
        with self._lock:
            done, self._done = self._done, []
        now = time.perf_counter()
        stats = self._stats
        for job, outputs, error, device_ms in done:
            if job.inputs is None:
                self._deliver_reservation(job, outputs)  # type: ignore[arg-type]
                continue
            if job.state == CANCELLED or job.future.done():
                continue
            job.state = DONE
            if error is not None:
                stats.failed += 1
                job.future.set_exception(error)
            else:
                stats.completed += 1
                stats.device_ms.append(device_ms)
                stats.await_ms.append((now - job.t_submit) * 1e3)
                job.future.set_result(outputs)
        if self._settle_waiters:  # each checks its slot again
            settled, self._settle_waiters = self._settle_waiters, []
            for waiter in settled:
                if not waiter.done():
                    waiter.set_result(None)
        if self._idle_waiters and self._is_idle():
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle_waiters.clear()

    def _deliver_reservation(self, job: _Job, slot: _Slot) -> None:
        if job.state == CANCELLED or job.future.done():
            self.unreserve(slot)  # the caller gave up (or timed out) meanwhile
            return
        job.state = DONE
        job.future.set_result(slot)

    def stats(self) -> Stats:
        with self._lock:  # the counters and latencies are the loop's own: only these need the lock
            running = sum(1 for s in self._slots if s.job is not None and s.job.state == RUNNING)
            queued, size = self._queued, len(self._slots)
            lanes = self._lanes.count
        return self._stats.snapshot(running, queued, size, lanes)

    def busy_requests(self) -> int:
        """Requests not idle, including those finishing a cancelled job."""
        with self._lock:
            return sum(s.job is not None for s in self._slots)

    def _is_idle(self) -> bool:
        """No job queued, running or undelivered (a session's reserved request may be idle too)."""
        with self._lock:
            return not self._done and not self._queued and all(s.job is None for s in self._slots)

    async def aclose(self, timeout: float | None = None) -> None:
        """Take no more work; let queued and running jobs finish (up to ``timeout`` seconds), then
        fail what is left with ClosedError and give it up as ``_cancel`` does. Returns once no callback of
        the pool is running any more and its requests are released."""
        self._bridge.check()
        with self._lock:
            self._closed = True
        try:
            with anyio.move_on_after(timeout):
                await self._wait_idle()
            if not self._is_idle():  # out of time
                self._abort_all()
                await self._wait_idle()
        except BaseException:  # cancelled: the watchdog still recovers the requests, the reaper releases them
            self._abort_all()
            raise
        finally:
            self._stopped = True
            self._kick.set()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._release_requests)

    def _release_requests(self) -> None:
        """Worker thread: once the watchdog has ended and each request's last callback has returned
        (``wait()`` returns only after it), drop the requests here, idle, never on OpenVINO's thread."""
        with self._releasing:  # a second aclose() returns once the first has released them
            self._watchdog.join()
            if self._grower is not None:
                self._grower.join()  # a copy being compiled: dropped once it is (see _add_lane)
            with self._lock:
                slots, self._slots, self._idle = self._slots, [], []
            for slot in slots:
                requests, slot.requests, slot.request = slot.requests, [], None
                while requests:
                    request = requests.pop()
                    if request is not None:
                        with contextlib.suppress(Exception):  # a failed or cancelled last job is over too
                            request.wait()
                    del request

    async def _wait_idle(self) -> None:
        if self._is_idle():
            return
        waiter = self._bridge.future()
        self._idle_waiters.append(waiter)
        await waiter

    def _abort_all(self) -> None:
        with self._lock:
            queues = [self._queue, *(s.queue for s in self._slots if s.queue is not None)]
            pending = [j for queue in queues for j in queue if j.state == QUEUED]
            pending += [s.job for s in self._slots if s.job is not None and s.job.state == RUNNING]
        for job in pending:
            if not job.future.done():
                job.future.set_exception(ClosedError("the model was closed before this job finished"))
            self._cancel(job)

    # -- any thread ---------------------------------------------------------------------------

    def _assign(self, slot: _Slot, job: _Job) -> None:
        """Give ``slot`` to ``job`` (caller holds the lock)."""
        slot.job = job
        slot.gen += 1
        slot.started = False
        job.slot = slot
        job.state = RUNNING
        if self._lanes.limit > 1 and job.inputs is not None and job.pinned is None:
            self._to_lane(slot, job.inputs)

    def _to_lane(self, slot: _Slot, inputs: dict[int, np.ndarray]) -> None:
        """Point ``slot`` at the request of the lane for ``inputs``' shapes; start one more lane
        when it is time (caller holds the lock)."""
        lane, grow = self._lanes.lane_for(tuple(array.shape for array in inputs.values()))
        slot.request = slot.requests[lane]
        if grow and not self._closed:
            self._grower = threading.Thread(
                target=_grow,
                args=(weakref.ref(self), self._compile_lane, len(self._slots)),
                name="aioinfer-lane",
                daemon=True,
            )
            self._grower.start()

    def _add_lane(self, requests: list[ov.InferRequest] | None) -> list[ov.InferRequest] | None:
        """The lane thread: give each slot its request of a new lane (``None``: it failed to
        compile). Returns the requests when the pool is closed: the caller drops them, unused."""
        with self._lock:
            if requests is None or self._closed:
                self._lanes.stop_growing()
                return requests
            lane = self._lanes.count
            for index, (slot, request) in enumerate(zip(self._slots, requests, strict=True)):
                request.set_callback(self._callback, (index, lane))
                slot.requests.append(request)
            self._lanes.grown()
            return None

    def _start(self, slot: _Slot, job: _Job) -> None:
        if job.inputs is None:
            self._reserve(slot, job)
            return
        gen = slot.gen
        try:
            self._set_inputs(slot.request, job.inputs)
        except Exception as exc:  # rejected before it ran (e.g. a shape the plugin refuses)
            self._release(slot, gen, None, InferenceError(ov_message(exc)), 0.0)
            return
        with self._lock:
            if slot.gen != gen:
                return
            slot.started = True
            cancelled = job.state == CANCELLED and self._device_cancel
            if cancelled:  # the caller gave up while the job was being started
                slot.request.cancel()
        if cancelled:
            self._kick.set()

    def _reserve(self, slot: _Slot, job: _Job) -> None:
        """``slot`` was assigned to a reservation: it becomes the session's, handed to the loop."""
        with self._lock:
            if slot.job is not job:
                return
            slot.job, slot.started, job.slot = None, False, None
            slot.queue = deque()
            if job.state == RUNNING:
                job.state = FINISHED
            self._done.append((job, slot, None, 0.0))  # type: ignore[arg-type]
            wake = len(self._done) == 1
        if wake:
            self._wake()

    def _set_inputs(self, request: ov.InferRequest, inputs: dict[int, np.ndarray]) -> None:
        """Give the inputs to ``request`` and start it. Filling the request's tensors ourselves is
        ~10x cheaper than ``start_async(inputs)`` (see benchmarks/bench_inputs.py)."""
        if not self._fast_inputs:
            request.start_async(inputs, share_inputs=self._share_inputs)
            return
        for i, array in inputs.items():
            if self._share_inputs:
                # zero-copy: OpenVINO's tensor does not keep the array alive, the job does (its
                # ``inputs`` dict, until completion), so a contiguous copy must be stored there too
                inputs[i] = array = np.ascontiguousarray(array)
                request.set_input_tensor(i, ov.Tensor(array, shared_memory=True))
            else:
                tensor = request.get_input_tensor(i)
                tensor.shape = array.shape
                tensor.data[...] = array
        request.start_async()

    def _on_complete(self, index: int, lane: int) -> None:
        """A job finished on the device (OpenVINO's callback thread): copy its outputs, hand them over."""
        with self._lock:
            if index >= len(self._slots):
                return
            slot = self._slots[index]
            job, gen, request = slot.job, slot.gen, slot.request
            stale = lane >= len(slot.requests) or slot.requests[lane] is not request
        if job is None or stale:
            return  # not the request of the slot's current job
        try:
            arrays = [np.array(request.get_output_tensor(i).data) for i in range(self._n_out)]
        except Exception as exc:
            self._release(slot, gen, None, InferenceError(f"could not read the outputs: {exc}"), 0.0)
            return
        self._release(slot, gen, Outputs(arrays, self._out_names, self._out_index), None, request.latency)

    def _watch_interval(self, idle_since: float) -> tuple[float, float]:
        """Watchdog: poll every WATCH_INTERVAL_S while busy; after WATCH_NAP_AFTER_S idle, nap
        until ``_submit`` wakes it. Returns the wait and when the pool became idle."""
        now = time.monotonic()
        with self._lock:
            if any(s.job is not None for s in self._slots):
                idle_since = now
            self._watchdog_napping = now - idle_since > WATCH_NAP_AFTER_S
            return (WATCH_NAP_AFTER_S if self._watchdog_napping else WATCH_INTERVAL_S), idle_since

    def _poll(self) -> None:
        """Watchdog thread: find running jobs that failed or were cancelled on the device."""
        with self._lock:
            running = [(s, s.gen, s.job, s.request) for s in self._slots if s.job is not None and s.started]
        for slot, gen, job, request in running:
            try:
                request.wait_for(20 if job.state == CANCELLED and self._device_cancel else 0)
            except Exception as exc:
                error = InferenceError(f"the device failed to run the job: {ov_message(exc)}")
                self._release(slot, gen, None, error, 0.0)

    def _release(
        self, slot: _Slot, gen: int, outputs: Outputs | None, error: BaseException | None, device_ms: float
    ) -> None:
        """Hand the finished job's outcome to the loop and give the request its next job."""
        with self._lock:
            job = slot.job
            if slot.gen != gen or job is None:
                return  # already handled by someone else
            if job.state == RUNNING:
                job.state = FINISHED
            job.slot = None
            slot.job, slot.started = None, False
            nxt = self._next_for(slot)
            if nxt is not None:
                self._assign(slot, nxt)
            elif not slot.reserved:
                self._idle.append(slot)
            self._done.append((job, outputs, error, device_ms))
            wake = len(self._done) == 1
        if nxt is not None:
            self._start(slot, nxt)
        if wake:
            self._wake()

    def _next_for(self, slot: _Slot) -> _Job | None:
        """Caller holds the lock: the next job of idle ``slot``: its session's next one, or the
        pool's once it is not (or no more) reserved."""
        if slot.queue is None:
            return self._next_queued()
        nxt = self._pop(slot.queue)
        if nxt is None and slot.returning:
            _unreserved(slot)
            return self._next_queued()
        return nxt

    def _next_queued(self) -> _Job | None:
        return self._pop(self._queue)

    def _pop(self, queue: deque[_Job]) -> _Job | None:
        while queue:
            job = queue.popleft()
            if job.state == QUEUED:
                self._queued -= 1
                return job
        return None

    def _wake(self) -> None:
        if not self._bridge.call_soon_threadsafe(self._drain):  # the loop is gone: nobody to deliver to
            with self._lock:
                self._done.clear()


def _unreserved(slot: _Slot) -> None:
    """Caller holds the pool's lock: ``slot`` is no session's any more."""
    slot.queue, slot.returning, slot.tainted = None, False, False


def _all_static(compiled: ov.CompiledModel) -> bool:
    """Whether every input and output of ``compiled`` has a static shape. Only then is a running job
    given up cancelled on the device: with OpenVINO 2026.4's CPU plugin, cancelling a job of a
    dynamic-shape model can spoil its next job of another shape (a wrong output, or a shape error);
    there the job runs to its end instead, and its result is dropped."""
    ports = [*compiled.inputs, *compiled.outputs]
    return all(port.get_partial_shape().is_static for port in ports)


def _completion_callback(pool_ref: weakref.ReferenceType[RequestPool], where: tuple[int, int]) -> None:
    """OpenVINO's completion callback (``where``: the slot's index and the lane's). It must never
    raise: that can abort the interpreter. What ``_complete`` held is dropped when it returns, still
    inside the callback scope."""
    with _reaper.IN_CALLBACK, contextlib.suppress(BaseException):
        _complete(pool_ref, where)


def _complete(pool_ref: weakref.ReferenceType[RequestPool], where: tuple[int, int]) -> None:
    pool = pool_ref()
    if pool is not None:
        pool._on_complete(*where)


def _grow(
    pool_ref: weakref.ReferenceType[RequestPool], compile_lane: Callable[[], ov.CompiledModel], count: int
) -> None:
    """Lane thread body: compile one more copy and give it to the pool. The copy's requests own it
    (as in ``AsyncModel``); if the pool is gone or closed they die here, never started."""
    try:
        requests: list[ov.InferRequest] | None = _lane_requests(compile_lane, count)
    except Exception as exc:
        logger.warning("no more shape lanes: a copy of the model failed to compile: %s", ov_message(exc))
        requests = None
    pool = pool_ref()
    if pool is not None:
        requests = pool._add_lane(requests)
    del pool, requests


def _lane_requests(compile_lane: Callable[[], ov.CompiledModel], count: int) -> list[ov.InferRequest]:
    compiled = compile_lane()
    return [compiled.create_infer_request() for _ in range(count)]


def _watch(pool_ref: weakref.ReferenceType[RequestPool], kick: threading.Event) -> None:
    """Watchdog thread body. Holds the pool only weakly: an abandoned pool is collected and the
    thread ends."""
    idle_since = time.monotonic()
    while True:
        pool = pool_ref()
        if pool is None or (pool._stopped and pool.busy_requests() == 0):
            return
        interval, idle_since = pool._watch_interval(idle_since)
        del pool
        kick.wait(interval)
        kick.clear()
        pool = pool_ref()
        if pool is not None:
            pool._poll()
        del pool
