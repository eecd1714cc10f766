"""The running async backend, seen from other threads: how a result is handed to it and awaited.

aioinfer runs under any backend anyio runs on: asyncio (and uvloop, an asyncio loop) and trio. Each
object that keeps per-loop state (a request pool, a batcher, a frame buffer) captures the
:class:`Bridge` of the loop that made it with :func:`current`, and from then on:

* ``bridge.future()`` is a one-shot result that only that loop sets and awaits (``done()``,
  ``set_result()``, ``set_exception()``, ``await``; done once its waiter was cancelled). On asyncio
  it is the loop's own future, on trio a ``TrioFuture`` (``_bridge_trio.py``, imported only there);
* ``bridge.call_soon_threadsafe(fn)`` asks the loop, from any thread, to run ``fn`` soon, through
  the backend's own wake-up (asyncio's ``call_soon_threadsafe``, trio's ``TrioToken.run_sync_soon``);
  it returns False once the loop is gone;
* ``bridge.check()`` raises :class:`EventLoopError` when called from any other loop or thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any, Protocol, TypeVar

from ._errors import EventLoopError

T = TypeVar("T")


class Future(Protocol[T]):
    """A one-shot result, set and awaited on the loop that made it."""

    def done(self) -> bool: ...
    def set_result(self, result: T, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...
    def __await__(self) -> Generator[Any, None, T]: ...


class Bridge:
    """The loop (or run) an object belongs to."""

    backend = ""

    def future(self) -> Future[Any]:
        raise NotImplementedError

    def call_soon_threadsafe(self, fn: Callable[[], object]) -> bool:
        raise NotImplementedError

    def is_current(self) -> bool:
        raise NotImplementedError

    def check(self, what: str = "this model", made: str = "loaded") -> None:
        """Raise :class:`EventLoopError` unless called from this loop (or run)."""
        if not self.is_current():
            raise EventLoopError(
                f"{what} belongs to the {self.backend} event loop it was {made} in: "
                "use it only there (make one per loop or run)"
            )


class AsyncioBridge(Bridge):
    """One asyncio event loop (also uvloop's)."""

    backend = "asyncio"

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()

    def future(self) -> Future[Any]:
        return self._loop.create_future()

    def call_soon_threadsafe(self, fn: Callable[[], object]) -> bool:
        try:
            self._loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop is closed: nobody is left to run it
            return False
        return True

    def is_current(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False


def current() -> Bridge:
    """The bridge of the running loop. Raises :class:`EventLoopError` outside any, or under a
    backend aioinfer does not know."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return AsyncioBridge()
    try:
        from ._bridge_trio import TrioBridge

        return TrioBridge()
    except (ImportError, RuntimeError):
        raise EventLoopError(
            "aioinfer needs a running event loop: asyncio (uvloop) or trio; call it from a coroutine"
        ) from None
