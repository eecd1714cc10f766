"""Where a frame is read from an iterable of arrays: a sync one on the source's thread, an async
one on the event loop (by the pump task)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterable, Generator, Iterable, Iterator
from typing import Any

from ._frame import Frame, ms_since
from ._reader import Reader
from ._selection import Selection


class IterableReader(Reader):
    """Any sync iterable of arrays, iterated on the source's thread; ``live`` stamps each frame with
    the time since opening."""

    def __init__(self, name: str, items: Iterable[Any], selection: Selection, live: bool) -> None:
        super().__init__(name, selection)
        self._items = items
        self._live = live
        self._iterator: Iterator[Any] | None = None
        self._t0 = 0.0

    def open(self, stopped: threading.Event) -> None:
        self._iterator = iter(self._items)
        self._t0 = time.monotonic()

    def frames(self, stopped: threading.Event) -> Generator[Frame, None, None]:
        assert self._iterator is not None
        for index, item in self._selection.stream(self._iterator):
            yield Frame(index, ms_since(self._t0) if self._live else None, item)

    def close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if callable(close):
            close()


async def async_frames(
    items: AsyncIterable[Any], selection: Selection, live: bool
) -> AsyncGenerator[Frame, None]:
    """The selected items of an async iterable as frames; closes the iterable when done."""
    t0 = time.monotonic()
    iterator = items.__aiter__()
    try:
        async with contextlib.aclosing(selection.astream(iterator)) as selected:
            async for index, item in selected:
                yield Frame(index, ms_since(t0) if live else None, item)
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
