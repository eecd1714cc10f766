"""Which compiled copy of a model (a *lane*) runs an input shape.

OpenVINO's CPU plugin prepares a compiled model's graph for one input shape at a time (per stream,
shared by all its requests): a job whose shape differs from the last one pays that preparation
again, about as much as a small inference. A model fed a few recurring shapes (batches of varying
size, text lines of varying width) runs faster on several compiled copies, each kept on one shape.
Every copy is the same model compiled the same way: a shape gives the same answer on any of them.
"""

from __future__ import annotations

from collections.abc import Hashable

TRACKED_PER_LANE = 32  # shapes counted, per lane allowed: a client sending ever new shapes is bounded
DECAY_PER_LANE = 256  # calls, per lane allowed, between two halvings of the counts: old habits fade


class ShapeLanes:
    """Lanes owned by the shapes called most. A shape runs on the lane it owns; one that owns none
    takes a lane nobody owns, else takes over the lane of the least called owner once called more
    than twice as often, else runs there without owning it. A shape called twice that found no free
    lane asks for one more lane while there are fewer than ``limit`` (one grows at a time). So one
    shape never grows a lane, and shapes seen once never do. Not thread-safe: the pool calls it
    under its lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 1  # lanes ready; lane 0 is the model as loaded
        self.growing = False
        self._lane_of: dict[Hashable, int] = {}  # owners
        self._calls: dict[Hashable, int] = {}  # recent calls by shape (halved now and then)
        self._until_decay = DECAY_PER_LANE * limit

    def lane_for(self, shape: Hashable) -> tuple[int, bool]:
        """The lane to run ``shape`` on, and whether to start growing one more lane now."""
        calls = self._called(shape)
        lane = self._lane_of.get(shape)
        if lane is not None:
            return lane, False
        free = set(range(self.count)).difference(self._lane_of.values())
        if free:
            return self._own(shape, min(free)), False
        weakest = min(self._lane_of, key=self._calls.__getitem__)
        lane = self._lane_of[weakest]
        if calls > 2 * self._calls[weakest]:
            del self._lane_of[weakest]
            self._own(shape, lane)
        grow = calls >= 2 and not self.growing and self.count < self.limit
        self.growing = self.growing or grow
        return lane, grow

    def grown(self) -> None:
        """One more lane is ready, owned by nobody: the next shape without a lane takes it."""
        self.count += 1
        self.growing = False

    def stop_growing(self) -> None:
        """No more lanes (a copy failed to compile, or the pool is closing)."""
        self.limit = self.count
        self.growing = False

    def _own(self, shape: Hashable, lane: int) -> int:
        self._lane_of[shape] = lane
        self._calls.setdefault(shape, 1)  # an owner is always counted (a decay may just have dropped it)
        return lane

    def _called(self, shape: Hashable) -> int:
        calls = self._calls[shape] = self._calls.get(shape, 0) + 1
        self._until_decay -= 1
        if self._until_decay <= 0 or len(self._calls) > TRACKED_PER_LANE * self.limit:
            self._decay()
        return calls

    def _decay(self) -> None:
        """Halve every count; forget shapes that own no lane and were called less than twice."""
        self._until_decay = DECAY_PER_LANE * self.limit
        self._calls = {
            shape: max(n // 2, 1) if shape in self._lane_of else n // 2
            for shape, n in self._calls.items()
            if shape in self._lane_of or n >= 2
        }
