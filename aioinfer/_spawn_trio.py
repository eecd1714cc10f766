"""The trio side of :mod:`._spawn`, imported only under ``trio.run`` (trio is optional)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import trio


def spawn_system_task(fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> SystemTask:
    """Start ``fn(*args)`` as a trio system task, with a copy of the caller's context variables."""
    task = SystemTask()
    trio.lowlevel.spawn_system_task(task.run, fn, args, context=contextvars.copy_context())
    return task


class SystemTask:
    """A trio system task in its own cancel scope (``cancel()`` cancels it alone), with the outcome
    and done callbacks of an ``asyncio.Task``. Callbacks run in the task as it ends."""

    __slots__ = ("_callbacks", "_cancelled", "_error", "_result", "_scope", "finished")

    def __init__(self) -> None:
        self._scope = trio.CancelScope()
        self.finished = trio.Event()
        self._callbacks: list[Callable[[Any], object]] = []
        self._result: Any = None
        self._error: BaseException | None = None
        self._cancelled = False

    async def run(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        """The task's body: ``fn(*args)`` unless cancelled first (as an asyncio task cancelled
        before it starts never runs). Keeps its outcome; only a cancellation from outside its own
        scope (the run ending) propagates, as trio expects of a system task."""
        try:
            with self._scope:
                await trio.lowlevel.checkpoint_if_cancelled()
                self._result = await fn(*args)
            self._cancelled = self._scope.cancelled_caught
        except trio.Cancelled:
            self._cancelled = True
            raise
        except BaseException as exc:  # the task's own failure: kept, as an asyncio task keeps it
            self._error = exc
        finally:
            self.finished.set()
            callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                callback(self)

    def done(self) -> bool:
        return self.finished.is_set()

    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> bool:
        if self.done():
            return False
        self._scope.cancel()
        return True

    def result(self) -> Any:
        error = self.exception()
        if error is not None:
            raise error
        return self._result

    def exception(self) -> BaseException | None:
        if not self.done():
            raise asyncio.InvalidStateError("the task is not done yet")
        if self._cancelled:
            raise asyncio.CancelledError
        return self._error

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None:
        """Call ``fn(task)`` as the task ends; at once if it has ended."""
        if self.done():
            fn(self)
        else:
            self._callbacks.append(fn)
