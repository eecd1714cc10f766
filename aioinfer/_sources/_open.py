"""Where a source is dispatched: :func:`open_source` checks the selection and picks the reader
that suits what it is given (a path, a URL, a camera index, a sequence, an iterable)."""

from __future__ import annotations

import functools
import glob
import os
import re
from collections.abc import AsyncIterable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._images import DEFAULT_MAX_PIXELS
from ._buffer import Drop
from ._capture import CaptureReader
from ._frame_source import FrameSource, source_name
from ._image_files import image_paths, is_image_path, load_item, read_image_file
from ._iterables import IterableReader
from ._reader import Reader
from ._selection import Direction, Selection
from ._sequence import SequenceReader
from ._video import VideoReader

STREAM_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


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
    own frame rate, as a camera would; ``timeout`` bounds opening and reading a stream. After an
    outage the stream is connected again at once, then with the back-off; ``stats().reconnects``
    counts the outages survived, ``stats().reconnect_attempts`` the connections tried after the
    first. Stopping never waits for a hung open or read (see :class:`FrameSource`).
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
    selection = Selection(start, count, step, direction == "backward")
    is_capture = is_live(source)
    live = is_capture if live is None else live
    reader = _reader(source, selection, is_capture, live, reconnect, reconnect_delay, timeout, max_pixels)
    items = source if reader is None else None
    if selection.backward and (reader is None or isinstance(reader, (CaptureReader, IterableReader))):
        raise ValueError(f"direction='backward' needs a source of known length, not {_describe(source)}")
    return FrameSource(reader, items, selection=selection, drop=drop, buffer=buffer, live=live)  # type: ignore[arg-type]


def is_live(source: object) -> bool:
    """Whether ``source`` is live by default: a camera index or a stream URL (``rtsp://`` ...)."""
    return isinstance(source, int) or (isinstance(source, str) and STREAM_URL.match(source) is not None)


def _reader(
    source: Any,
    selection: Selection,
    is_capture: bool,
    live: bool,
    reconnect: int,
    delay: float,
    timeout: float,
    max_pixels: int,
) -> Reader | None:
    """The reader of ``source``; ``None`` for an async iterable (read by a task on the loop)."""
    if is_capture:
        return CaptureReader(
            source, selection, live=live, reconnect=reconnect, reconnect_delay=delay, timeout=timeout
        )
    read_file = functools.partial(read_image_file, max_pixels=max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if is_image_path(path):
            return SequenceReader(path, [path], read_file, selection)
        if os.path.isdir(path) or glob.has_magic(path):
            listing = functools.partial(image_paths, path)
            return SequenceReader(path, None, read_file, selection, listing=listing)
        return VideoReader(Path(path), selection, live)
    if isinstance(source, np.ndarray) and source.ndim in (2, 3) and source.dtype == np.uint8:
        raise TypeError("a single image is not a source: pass [image], or a 4-D array of frames")
    if isinstance(source, (Sequence, np.ndarray)):
        load = functools.partial(load_item, max_pixels=max_pixels)
        return SequenceReader(f"<{type(source).__name__} of {len(source)}>", source, load, selection)
    if isinstance(source, AsyncIterable):
        return None
    if isinstance(source, Iterable):
        return IterableReader(source_name(source), source, selection, live)
    raise TypeError(
        f"cannot read frames from {_describe(source)}: expected a path, URL, camera index or iterable"
    )


def _describe(source: Any) -> str:
    return repr(source) if isinstance(source, (int, str)) else f"a {type(source).__name__}"
