"""Where a frame is paced: a video file played at its own frame rate, as a camera would deliver it."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator

from ._frame import Frame


def paced(frames: Iterator[Frame], fps: float, stopped: threading.Event) -> Generator[Frame, None, None]:
    """``frames`` at ``fps`` (by their distance in the file from the first one), never early; ends
    as soon as ``stopped`` is set."""
    start, first = time.monotonic(), None
    for frame in frames:
        first = frame.index if first is None else first
        due = start + abs(frame.index - first) / fps
        if stopped.wait(max(0.0, due - time.monotonic())):
            return
        yield frame
