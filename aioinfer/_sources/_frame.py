"""What a source delivers: a :class:`Frame` with its index and timestamp, and :class:`SourceStats`."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


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
    a stream's outages survived (``reconnects``: it failed and was opened again) and connection
    attempts after the first (``reconnect_attempts``, failed ones included, retries of the first
    opening too); frames read per second."""

    read: int
    failed: int
    delivered: int
    dropped: int
    buffered: int
    reconnects: int
    reconnect_attempts: int
    fps: float


def ms_since(t0: float) -> float:
    """The timestamp of a live frame: milliseconds since ``t0`` (a ``time.monotonic()``)."""
    return (time.monotonic() - t0) * 1000.0
