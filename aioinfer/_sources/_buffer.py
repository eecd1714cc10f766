"""Where a frame waits between the reader (the source's thread, or the pump task of an async
source) and the consumer on the event loop: a bounded hand-over that makes the reader wait, or
drops the oldest frame with ``drop="oldest"``."""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from typing import Literal

import anyio

from .._bridge import Bridge, Future
from .._errors import FrameError
from ._frame import Frame

Drop = Literal["oldest"]


class Buffer:
    """Frames (or the errors of frames that could not be read) passed from the reader (a thread, or a
    task for async sources) to the consumer on the event loop. Bounded: when full, the reader waits,
    or with ``drop="oldest"`` the oldest buffered frame is discarded and counted."""

    def __init__(self, bridge: Bridge, capacity: int, drop: bool) -> None:
        self.bridge = bridge  # the loop (or run) of the consumer
        # trio resumes a waiter whose result came before its cancellation: it checks again
        self._recheck = bridge.backend != "asyncio"
        self._capacity = capacity
        self._drop = drop
        self._cond = threading.Condition()
        self._items: deque[Frame | FrameError] = deque()
        self._end: BaseException | None = None  # StopAsyncIteration or the reader's error
        self._waiter: Future[None] | None = None  # the consumer's, waiting for a frame
        self._room: Future[None] | None = None  # the reader task's, waiting for room
        self._open = False  # the reader has opened its source
        self.stopped = threading.Event()
        self.read = self.failed = self.delivered = self.dropped = 0
        self.t0 = time.monotonic()

    # reader side (any thread)

    def put(self, frame: Frame | FrameError) -> bool:
        """Hand over one frame, or the error of one that could not be read; ``False`` once the
        consumer has stopped."""
        with self._cond:
            while not self._drop and len(self._items) >= self._capacity and not self.stopped.is_set():
                self._cond.wait()
            if self.stopped.is_set():
                return False
            if len(self._items) >= self._capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(frame)
            if isinstance(frame, FrameError):
                self.failed += 1
            else:
                self.read += 1
        self._wake()
        return True

    async def aput(self, frame: Frame) -> bool:
        """``put`` for a reader task on the event loop: waits for room without blocking the loop."""
        while True:
            with self._cond:
                if self._drop or self.stopped.is_set() or len(self._items) < self._capacity:
                    break
                room = self._room = self.bridge.future()
            await self._wait(room)
        return self.put(frame)

    def opened(self) -> bool:
        """The reader has opened its source; ``False`` if the consumer stopped meanwhile."""
        with self._cond:
            self._open = True
        self._wake()
        return not self.stopped.is_set()

    def finish(self, error: BaseException | None) -> None:
        """No more frames: the source ended, or failed with ``error``."""
        with self._cond:
            self._end = error or StopAsyncIteration()
        self._wake()

    def stop(self) -> None:
        """The consumer wants no more frames (thread-safe); those still buffered are dropped (and
        counted: ``read + failed = delivered + dropped + buffered`` holds after a stop too)."""
        with self._cond:
            self.stopped.set()
            self.dropped += len(self._items)
            self._items.clear()
            self._cond.notify_all()
        self._wake()

    def _wake(self) -> None:
        with self._cond:
            waiters = [w for w in (self._waiter, self._room) if w is not None]
            self._waiter = self._room = None
        for waiter in waiters:  # a loop that is gone has nobody waiting: nothing to wake
            self.bridge.call_soon_threadsafe(functools.partial(_resolve, waiter))

    # event loop side

    async def get(self) -> Frame:
        """The next frame; raises the FrameError of a frame that could not be read at its position,
        ``StopAsyncIteration`` at the end, or the reader's error."""
        while True:
            with self._cond:
                if self._items:
                    frame = self._items.popleft()
                    self.delivered += 1
                    self._cond.notify()
                    room, self._room = self._room, None
                    if room is not None:
                        _resolve(room)
                    if isinstance(frame, FrameError):
                        raise frame
                    return frame
                if self.stopped.is_set():
                    raise StopAsyncIteration
                if self._end is not None:
                    raise self._end
                waiter = self._waiter = self.bridge.future()
            await self._wait(waiter)

    async def _wait(self, waiter: Future[None]) -> None:
        """Wait to be woken; a cancelled caller takes nothing from the buffer (on trio, whose
        wake-up may have come before the cancellation, it checks it once more), so the frame stays
        for the next consumer."""
        await waiter
        if self._recheck:
            await anyio.lowlevel.checkpoint_if_cancelled()

    async def wait_opened(self) -> None:
        """Wait until the reader has opened its source, ended, or the consumer stopped (whichever
        comes first: a stop never waits for an open). Raises the reader's error if it failed before
        opening."""
        while True:
            with self._cond:
                if self._open or self.stopped.is_set():
                    return
                if self._end is not None:
                    if isinstance(self._end, StopAsyncIteration):
                        return
                    raise self._end
                waiter = self._waiter = self.bridge.future()
            await waiter

    def buffered(self) -> int:
        with self._cond:
            return len(self._items)


def _resolve(waiter: Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
