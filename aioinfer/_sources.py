"""Frame sources: video files, cameras, streams, image folders and in-memory sequences as async
iterators of :class:`Frame`, decoded on a worker thread so the event loop never waits on OpenCV."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import os
import re
import threading
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio
import cv2
import numpy as np

from ._errors import AioInferError, FrameError, SourceError
from ._images import DEFAULT_MAX_PIXELS, read_image

Direction = Literal["forward", "backward"]
Drop = Literal["oldest"]
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
MAX_DELAY_S = 30.0  # longest wait between two reconnection attempts
STREAM_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True, eq=False)  # compared by identity: it holds an array
class Frame:
    """One frame: its index in the source (frame number in a file, position in a sequence), its
    timestamp in milliseconds (position in a file; time since opening for live sources; ``None``
    for images and in-memory items) and the image (BGR HxWx3 uint8 when decoded by OpenCV)."""

    index: int
    timestamp_ms: float | None
    image: np.ndarray


@dataclass(frozen=True)
class SourceStats:
    """Frames read from the source; frames that could not be read (each raised at its position as
    a :class:`FrameError`); frames and errors delivered to the consumer, dropped by
    ``drop="oldest"``, waiting in the buffer (``read + failed = delivered + dropped + buffered``);
    reconnections of a stream; frames read per second."""

    read: int
    failed: int
    delivered: int
    dropped: int
    buffered: int
    reconnects: int
    fps: float


# -- which frames --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Selection:
    start: int | None
    count: int | None
    step: int
    backward: bool

    def indices(self, total: int) -> range:
        """The indices to deliver from a source of ``total`` frames, in delivery order."""
        if self.backward:
            first = total - 1 if self.start is None else min(self.start, total - 1)
            picked = range(first, -1, -self.step)
        else:
            picked = range(self.start or 0, total, self.step)
        return picked if self.count is None else picked[: self.count]

    def stream(self, items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """``(index, item)`` for the selected items of a source of unknown length (forward only)."""
        start = self.start or 0
        stop: int | None = None
        if self.count is not None:  # right after the last selected item: nothing past it is pulled
            stop = start + (self.count - 1) * self.step + 1 if self.count else start
        return islice(enumerate(items), start, stop, self.step)


# -- readers: blocking, run on the source's thread -------------------------------------------------


class _Reader(Protocol):
    name: str
    total: int | None
    fps: float | None
    reconnects: int

    def open(self, stopped: threading.Event) -> None: ...

    def frames(self, stopped: threading.Event) -> Generator[Frame | FrameError, None, None]: ...

    def close(self) -> None: ...


class _VideoReader:
    """A video file; seeks for ``start`` and for backward reading; ``live`` plays it at its own
    frame rate, as a camera would deliver it."""

    def __init__(self, path: Path, selection: _Selection, live: bool) -> None:
        self.name = str(path)
        self._path = path
        self._selection = selection
        self._live = live
        self._cap: cv2.VideoCapture | None = None
        self._frames = 0
        self.total: int | None = None
        self.fps: float | None = None
        self.reconnects = 0

    def open(self, stopped: threading.Event) -> None:
        if not self._path.is_file():
            raise SourceError(f"video file not found: {self.name!r}")
        cap = cv2.VideoCapture(self.name)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open {self.name!r} as a video (not a video, unsupported codec, or truncated)"
            )
        self._cap = cap
        self._frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.fps = cap.get(cv2.CAP_PROP_FPS) or None
        if self._frames > 0:
            self.total = len(self._selection.indices(self._frames))
        elif self._selection.backward:
            raise SourceError(f"{self.name!r} does not tell its frame count: it cannot be read backward")

    def frames(self, stopped: threading.Event) -> Generator[Frame, None, None]:
        frames = self._indexed() if self._frames > 0 else self._stream()
        return _paced(frames, self.fps, stopped) if self._live and self.fps else frames

    def _indexed(self) -> Generator[Frame, None, None]:
        assert self._cap is not None
        cap, position = self._cap, 0
        for index in self._selection.indices(self._frames):
            if index != position and not (0 < index - position <= 8 and _skip(cap, index - position)):
                cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, image = cap.read()
            if not ok:
                raise SourceError(
                    f"{self.name!r}: cannot decode frame {index} of {self._frames} (truncated or corrupt)"
                )
            position = index + 1
            yield Frame(index, self._timestamp(index), image)

    def _stream(self) -> Generator[Frame, None, None]:
        assert self._cap is not None
        for index, image in self._selection.stream(_until_failure(self._cap)):
            yield Frame(index, self._timestamp(index), image)

    def _timestamp(self, index: int) -> float | None:
        return index * 1000.0 / self.fps if self.fps else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


class _CaptureReader:
    """A camera (by index) or a stream URL; a live stream reconnects with back-off when it fails."""

    def __init__(
        self,
        target: int | str,
        selection: _Selection,
        *,
        live: bool,
        reconnect: int,
        reconnect_delay: float,
        timeout: float,
    ) -> None:
        self.name = f"camera {target}" if isinstance(target, int) else repr(target)
        self._target = target
        self._selection = selection
        self._retries = reconnect if isinstance(target, str) and live else 0
        self._delay = reconnect_delay
        self._timeout_ms = int(timeout * 1000)
        self._live = live
        self._cap: cv2.VideoCapture | None = None
        self._t0 = 0.0
        self.total: int | None = None
        self.fps: float | None = None
        self.reconnects = 0

    def open(self, stopped: threading.Event) -> None:
        for attempt in range(self._retries + 1):
            if attempt:
                self.reconnects += 1
                if stopped.wait(min(self._delay * 2 ** (attempt - 1), MAX_DELAY_S)):
                    return  # the consumer stopped while we waited
            self._cap = self._connect()
            if self._cap is not None and stopped.is_set():  # given up on while connecting
                self._cap.release()
                return
            if self._cap is not None:
                self.fps = self._cap.get(cv2.CAP_PROP_FPS) or None
                self._t0 = self._t0 or time.monotonic()  # timestamps run on across reconnections
                return
        tries = f" after {self._retries + 1} attempts" if self._retries else ""
        raise SourceError(f"cannot open {self.name}{tries}")

    def _connect(self) -> cv2.VideoCapture | None:
        if isinstance(self._target, int):
            cap = cv2.VideoCapture(self._target)
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                self._timeout_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                self._timeout_ms,
            ]
            cap = cv2.VideoCapture(self._target, cv2.CAP_FFMPEG, params)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def frames(self, stopped: threading.Event) -> Generator[Frame, None, None]:
        for index, image in self._selection.stream(self._images(stopped)):
            yield Frame(index, self._timestamp(index), image)

    def _images(self, stopped: threading.Event) -> Iterator[np.ndarray]:
        while not stopped.is_set():
            assert self._cap is not None
            ok, image = self._cap.read()
            if ok:
                yield image
                continue
            if not self._live:
                return
            if not self._retries:
                raise SourceError(f"{self.name} stopped delivering frames")
            self._cap.release()
            self.reconnects += 1
            try:
                self.open(stopped)
            except SourceError:
                raise SourceError(
                    f"{self.name} failed and could not be reopened after {self._retries + 1} attempts"
                ) from None

    def _timestamp(self, index: int) -> float | None:
        if self._live:
            return (time.monotonic() - self._t0) * 1000.0
        return index * 1000.0 / self.fps if self.fps else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


class _SequenceReader:
    """Items of known number: in-memory arrays, or image files decoded on demand. ``listing`` (instead
    of ``items``) lists the items when the source is opened, on the reader's thread. An item that
    ``load`` cannot read (a ``SourceError``) fails alone: its frame is a :class:`FrameError`."""

    def __init__(
        self,
        name: str,
        items: Sequence[Any] | np.ndarray | None,
        load: Callable[[Any], np.ndarray],
        selection: _Selection,
        *,
        listing: Callable[[], Sequence[Any]] | None = None,
    ) -> None:
        self.name = name
        self.fps: float | None = None
        self.reconnects = 0
        self.total: int | None = None
        self._load = load
        self._selection = selection
        self._listing = listing
        self._items: Sequence[Any] | np.ndarray = ()
        self._indices = range(0)
        if items is not None:
            self._select(items)

    def _select(self, items: Sequence[Any] | np.ndarray) -> None:
        self._items = items
        self._indices = self._selection.indices(len(items))
        self.total = len(self._indices)

    def open(self, stopped: threading.Event) -> None:
        if self._listing is not None:
            self._select(self._listing())

    def frames(self, stopped: threading.Event) -> Generator[Frame | FrameError, None, None]:
        for index in self._indices:
            try:
                image = self._load(self._items[index])
            except SourceError as exc:  # one bad file: that frame fails, the next ones still come
                error = FrameError(f"{exc} (frame {index})", index)
                error.__cause__ = exc
                yield error
                continue
            yield Frame(index, None, image)

    def close(self) -> None:
        pass


class _IterableReader:
    """Any sync iterable of arrays, iterated on the source's thread."""

    def __init__(self, items: Iterable[Any], selection: _Selection, live: bool) -> None:
        self.name = source_name(items)
        self.total: int | None = None
        self.fps: float | None = None
        self.reconnects = 0
        self._items = items
        self._selection = selection
        self._live = live
        self._iterator: Iterator[Any] | None = None

    def open(self, stopped: threading.Event) -> None:
        self._iterator = iter(self._items)
        self._t0 = time.monotonic()

    def frames(self, stopped: threading.Event) -> Generator[Frame, None, None]:
        assert self._iterator is not None
        for index, item in self._selection.stream(self._iterator):
            timestamp = (time.monotonic() - self._t0) * 1000.0 if self._live else None
            yield Frame(index, timestamp, item)

    def close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if callable(close):
            close()


