"""Which frames a source delivers: ``start``, ``count``, ``step`` and ``direction``, picked from a
source of known length, from a sync stream, or from an async iterable."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal

Direction = Literal["forward", "backward"]


@dataclass(frozen=True)
class Selection:
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
        if self.count == 0:
            return iter(())  # not even the items before ``start``
        start = self.start or 0
        stop: int | None = None
        if self.count is not None:  # right after the last selected item: nothing past it is pulled
            stop = start + (self.count - 1) * self.step + 1
        return islice(enumerate(items), start, stop, self.step)

    async def astream(self, items: AsyncIterator[Any]) -> AsyncGenerator[tuple[int, Any], None]:
        """:meth:`stream` for an async iterator: nothing is pulled after the last selected item.
        Leaves ``items`` open (its owner closes it)."""
        start, left, index = self.start or 0, self.count, 0
        while left != 0:
            try:
                item = await items.__anext__()
            except StopAsyncIteration:
                return
            if index >= start and (index - start) % self.step == 0:
                yield index, item
                left = None if left is None else left - 1
            index += 1
