"""Where a frame is read from a sequence of known length: in-memory arrays, or image files (one
file, a folder, a glob, a list of paths) decoded one at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from .._errors import FrameError, SourceError
from ._frame import Frame
from ._reader import Reader
from ._selection import Selection


class SequenceReader(Reader):
    """Items of known number: in-memory arrays, or image files decoded on demand. ``listing`` (instead
    of ``items``) lists the items when the source is opened, on the reader's thread. An item that
    ``load`` cannot read (a ``SourceError``) fails alone: its frame is a :class:`FrameError`."""

    def __init__(
        self,
        name: str,
        items: Sequence[Any] | np.ndarray | None,
        load: Callable[[Any], np.ndarray],
        selection: Selection,
        *,
        listing: Callable[[], Sequence[Any]] | None = None,
    ) -> None:
        super().__init__(name, selection)
        self._load = load
        self._listing = listing
        self._items: Sequence[Any] | np.ndarray = ()
        self._indices = range(0)
        if items is not None:
            self._select(items)

    def _select(self, items: Sequence[Any] | np.ndarray) -> None:
        self._items = items
        self._indices = self._selection.indices(len(items))
        self.total = len(self._indices)

    def open(self, stopped: threading.Event) -> None:
        if self._listing is not None:
            self._select(self._listing())

    def frames(self, stopped: threading.Event) -> Generator[Frame | FrameError, None, None]:
        for index in self._indices:
            try:
                image = self._load(self._items[index])
            except SourceError as exc:  # one bad file: that frame fails, the next ones still come
                error = FrameError(f"{exc} (frame {index})", index)
                error.__cause__ = exc
                yield error
                continue
            yield Frame(index, None, image)
