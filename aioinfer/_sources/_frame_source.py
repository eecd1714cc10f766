"""The public source: :class:`FrameSource`, an async iterator of frames that starts its reader when
opened and hands the frames over through the buffer; and how a source is named in messages."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import anyio
from anyio.abc import AsyncResource

from .. import _bridge
from .._errors import FrameError
from .._spawn import Task, spawn, wait
from ._buffer import Buffer, Drop
from ._frame import Frame, SourceStats
from ._iterables import async_frames
from ._pump import pump, run_reader
from ._reader import Reader
from ._selection import Selection

STOP_GRACE_S = 1.0  # how long a stop waits for a reader thread stuck in OpenCV before leaving it


class FrameSource(AsyncIterator[Frame], AsyncResource):
    """An async iterator of :class:`Frame` and an async context manager; made by :func:`open_source`.

    Opening and decoding run on a dedicated thread that reads at most ``buffer`` frames ahead.
    ``stop()`` (from any thread) ends the iteration at the next frame, an opening in progress
    included; ``aclose()`` (or leaving ``async with``) also waits until the reader thread has
    released the capture and ended, except a thread stuck in OpenCV (a hung open or read that it
    cannot interrupt), waited for ``STOP_GRACE_S`` at most: it releases the capture on its own thread
    and ends as soon as OpenCV returns.
    """

    def __init__(
        self,
        reader: Reader | None,
        items: AsyncIterable[Any] | None,
        *,
        selection: Selection,
        drop: Drop | None,
        buffer: int,
        live: bool,
    ) -> None:
        self._reader = reader
        self._items = items
        self._selection = selection
        self._drop = drop
        self._capacity = buffer
        self._live = live
        self._buffer: Buffer | None = None
        self._thread: threading.Thread | None = None
        self._pump: Task | None = None
        self._opened = False
        self._stop_requested = False
        self._left_running = False  # the reader thread, stuck in OpenCV, was left to end on its own

    @property
    def name(self) -> str:
        """The source as named in error messages."""
        return self._reader.name if self._reader is not None else source_name(self._items)

    @property
    def total(self) -> int | None:
        """The number of frames to come, when the source tells it (known once opened for videos)."""
        return self._reader.total if self._reader is not None else None

    @property
    def fps(self) -> float | None:
        """The source's nominal frame rate, when it tells it (once opened)."""
        return self._reader.fps if self._reader is not None else None

    def __len__(self) -> int:
        total = self.total
        if total is None:
            when = "" if self._opened else " before it is opened (use `async with`)"
            raise TypeError(f"the number of frames of {self.name} is not known{when}")
        return total

    async def open(self) -> FrameSource:
        """Open the source (off the event loop) and start reading. Raises :class:`SourceError`; from
        then on the source belongs to the running loop (or run): :class:`EventLoopError` elsewhere."""
        if self._opened:
            return self
        self._opened = True
        bridge = _bridge.current()
        self._buffer = Buffer(bridge, self._capacity, self._drop == "oldest")
        if self._stop_requested:  # stopped (or closed) before it was opened: nothing to open
            self._buffer.stop()
            return self
        if self._reader is not None:
            await self._start_thread(self._reader, self._buffer)
        else:
            assert self._items is not None
            frames = async_frames(self._items, self._selection, self._live)
            self._pump = spawn(bridge, pump, frames, self._buffer, self.name)
        return self

    async def _start_thread(self, reader: Reader, buffer: Buffer) -> None:
        """Start the reader thread, which opens ``reader``, and wait until it has opened it, failed
        (its error raised here, the thread ended) or the consumer stopped (then not a moment longer:
        a hung open is left to the thread, which releases what it holds once OpenCV returns)."""
        self._thread = threading.Thread(
            target=run_reader, args=(reader, buffer), name=f"aioinfer-source {self.name}", daemon=True
        )
        self._thread.start()
        try:
            await buffer.wait_opened()
        except BaseException:
            buffer.stop()  # cuts a reconnection back-off short; the thread ends on its own
            await self._release()
            raise

    def __aiter__(self) -> FrameSource:
        return self

    async def __anext__(self) -> Frame:
        """The next frame. A frame that could not be read raises its :class:`FrameError` and the
        source goes on: the next call gives the frame after it. At the end, or when the source
        failed, the reader is released before ``StopAsyncIteration`` or the error is raised."""
        await self.open()
        buffer = self._buffer
        assert buffer is not None
        buffer.bridge.check("this frame source", "opened")
        try:
            return await buffer.get()
        except FrameError:  # one bad frame
            raise
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):  # the consumer's cancellation
                raise
            await self._release()
            raise

    def stop(self) -> None:
        """Read no further: the iteration ends at the next frame. Safe from any thread."""
        self._stop_requested = True
        if self._buffer is not None:
            self._buffer.stop()

    async def aclose(self) -> None:
        """Stop reading, release the capture and wait for the reader to end (even if the caller is
        being cancelled). Idempotent."""
        self.stop()  # a source closed before it was opened opens to nothing
        if self._buffer is not None:
            self._buffer.bridge.check("this frame source", "opened")
        await self._release()

    async def _release(self) -> None:
        """Wait for the reader to end, at most ``STOP_GRACE_S`` once stopped: a reader thread
        still alive then is stuck in OpenCV (an open or a read it cannot interrupt) and is left to
        end on its own, releasing the capture on its thread as soon as OpenCV returns. Shielded from
        the caller's cancellation (this wait is bounded): a cancelled consumer still leaves nothing
        running behind."""
        with anyio.CancelScope(shield=True):
            if self._pump is not None:
                self._pump.cancel()
                await wait([self._pump])
            if self._thread is not None and self._buffer is not None:
                await self._join(self._thread, self._buffer.stopped)

    async def _join(self, thread: threading.Thread, stopped: threading.Event) -> None:
        while thread.is_alive() and not stopped.is_set():  # the source ended or failed: it ends
            await anyio.to_thread.run_sync(thread.join, STOP_GRACE_S, abandon_on_cancel=True)
        if thread.is_alive() and not self._left_running:
            await anyio.to_thread.run_sync(thread.join, STOP_GRACE_S, abandon_on_cancel=True)
            self._left_running = thread.is_alive()  # stuck: not waited for again

    def stats(self) -> SourceStats:
        """Frames read, failed, delivered, dropped and buffered so far; outages survived and
        reconnection attempts; read fps."""
        buffer = self._buffer
        if buffer is None:
            return SourceStats(
                read=0,
                failed=0,
                delivered=0,
                dropped=0,
                buffered=0,
                reconnects=0,
                reconnect_attempts=0,
                fps=0.0,
            )
        elapsed = time.monotonic() - buffer.t0
        return SourceStats(
            read=buffer.read,
            failed=buffer.failed,
            delivered=buffer.delivered,
            dropped=buffer.dropped,
            buffered=buffer.buffered(),
            reconnects=self._reader.reconnects if self._reader is not None else 0,
            reconnect_attempts=self._reader.reconnect_attempts if self._reader is not None else 0,
            fps=round(buffer.read / elapsed, 3) if elapsed > 0 else 0.0,
        )

    async def __aenter__(self) -> FrameSource:
        return await self.open()

    def __del__(self) -> None:
        buffer = getattr(self, "_buffer", None)
        if buffer is not None:
            buffer.stop()  # the reader thread sees it, releases the capture and ends

    def __repr__(self) -> str:
        return f"<FrameSource {self.name}>"


def source_name(items: object) -> str:
    """How a source is named in messages: a FrameSource's name, ``<async_generator frames>`` for a
    generator (by its function), ``<deque>`` for another iterable."""
    if isinstance(items, FrameSource):
        return items.name
    qualname = getattr(items, "__qualname__", None)  # generators carry their function's
    kind = type(items).__name__
    return f"<{kind} {qualname}>" if isinstance(qualname, str) else f"<{kind}>"
