"""Sinks: an annotated video and JSON Lines of predictions, written on a worker thread."""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import anyio
import cv2
import numpy as np
from anyio.abc import AsyncResource

from . import _bridge

FOURCC_BY_SUFFIX = {".avi": "MJPG", ".mkv": "MJPG", ".mp4": "mp4v", ".mov": "mp4v"}
DEFAULT_FPS = 25.0


class _Sink(AsyncResource):
    """Serialises writes (in call order) on a worker thread; an async context manager. It belongs
    to the loop (or run) of its first write or close: :class:`EventLoopError` from any other."""

    def __init__(self) -> None:
        self._bridge: _bridge.Bridge | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._closed = False
        self.written = 0

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._closed:
            raise ValueError(f"{self!r} is closed")
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._bound())

    def _bound(self) -> anyio.CapacityLimiter:
        """The one-thread limiter of the sink's loop, made at its first use there."""
        if self._limiter is None:
            self._bridge, self._limiter = _bridge.current(), anyio.CapacityLimiter(1)
        else:
            assert self._bridge is not None
            self._bridge.check(repr(self), "first used")
        return self._limiter

    async def aclose(self) -> None:
        """Flush and close the file. Idempotent."""
        if not self._closed:
            await anyio.to_thread.run_sync(self._close, limiter=self._bound())
            self._closed = True

    @abc.abstractmethod
    def _close(self) -> None:
        """Runs on the worker thread."""


class VideoSink(_Sink):
    """A video file written with ``cv2.VideoWriter``, opened at the first frame with that frame's size.

    ``fps`` defaults to 25; ``fourcc`` to one that suits the suffix (``.avi``/``.mkv``: MJPG,
    ``.mp4``/``.mov``: mp4v). Frames are BGR uint8 HxWx3 (grayscale HxW is converted); a frame of
    another size than the first raises ``ValueError``.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, fps: float | None = None, fourcc: str | None = None
    ) -> None:
        super().__init__()
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if fourcc is None and suffix not in FOURCC_BY_SUFFIX:
            raise ValueError(
                f"no default codec for {self.path.name!r}: "
                f"use one of {sorted(FOURCC_BY_SUFFIX)} or pass fourcc"
            )
        self.fourcc = fourcc or FOURCC_BY_SUFFIX[suffix]
        self.fps = fps or DEFAULT_FPS
        self._writer: cv2.VideoWriter | None = None
        self._size = (0, 0)  # width, height of the first frame

    async def write(self, image: np.ndarray) -> None:
        """Append one frame (waits, off the event loop, for the previous write to finish)."""
        await self._run(self._write, image)
        self.written += 1

    def _write(self, image: np.ndarray) -> None:
        image = _bgr(image)
        size = (image.shape[1], image.shape[0])
        if self._writer is None:
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*self.fourcc), self.fps, size)
            if not writer.isOpened():
                raise OSError(f"cannot write video {str(self.path)!r} with codec {self.fourcc!r}")
            self._writer, self._size = writer, size
        elif size != self._size:
            raise ValueError(
                f"frame of size {size[0]}x{size[1]} in a video of {self._size[0]}x{self._size[1]}"
            )
        self._writer.write(image)

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.release()

    def __repr__(self) -> str:
        return f"<VideoSink {str(self.path)!r}>"


class JsonlSink(_Sink):
    """JSON Lines: one object per ``write``. NumPy arrays and scalars become lists and numbers;
    objects with ``to_dict()`` (``Outputs``, predictions) are written as their dict."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self._file: IO[str] | None = None

    async def write(self, record: Mapping[str, Any]) -> None:
        """Append one record as one line (serialised and written off the event loop)."""
        await self._run(self._write, record)
        self.written += 1

    def _write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, default=_jsonable, ensure_ascii=False)
        if self._file is None:
            self._file = self.path.open("w", encoding="utf-8")
        self._file.write(line + "\n")

    def _close(self) -> None:
        if self._file is None:
            self.path.write_text("", encoding="utf-8")
        else:
            self._file.close()

    def __repr__(self) -> str:
        return f"<JsonlSink {str(self.path)!r}>"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _bgr(image: np.ndarray) -> np.ndarray:
    if (
        image.dtype != np.uint8
        or image.ndim not in (2, 3)
        or (image.ndim == 3 and image.shape[2] not in (1, 3))
    ):
        raise ValueError(f"a video frame must be uint8 HxW or HxWx3, got {image.dtype}{list(image.shape)}")
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 or image.shape[2] == 1 else image
