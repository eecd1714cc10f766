"""The trio side of :mod:`._bridge`, imported only under ``trio.run`` (trio is optional)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

import outcome
import trio

from ._bridge import Bridge, Future

T = TypeVar("T")


class TrioBridge(Bridge):
    """One ``trio.run``."""

    backend = "trio"

    def __init__(self) -> None:
        self._current_token = trio.lowlevel.current_trio_token
        self._token = self._current_token()
        self._finished = trio.RunFinishedError

    def future(self) -> Future[Any]:
        return TrioFuture()

    def call_soon_threadsafe(self, fn: Callable[[], object]) -> bool:
        try:
            self._token.run_sync_soon(fn)
        except self._finished:
            return False
        return True

    def is_current(self) -> bool:
        try:
            return self._current_token() is self._token
        except RuntimeError:
            return False


class TrioFuture(Generic[T]):
    """A one-shot result for trio, on trio's own parking primitive (``wait_task_rescheduled`` and
    ``reschedule``: no event, no lot of waiting tasks). One task awaits it; awaiting is a
    checkpoint, cancellable by trio's cancel scopes. Like a cancelled asyncio future, it is done
    once its waiter was cancelled: whoever would set it later sees ``done()`` and drops the result."""

    __slots__ = ("_outcome", "_task")

    def __init__(self) -> None:
        self._outcome: outcome.Outcome[T] | None = None
        self._task: trio.lowlevel.Task | None = None

    def done(self) -> bool:
        return self._outcome is not None

    def set_result(self, result: T, /) -> None:
        self._set(outcome.Value(result))

    def set_exception(self, exception: BaseException, /) -> None:
        self._set(outcome.Error(exception))

    def _set(self, result: outcome.Outcome[T]) -> None:
        if self._outcome is not None:
            raise RuntimeError("this future already has its result")
        self._outcome = result
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task, result)

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait().__await__()

    async def _wait(self) -> T:
        if self._outcome is not None:
            await trio.lowlevel.checkpoint()
            return self._outcome.unwrap()
        if self._task is not None:
            raise RuntimeError("another task already awaits this future")
        self._task = trio.lowlevel.current_task()

        def abort(_raise_cancel: object) -> trio.lowlevel.Abort:
            self._task = None
            self._outcome = outcome.Error(RuntimeError("the task awaiting this future was cancelled"))
            return trio.lowlevel.Abort.SUCCEEDED

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result
