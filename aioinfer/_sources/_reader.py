"""What a reader is: the blocking half of a source, which opens it and reads its frames on the
source's own thread (see ``_pump``); and the base of the two readers that go through an OpenCV
``VideoCapture`` (video files, cameras and streams)."""

from __future__ import annotations

import threading
from collections.abc import Generator

import cv2

from .._errors import FrameError
from ._frame import Frame
from ._selection import Selection


class Reader:
    """Reads the frames ``selection`` picks from the source ``name`` (as named in messages).
    ``total`` (frames to come), ``fps`` (nominal rate) are known once opened, if the source tells;
    ``reconnects`` counts a stream's outages survived, ``reconnect_attempts`` its connection attempts
    after the first. Its methods block: they run on the source's own thread, off the loop."""

    total: int | None = None
    fps: float | None = None
    reconnects: int = 0
    reconnect_attempts: int = 0

    def __init__(self, name: str, selection: Selection) -> None:
        self.name = name
        self._selection = selection

    def open(self, stopped: threading.Event) -> None:
        """Open the source (``stopped`` is set when the consumer gives up); SourceError if it
        cannot be."""
        raise NotImplementedError

    def frames(self, stopped: threading.Event) -> Generator[Frame | FrameError, None, None]:
        """The selected frames, or the FrameError of one that could not be read, until the source
        ends or ``stopped`` is set; raises the source's failure."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what ``open`` took; called once however reading ended. Nothing by default."""


class OpenCVReader(Reader):
    """A reader that holds an OpenCV ``VideoCapture`` (released by ``close``); ``live`` is as given
    to ``open_source``."""

    def __init__(self, name: str, selection: Selection, live: bool) -> None:
        super().__init__(name, selection)
        self._live = live
        self._cap: cv2.VideoCapture | None = None

    def _timestamp(self, index: int) -> float | None:
        """The position of frame ``index`` in milliseconds, from the nominal frame rate."""
        return index * 1000.0 / self.fps if self.fps else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
