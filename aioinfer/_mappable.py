"""``Mappable``: the ``map`` method of models and tasks. It imports :mod:`aioinfer._map` (frames,
progress bars) only when ``map`` is called, so the awaitable model, the bottom layer, does not
pull the frame and progress layers in with it."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from ._map import MapIterator

T = TypeVar("T")


class Mappable(Generic[T]):
    """Gives a class ``map``: each item goes through the callable ``_map_target`` names (``infer``
    of a model, ``predict`` of a task), with twice that model's requests in flight by default;
    ``T`` is what that callable returns (``Outputs``, a task's prediction)."""

    def _map_target(self) -> tuple[Callable[[Any], Awaitable[T]], int]:
        raise NotImplementedError

    def _session_target(self) -> tuple[Callable[[Any], Awaitable[T]], Callable[[], object]]:
        """What ``map(session=True)`` awaits per item, and what ends its session."""
        raise TypeError(f"{type(self).__name__}.map takes no session=True: only a model has sessions")

    def map(
        self,
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        max_in_flight: int | None = None,
        ordered: bool = True,
        return_exceptions: bool = False,
        progress: bool = False,
        session: bool = False,
    ) -> MapIterator[T]:
        """Run every item of a sync or async iterable (an image, a :class:`Frame`, or inputs) with
        at most ``max_in_flight`` read and not yet yielded (default: twice the model's requests).

        Yields :class:`MapResult` in input order (``ordered=True``) or as completed;
        ``progress=True`` shows a tqdm bar. See :func:`amap` for the whole contract.
        ``session=True`` (a model's map) runs the whole stream through one session
        (:meth:`AsyncModel.session`), one item at a time, in order: a stateful model's stream; the
        session ends with the map.
        """
        from ._map import amap  # the frame and progress layers, loaded once a map is made

        on_finish = None
        if session:
            if max_in_flight not in (None, 1):
                raise ValueError(
                    f"session=True runs one item at a time, in order; got max_in_flight={max_in_flight}"
                )
            fn, on_finish = self._session_target()
            max_in_flight = 1
        else:
            fn, requests = self._map_target()
            max_in_flight = max_in_flight or 2 * requests
        return amap(
            fn,
            items,
            max_in_flight=max_in_flight,
            ordered=ordered,
            return_exceptions=return_exceptions,
            progress=progress,
            on_finish=on_finish,
        )
