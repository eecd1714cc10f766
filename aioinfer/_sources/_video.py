"""Where a frame is read from a video file: by index (seeking for ``start`` and for reading
backward) when the container tells its frame count, else as a stream."""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from pathlib import Path

import cv2
import numpy as np

from .._errors import SourceError
from ._frame import Frame
from ._pacing import paced
from ._reader import OpenCVReader
from ._selection import Selection

MAX_GRAB = 8  # frames grabbed (not decoded) rather than seeking, when the next index is that close


class VideoReader(OpenCVReader):
    """A video file; seeks for ``start`` and for backward reading; ``live`` plays it at its own
    frame rate, as a camera would deliver it."""

    def __init__(self, path: Path, selection: Selection, live: bool) -> None:
        super().__init__(str(path), selection, live)
        self._path = path
        self._frames = 0

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
        return paced(frames, self.fps, stopped) if self._live and self.fps else frames

    def _indexed(self) -> Generator[Frame, None, None]:
        assert self._cap is not None
        cap, position = self._cap, 0
        for index in self._selection.indices(self._frames):
            ahead = index - position
            if index != position and not (0 < ahead <= MAX_GRAB and _skip(cap, ahead)):
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


def _skip(cap: cv2.VideoCapture, n: int) -> bool:
    """Grab (without decoding) ``n`` frames; ``False`` if the file ended first."""
    return all(cap.grab() for _ in range(n))


def _until_failure(cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, image = cap.read()
        if not ok:
            return
        yield image
