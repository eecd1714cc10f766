"""Counters and latency percentiles of a request pool."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

LATENCY_WINDOW = 2048  # most recent jobs kept for percentiles


@dataclass(frozen=True)
class Latency:
    """Percentiles in milliseconds over the most recent jobs (``None`` before the first)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None

    @classmethod
    def of(cls, samples: deque[float]) -> Latency:
        if not samples:
            return cls()
        p50, p95, p99 = np.percentile(np.fromiter(samples, float, len(samples)), [50, 95, 99])
        return cls(round(float(p50), 4), round(float(p95), 4), round(float(p99), 4))


@dataclass(frozen=True)
class Stats:
    """A snapshot of a model's work: ``submitted == completed + failed + cancelled + in_flight + queued``.

    ``in_flight`` counts jobs on the device (``running``, never more than ``num_requests``) and
    those finished but not yet delivered to their caller;
    ``cancelled`` includes timeouts; ``rejected`` (QueueFull) jobs were never submitted."""

    submitted: int
    completed: int
    failed: int
    cancelled: int
    rejected: int
    in_flight: int
    running: int
    queued: int
    num_requests: int
    lanes: int = 1  # compiled copies of the model in use, one per recurring input shape (load's shape_lanes)
    device_ms: Latency = field(default_factory=Latency)
    await_ms: Latency = field(default_factory=Latency)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return asdict(self)


class Recorder:
    """Mutable counters behind :class:`Stats`; touched only on the event loop."""

    def __init__(self) -> None:
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.rejected = 0
        self.device_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.await_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def snapshot(self, running: int, queued: int, num_requests: int, lanes: int = 1) -> Stats:
        """Counters now; ``in_flight`` is every submitted job neither queued nor settled."""
        settled = self.completed + self.failed + self.cancelled
        return Stats(
            submitted=self.submitted,
            completed=self.completed,
            failed=self.failed,
            cancelled=self.cancelled,
            rejected=self.rejected,
            in_flight=self.submitted - settled - queued,
            running=running,
            queued=queued,
            num_requests=num_requests,
            lanes=lanes,
            device_ms=Latency.of(self.device_ms),
            await_ms=Latency.of(self.await_ms),
        )