def _paced(frames: Iterator[Frame], fps: float, stopped: threading.Event) -> Generator[Frame, None, None]:
    """``frames`` at ``fps`` (by their distance in the file from the first one), never early."""
    start, first = time.monotonic(), None
    for frame in frames:
        first = frame.index if first is None else first
        due = start + abs(frame.index - first) / fps
        if stopped.wait(max(0.0, due - time.monotonic())):
            return
        yield frame


def _skip(cap: cv2.VideoCapture, n: int) -> bool:
    """Grab (without decoding) ``n`` frames; ``False`` if the file ended first."""
    return all(cap.grab() for _ in range(n))


def _until_failure(cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, image = cap.read()
        if not ok:
            return
        yield image


def _read_image(path: str | os.PathLike[str], *, max_pixels: int) -> np.ndarray:
    """The image in file ``path`` (BGR), decoded only if its header declares at most ``max_pixels``
    pixels; raises SourceError naming the file if it cannot be read, is too large or is no image."""
    try:
        return read_image(path, max_pixels=max_pixels)
    except SourceError:
        raise
    except AioInferError as exc:  # too large, not an accepted format, corrupt
        raise SourceError(str(exc)) from exc


def _load_item(item: Any, *, max_pixels: int) -> Any:
    """An item of a sequence source: a path (``str`` or ``os.PathLike``) is an image file, read;
    anything else is the frame itself."""
    return _read_image(item, max_pixels=max_pixels) if isinstance(item, (str, os.PathLike)) else item


def _natural_key(path: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _image_paths(pattern: str) -> list[str]:
    """The files of a folder with an image suffix, except hidden ones (a name starting with ".", such
    as macOS' "._img1.png" metadata, is never a frame), or the paths a glob pattern matches."""
    if os.path.isdir(pattern):
        with os.scandir(pattern) as entries:
            paths = [entry.path for entry in entries if _is_image_file(entry)]
    else:
        paths = glob.glob(pattern)
    if not paths:
        raise SourceError(f"no images found in {pattern!r}")
    return sorted(paths, key=_natural_key)


def _is_image_file(entry: os.DirEntry[str]) -> bool:
    name = entry.name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES and entry.is_file()


# -- the hand-over from the reader thread to the event loop ---------------------------------------


class _Buffer:
    """Frames (or the errors of frames that could not be read) passed from the reader (a thread, or a
    task for async sources) to the consumer on the event loop. Bounded: when full, the reader waits,
    or with ``drop="oldest"`` the oldest buffered frame is discarded and counted."""

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int, drop: bool) -> None:
        self._loop = loop
        self._capacity = capacity
        self._drop = drop
        self._cond = threading.Condition()
        self._items: deque[Frame | FrameError] = deque()
        self._end: BaseException | None = None  # StopAsyncIteration or the reader's error
        self._waiter: asyncio.Future[None] | None = None  # the consumer's, waiting for a frame
        self._room: asyncio.Future[None] | None = None  # the reader task's, waiting for room
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
                room = self._room = self._loop.create_future()
            await room
        return self.put(frame)

    def finish(self, error: BaseException | None) -> None:
        """No more frames: the source ended, or failed with ``error``."""
        with self._cond:
            self._end = error or StopAsyncIteration()
        self._wake()

    def stop(self) -> None:
        """The consumer wants no more frames (thread-safe)."""
        with self._cond:
            self.stopped.set()
            self._items.clear()
            self._cond.notify_all()
        self._wake()

    def _wake(self) -> None:
        with self._cond:
            waiters = [w for w in (self._waiter, self._room) if w is not None]
            self._waiter = self._room = None
        for waiter in waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
                self._loop.call_soon_threadsafe(_resolve, waiter)

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
                waiter = self._waiter = self._loop.create_future()
            await waiter

    def buffered(self) -> int:
        with self._cond:
            return len(self._items)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _run_reader(reader: _Reader, buffer: _Buffer) -> None:
    """Body of the reader thread. However it ends (the source's end, the consumer's stop, any
    exception of the source, even one raised while closing), it releases the capture and tells the
    consumer, handing over the source's exception to be raised at its position."""
    error: BaseException | None = None
    try:
        with contextlib.ExitStack() as closing:
            closing.callback(reader.close)
            frames = closing.enter_context(contextlib.closing(reader.frames(buffer.stopped)))
            for frame in frames:
                if not buffer.put(frame):
                    break
    except BaseException as exc:  # nothing cancels a thread: every exception here is the source's
        error = source_failure(reader.name, exc)
    finally:
        buffer.finish(error)


def _open_reader(reader: _Reader, stopped: threading.Event) -> None:
    """``reader.open`` on a worker thread. Nothing cancels a thread: a CancelledError raised here is
    the source's own, and must not reach the consumer as if the consumer had been cancelled."""
    try:
        reader.open(stopped)
    except asyncio.CancelledError as exc:
        raise source_failure(reader.name, exc) from exc


def source_failure(name: str, exc: BaseException) -> BaseException:
    """What the consumer raises when source ``name`` failed with ``exc`` while nobody cancelled it:
    ``exc`` itself, except a ``CancelledError``, which would pass for a cancellation of the consumer
    or for the end of the stream: a SourceError saying so, chained to it."""
    if not isinstance(exc, asyncio.CancelledError):
        return exc
    error = SourceError(
        f"source {name} raised CancelledError although nobody cancelled it: a failure of the "
        "source, not the end of the stream"
    )
    error.__cause__ = exc
    return error


async def guard_source(
    reading: Awaitable[None], name: str, stopping: Callable[[], bool]
) -> BaseException | None:
    """Await ``reading``, a task's loop over source ``name``; return ``None`` when the source ended,
    else what the consumer must raise (:func:`source_failure`). A CancelledError while ``stopping()``
    is the consumer's own request and is re-raised; otherwise the source raised it on its own."""
    try:
        await reading
    except asyncio.CancelledError as exc:
        if stopping():
            raise
        return source_failure(name, exc)
    except GeneratorExit:  # the task itself is being destroyed
        raise
    except BaseException as exc:  # the source failed: raised to the consumer at this position
        return exc
    return None


# -- the public source ---------------------------------------------------------------------------


class FrameSource(AsyncIterator[Frame]):
    """An async iterator of :class:`Frame` and an async context manager; made by :func:`open_source`.

    Decoding runs on a dedicated thread that reads at most ``buffer`` frames ahead. ``stop()`` (from
    any thread) ends the iteration at the next frame; ``aclose()`` (or leaving ``async with``) also
    waits until the reader thread has released the capture and ended.
    """

    def __init__(
        self,
        reader: _Reader | None,
        items: AsyncIterable[Any] | None,
        *,
        selection: _Selection,
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
        self._buffer: _Buffer | None = None
        self._thread: threading.Thread | None = None
        self._pump: asyncio.Task[None] | None = None
        self._opened = False
        self._stop_requested = False

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
        """Open the source (off the event loop) and start reading. Raises :class:`SourceError`."""
        if self._opened:
            return self
        self._opened = True
        loop = asyncio.get_running_loop()
        self._buffer = _Buffer(loop, self._capacity, self._drop == "oldest")
        if self._stop_requested:  # stopped (or closed) before it was opened: nothing to open
            self._buffer.stop()
            return self
        if self._reader is not None:
            try:
                await anyio.to_thread.run_sync(
                    _open_reader, self._reader, self._buffer.stopped, abandon_on_cancel=True
                )
            except BaseException:
                self._buffer.stop()  # cuts a reconnection back-off short
                self._reader.close()
                raise
            if self._buffer.stopped.is_set():
                self._reader.close()
                return self
            self._thread = threading.Thread(
                target=_run_reader,
                args=(self._reader, self._buffer),
                name=f"aioinfer-source {self.name}",
                daemon=True,
            )
            self._thread.start()
        else:
            assert self._items is not None
            frames = _async_frames(self._items, self._selection, self._live)
            self._pump = asyncio.ensure_future(_pump(frames, self._buffer, self.name))
        return self

    def __aiter__(self) -> FrameSource:
        return self

    async def __anext__(self) -> Frame:
        """The next frame. A frame that could not be read raises its :class:`FrameError` and the
        source goes on: the next call gives the frame after it. At the end, or when the source
        failed, the reader is released before ``StopAsyncIteration`` or the error is raised."""
        await self.open()
        assert self._buffer is not None
        try:
            return await self._buffer.get()
        except (asyncio.CancelledError, FrameError):  # the consumer's cancellation; one bad frame
            raise
        except BaseException:
            await self._release()
            raise

    def stop(self) -> None:
        """Read no further: the iteration ends at the next frame. Safe from any thread."""
        self._stop_requested = True
        if self._buffer is not None:
            self._buffer.stop()

    async def aclose(self) -> None:
        """Stop reading, release the capture and wait for the reader to end. Idempotent."""
        self.stop()  # a source closed before it was opened opens to nothing
        await self._release()

    async def _release(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.wait([self._pump])
        if self._thread is not None:
            await anyio.to_thread.run_sync(self._thread.join)

    def stats(self) -> SourceStats:
        buffer = self._buffer
        if buffer is None:
            return SourceStats(read=0, failed=0, delivered=0, dropped=0, buffered=0, reconnects=0, fps=0.0)
        elapsed = time.monotonic() - buffer.t0
        return SourceStats(
            read=buffer.read,
            failed=buffer.failed,
            delivered=buffer.delivered,
            dropped=buffer.dropped,
            buffered=buffer.buffered(),
            reconnects=self._reader.reconnects if self._reader is not None else 0,
            fps=round(buffer.read / elapsed, 3) if elapsed > 0 else 0.0,
        )

    async def __aenter__(self) -> FrameSource:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        buffer = getattr(self, "_buffer", None)
        if buffer is not None:
            buffer.stop()  # the reader thread sees it, releases the capture and ends

    def __repr__(self) -> str:
        return f"<FrameSource {self.name}>"


async def _async_frames(
    items: AsyncIterable[Any], selection: _Selection, live: bool
) -> AsyncGenerator[Frame, None]:
    """The selected items of an async iterable as frames; closes the iterable when done."""
    start, step, left = selection.start or 0, selection.step, selection.count
    t0 = time.monotonic()
    iterator = items.__aiter__()
    try:
        index = 0
        while left != 0:
            item = await iterator.__anext__()
            if index >= start and (index - start) % step == 0:
                yield Frame(index, (time.monotonic() - t0) * 1000.0 if live else None, item)
                left = None if left is None else left - 1
            index += 1
    except StopAsyncIteration:
        return
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def _pump(frames: AsyncGenerator[Frame, None], buffer: _Buffer, name: str) -> None:
    """The reader task of an async source: what the reader thread is to the others. However it ends,
    it tells the consumer, handing over the source's error; only the consumer's stop cancels it."""
    error: BaseException | None = None
    try:
        error = await guard_source(_hand_over(frames, buffer), name, buffer.stopped.is_set)
    finally:
        buffer.finish(error)


async def _hand_over(frames: AsyncGenerator[Frame, None], buffer: _Buffer) -> None:
    async with contextlib.aclosing(frames):
        async for frame in frames:
            if not await buffer.aput(frame):
                return


def open_source(
    source: int | str | os.PathLike[str] | Iterable[Any] | AsyncIterable[Any],
    *,
    start: int | None = None,
    count: int | None = None,
    step: int = 1,
    direction: Direction = "forward",
    drop: Drop | None = None,
    buffer: int = 2,
    live: bool | None = None,
    reconnect: int = 3,
    reconnect_delay: float = 0.5,
    timeout: float = 10.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> FrameSource:
    """Frames of ``source`` as an async iterator (use ``async with``).

    ``source``: a video file; a camera index (``0``); a stream URL (``rtsp://``, ``http://`` ...);
    an image folder (its image files, natural-sorted; hidden files, whose names start with ".", are
    skipped) or a glob pattern (natural-sorted); a file of one image; a sequence of arrays or of
    image paths; any sync iterable (iterated on the reader thread) or async iterable of arrays.

    ``start`` (default: the first frame in ``direction``), ``count`` (default: all) and ``step``
    pick the frames; ``direction="backward"`` reads down from ``start`` (sources of known length).
    ``buffer`` frames are read ahead at most. ``drop="oldest"`` never makes the source wait: when the
    buffer is full the oldest frame is discarded and counted in ``stats().dropped`` (for cameras and
    streams, so latency stays bounded). ``live`` (default: true for cameras and URLs) makes a failing
    stream reconnect ``reconnect`` times, waiting ``reconnect_delay`` seconds doubled at each try,
    stamps frames of streams and iterables with the time since opening, and plays a video file at its
    own frame rate, as a camera would; ``timeout`` bounds opening and reading a stream.
    A source that cannot be opened or decoded raises :class:`SourceError` naming it. An image file
    of a folder, glob or list that cannot be read fails alone: its frame raises a :class:`FrameError`
    naming the file (``map(..., return_exceptions=True)`` yields it as that frame's error) and the
    next frames keep coming; so does an image file whose header declares more than ``max_pixels``
    pixels (refused before decoding). A source that raises ``CancelledError`` on its own fails with a
    SourceError; it never passes for the end of the stream or for a cancellation of the consumer.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    if start is not None and start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
    if drop not in (None, "oldest"):
        raise ValueError(f"drop must be None or 'oldest', got {drop!r}")
    if buffer < 1:
        raise ValueError(f"buffer must be >= 1, got {buffer}")
    selection = _Selection(start, count, step, direction == "backward")
    is_capture = is_live(source)
    live = is_capture if live is None else live
    reader = _reader(source, selection, is_capture, live, reconnect, reconnect_delay, timeout, max_pixels)
    items = source if reader is None else None
    if selection.backward and (reader is None or isinstance(reader, (_CaptureReader, _IterableReader))):
        raise ValueError(f"direction='backward' needs a source of known length, not {_describe(source)}")
    return FrameSource(reader, items, selection=selection, drop=drop, buffer=buffer, live=live)  # type: ignore[arg-type]


def is_live(source: object) -> bool:
    """Whether ``source`` is live by default: a camera index or a stream URL (``rtsp://`` ...)."""
    return isinstance(source, int) or (isinstance(source, str) and STREAM_URL.match(source) is not None)


def _reader(
    source: Any,
    selection: _Selection,
    is_capture: bool,
    live: bool,
    reconnect: int,
    delay: float,
    timeout: float,
    max_pixels: int,
) -> _Reader | None:
    if is_capture:
        return _CaptureReader(
            source, selection, live=live, reconnect=reconnect, reconnect_delay=delay, timeout=timeout
        )
    read_image_file = functools.partial(_read_image, max_pixels=max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if Path(path).suffix.lower() in IMAGE_SUFFIXES and not glob.has_magic(path):
            return _SequenceReader(path, [path], read_image_file, selection)
        if os.path.isdir(path) or glob.has_magic(path):
            return _SequenceReader(
                path, None, read_image_file, selection, listing=functools.partial(_image_paths, path)
            )
        return _VideoReader(Path(path), selection, live)
    if isinstance(source, np.ndarray) and source.ndim in (2, 3) and source.dtype == np.uint8:
        raise TypeError("a single image is not a source: pass [image], or a 4-D array of frames")
    if isinstance(source, (Sequence, np.ndarray)):
        load = functools.partial(_load_item, max_pixels=max_pixels)
        return _SequenceReader(f"<{type(source).__name__} of {len(source)}>", source, load, selection)
    if isinstance(source, AsyncIterable):
        return None
    if isinstance(source, Iterable):
        return _IterableReader(source, selection, live)
    raise TypeError(
        f"cannot read frames from {_describe(source)}: expected a path, URL, camera index or iterable"
    )


def source_name(items: object) -> str:
    """How a source is named in messages: a FrameSource's name, ``<async_generator frames>`` for a
    generator (by its function), ``<deque>`` for another iterable."""
    if isinstance(items, FrameSource):
        return items.name
    qualname = getattr(items, "__qualname__", None)  # generators carry their function's
    kind = type(items).__name__
    return f"<{kind} {qualname}>" if isinstance(qualname, str) else f"<{kind}>"


def _describe(source: Any) -> str:
    return repr(source) if isinstance(source, (int, str)) else f"a {type(source).__name__}"
