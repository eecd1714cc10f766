"""The result of one inference: the model's outputs, by index and by name, owned by the caller."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np


class Outputs(Sequence[np.ndarray]):
    """The outputs of one job, in model order; ``out[0]`` and ``out["logits"]`` both work.

    The arrays belong to the caller: no later job writes into them.
    """

    __slots__ = ("_arrays", "_index", "_names")

    def __init__(self, arrays: Sequence[np.ndarray], names: Sequence[str], index: Mapping[str, int]) -> None:
        self._arrays = tuple(arrays)
        self._names = names
        self._index = index

    def __getitem__(self, key: int | str) -> np.ndarray:  # type: ignore[override]
        if isinstance(key, str):
            try:
                return self._arrays[self._index[key]]
            except KeyError:
                raise KeyError(f"no output named {key!r}; outputs are {sorted(self._index)}") from None
        return self._arrays[key]

    def __len__(self) -> int:
        return len(self._arrays)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._arrays)

    def rows(self, start: int, stop: int) -> Outputs:
        """Rows ``start:stop`` of every output (views: a batch's callers share its arrays, each
        owning its own rows)."""
        return Outputs([a[start:stop] for a in self._arrays], self._names, self._index)

    @property
    def names(self) -> list[str]:
        """One name per output, in model order (its index as text when it has no name)."""
        return list(self._names)

    def to_dict(self) -> dict[str, np.ndarray]:
        """``{name: array}`` with one entry per output."""
        return dict(zip(self.names, self._arrays, strict=True))

    def __repr__(self) -> str:
        items = zip(self.names, self._arrays, strict=True)
        parts = ", ".join(f"{n}: {a.dtype}{list(a.shape)}" for n, a in items)
        return f"Outputs({parts})"
