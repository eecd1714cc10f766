"""Where a frame is read from a camera (by index) or a stream URL, reconnecting a live stream with
doubling back-off when it fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator

import cv2
import numpy as np

from .._errors import SourceError
from ._frame import Frame, ms_since
from ._reader import OpenCVReader
from ._selection import Selection

MAX_DELAY_S = 30.0  # longest wait between two reconnection attempts


class CaptureReader(OpenCVReader):
    """A camera (by index) or a stream URL; a live stream reconnects with back-off when it fails."""

    def __init__(
        self,
        target: int | str,
        selection: Selection,
        *,
        live: bool,
        reconnect: int,
        reconnect_delay: float,
        timeout: float,
    ) -> None:
        super().__init__(f"camera {target}" if isinstance(target, int) else repr(target), selection, live)
        self._target = target
        self._retries = reconnect if isinstance(target, str) and live else 0
        self._delay = reconnect_delay
        self._timeout_ms = int(timeout * 1000)
        self._t0 = 0.0

    def open(self, stopped: threading.Event) -> None:
        """Connect, retrying ``reconnect`` times (a live stream) with doubling back-off; returns
        early, holding nothing, once ``stopped`` is set. SourceError when every attempt failed."""
        for attempt in range(self._retries + 1):
            if attempt:
                if stopped.wait(min(self._delay * 2 ** (attempt - 1), MAX_DELAY_S)):
                    return  # the consumer stopped while we waited
                self.reconnect_attempts += 1
            self._cap = self._connect()
            if self._cap is not None and stopped.is_set():  # given up on while connecting
                self.close()
                return
            if self._cap is not None:
                self.fps = self._cap.get(cv2.CAP_PROP_FPS) or None
                self._t0 = self._t0 or time.monotonic()  # timestamps run on across reconnections
                return
            if stopped.is_set():
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
            self.close()
            self._reopen(stopped)

    def _reopen(self, stopped: threading.Event) -> None:
        """After an outage: connect again (each try a reconnection attempt); one more outage
        survived once connected."""
        self.reconnect_attempts += 1  # the first try after an outage does not wait
        try:
            self.open(stopped)
        except SourceError:
            raise SourceError(
                f"{self.name} failed and could not be reopened after {self._retries + 1} attempts"
            ) from None
        if self._cap is not None:
            self.reconnects += 1

    def _timestamp(self, index: int) -> float | None:
        """Live: the time since opening; else the position from the nominal frame rate."""
        if self._live:
            return ms_since(self._t0)
        return super()._timestamp(index)
