"""The event loop's health: how late a heartbeat wakes up (the loop's *lag*), and a warning naming
the code that blocked the loop.

A monitor sleeps ``interval`` seconds over and over on the loop (a task of its own, on asyncio,
uvloop or trio) and records how much later than asked each sleep ended: near zero on a healthy
loop, about ``B`` when a callback blocked the loop for ``B`` seconds (between ``B - interval`` and
``B``: the block may begin while the heartbeat sleeps). A beat at least ``slow_threshold`` late is
a *slow event*, logged as a warning on the logger ``aioinfer.loop``. A watcher thread notices a
heartbeat overdue by ``slow_threshold`` while the loop is still blocked and takes the loop thread's
stack then (``sys._current_frames()``), so the warning shows where the loop was stuck. The thread
only reads numbers the heartbeat publishes: it never touches the loop or its objects.

One monitor per loop: :func:`loop_stats` reads the one watching the running loop.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from types import FrameType, TracebackType
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from ._checks import check_positive
from ._errors import LoopMonitorError
from ._stats import LATENCY_WINDOW, Latency

DEFAULT_INTERVAL = 0.05  # seconds between heartbeats
DEFAULT_SLOW_THRESHOLD = 0.1  # seconds late that make a slow event (asyncio's slow_callback_duration)
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WATCHER_NAME = "aioinfer-loop-watcher"
STACK_DEPTH = 20  # innermost frames of the blocked loop thread logged

log = logging.getLogger("aioinfer.loop")
_monitors: weakref.WeakKeyDictionary[Any, LoopMonitor] = weakref.WeakKeyDictionary()  # by loop


@dataclass(frozen=True)
class LoopStats:
    """A snapshot of a loop's lag: ``samples`` heartbeats measured, ``slow`` of them at least
    ``slow_threshold_ms`` late; ``lag_ms``, the percentiles of the most recent beats' lag in
    milliseconds; ``max_ms``, the worst since the monitor started (``None`` before the first beat)."""

    samples: int
    slow: int
    lag_ms: Latency = field(default_factory=Latency)
    max_ms: float | None = None
    interval_ms: float = DEFAULT_INTERVAL * 1e3
    slow_threshold_ms: float = DEFAULT_SLOW_THRESHOLD * 1e3

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return asdict(self)

    def summary(self) -> str:
        """One line for people, such as
        ``loop lag: p50 0.1 ms, p99 0.9 ms, max 312.0 ms over 410 beats; 1 slow (>= 100 ms)``."""
        if not self.samples or self.lag_ms.p50 is None or self.lag_ms.p99 is None or self.max_ms is None:
            return "loop lag: no heartbeat measured"
        return (
            f"loop lag: p50 {self.lag_ms.p50:.1f} ms, p99 {self.lag_ms.p99:.1f} ms, max {self.max_ms:.1f} ms "
            f"over {self.samples} beats; {self.slow} slow (>= {self.slow_threshold_ms:g} ms)"
        )


class LoopMonitor:
    """Measures the lag of the loop it runs in (see the module's docstring); made by
    :func:`monitor_loop`. Runs once, as an async context manager; :meth:`stats` works during and after."""

    def __init__(
        self, interval: float = DEFAULT_INTERVAL, slow_threshold: float = DEFAULT_SLOW_THRESHOLD
    ) -> None:
        self.interval = check_positive("interval", interval)
        self.slow_threshold = check_positive("slow_threshold", slow_threshold)
        self._lags: deque[float] = deque(maxlen=LATENCY_WINDOW)  # ms
        self._counts = [0] * (len(LAG_BUCKETS) + 1)  # beats by LAG_BUCKETS, the last beyond them all
        self._lag_sum = 0.0  # seconds
        self._slow = 0
        self._max: float | None = None  # ms
        # published by the heartbeat for the watcher: the number of the beat it awaits and when it
        # is due (time.monotonic()); and by the watcher: that beat's number and the stack it took
        self._pending = (0, math.inf)
        self._caught: tuple[int, str] | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._group: TaskGroup | None = None
        self._loop: Any = None  # the native token of the loop watched, while running

    def stats(self) -> LoopStats:
        """The figures so far (see :class:`LoopStats`)."""
        return LoopStats(
            samples=sum(self._counts),
            slow=self._slow,
            lag_ms=Latency.of(self._lags),
            max_ms=None if self._max is None else round(self._max, 4),
            interval_ms=self.interval * 1e3,
            slow_threshold_ms=self.slow_threshold * 1e3,
        )

    def histogram(self) -> tuple[list[tuple[float, int]], float]:
        """The lag of every beat so far as a cumulative histogram: ``(upper bound in seconds, beats
        at most that late)`` for each of :data:`LAG_BUCKETS` then ``inf``, and the sum of the lags."""
        bounds = (*LAG_BUCKETS, math.inf)
        return list(zip(bounds, itertools.accumulate(self._counts), strict=True)), self._lag_sum

    @property
    def running(self) -> bool:
        """Whether it watches its loop now (between entering and leaving its block)."""
        return self._loop is not None

    async def __aenter__(self) -> LoopMonitor:
        if self._group is not None:
            raise LoopMonitorError(
                "this loop monitor has already run: start a new one with aioinfer.monitor_loop()"
            )
        loop = anyio.lowlevel.current_token().native_token
        other = _monitors.get(loop)
        if other is not None:
            raise LoopMonitorError(
                f"this event loop is already monitored (interval {other.interval:g} s, slow_threshold "
                f"{other.slow_threshold:g} s): one monitor per loop; aioinfer.loop_stats() reads its figures"
            )
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._heartbeat, name="aioinfer-loop-heartbeat")
        self._watcher = threading.Thread(
            target=self._watch, args=(threading.get_ident(),), name=WATCHER_NAME, daemon=True
        )
        self._watcher.start()
        _monitors[loop], self._loop = self, loop
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the heartbeat and the watcher thread (joined: no thread is left); an exception of
        the block goes on as it was."""
        assert self._group is not None and self._watcher is not None
        _monitors.pop(self._loop, None)
        self._loop = None
        self._stop.set()
        self._group.cancel_scope.cancel()
        try:
            await self._group.__aexit__(None, None, None)
        finally:
            self._watcher.join()  # it wakes at once from the stop event

    async def _heartbeat(self) -> None:
        beat = 0
        while True:
            beat += 1
            self._pending = (beat, time.monotonic() + self.interval)
            start = anyio.current_time()
            await anyio.sleep(self.interval)
            self._record(beat, max(0.0, anyio.current_time() - start - self.interval))

    def _record(self, beat: int, lag: float) -> None:
        """Count one beat ``lag`` seconds late; warn if that is a slow event."""
        ms = lag * 1e3
        self._lags.append(ms)
        self._counts[bisect.bisect_left(LAG_BUCKETS, lag)] += 1
        self._lag_sum += lag
        self._max = ms if self._max is None else max(self._max, ms)
        if lag >= self.slow_threshold:
            self._slow += 1
            caught = self._caught
            where = caught[1] if caught is not None and caught[0] == beat else _GONE
            log.warning(
                "the event loop was blocked for %.0f ms (slow_threshold %g ms); %s",
                ms,
                self.slow_threshold * 1e3,
                where,
            )

    def _watch(self, loop_thread: int) -> None:
        """On the watcher thread: take the loop thread's stack once per beat overdue by
        ``slow_threshold``, while the loop is still blocked (it reads only numbers and frames).
        It wakes when the beat it last saw would be that late (a few times a second on a healthy
        loop), not on a fixed poll: a wake-up costs the process CPU time even when idle."""
        taken = 0
        while True:
            pending = self._pending
            beat, due = pending
            late = time.monotonic() - due
            if beat != taken and late >= self.slow_threshold:
                frame = sys._current_frames().get(loop_thread)
                if frame is not None and self._pending is pending:  # still blocked on that beat
                    self._caught, taken = (beat, _where(frame)), beat
                del frame
            elif beat != taken:  # wake when it would be overdue (before the first beat: soon)
                wait = min(self.slow_threshold - late, self.slow_threshold + self.interval)
                if self._stop.wait(wait):
                    return
                continue
            if self._stop.wait(self.slow_threshold):  # its stack is taken: look at the next
                return


_GONE = "it ended before its stack could be taken"
_IDLE = (
    "its thread was then waiting for I/O events, not running a callback: it was starved of the CPU "
    "or the GIL (by other threads or processes)"
)
_EVENT_WAITS = (("selectors.py", "select"), ("_io_epoll.py", "get_events"), ("_io_kqueue.py", "get_events"))


def _where(frame: FrameType) -> str:
    """What the loop thread was doing in ``frame``, its innermost: waiting for I/O events (the
    selector of asyncio, trio's epoll or kqueue), or the stack of what blocks it."""
    code = frame.f_code
    if any(code.co_filename.endswith(file) and code.co_name == name for file, name in _EVENT_WAITS):
        return _IDLE
    stack = "".join(traceback.format_stack(frame, STACK_DEPTH)).rstrip("\n")
    return f"the loop thread was at (most recent call last):\n{stack}"


def monitor_loop(
    interval: float = DEFAULT_INTERVAL, slow_threshold: float = DEFAULT_SLOW_THRESHOLD
) -> LoopMonitor:
    """A monitor of the running loop's lag: ``async with aioinfer.monitor_loop() as monitor: ...``,
    then ``monitor.stats()`` (a :class:`LoopStats`). A heartbeat every ``interval`` seconds;
    a beat ``slow_threshold`` seconds late or more is logged as a warning on ``aioinfer.loop``,
    with the stack the loop thread was blocked in when it could be taken. One per loop: starting a
    second in a loop already monitored raises :class:`~aioinfer.LoopMonitorError`. Works on
    asyncio, uvloop and trio; ``ValueError`` for an interval or threshold that is not > 0."""
    return LoopMonitor(interval, slow_threshold)


def running() -> LoopMonitor | None:
    """The monitor watching the running loop; ``None`` if there is none (or no loop runs here)."""
    try:
        loop = anyio.lowlevel.current_token().native_token
    except RuntimeError:
        return None
    return _monitors.get(loop)


def loop_stats() -> LoopStats | None:
    """The figures of the monitor watching the running loop (:func:`monitor_loop`, or the one
    ``aioinfer serve`` runs), or ``None`` if none watches it."""
    monitor = running()
    return monitor.stats() if monitor is not None else None


@asynccontextmanager
async def monitored() -> AsyncIterator[LoopMonitor]:
    """The monitor of the running loop for this block: the one already watching it, or else a new
    one with the default settings, stopped at the end of the block."""
    monitor = running()
    if monitor is not None:
        yield monitor
        return
    async with monitor_loop() as monitor:
        yield monitor
