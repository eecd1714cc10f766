"""Tasks that outlive the await that starts them, on any backend: the feeder and the jobs of a map,
the pump of an async frame source.

Their owner is an async iterator its caller may abandon (``break`` out of ``async for``) between
two ``__anext__`` calls, so no task group can hold them: a task group (a trio nursery) entered in
one ``__anext__`` and never exited corrupts its task's cancel scopes. They are detached instead (an
asyncio task; a trio system task in its own cancel scope) and their owner cancels them explicitly
(``cancel()``), and waits for them (:func:`wait`) when it is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from ._bridge import Bridge

if TYPE_CHECKING:
    from ._spawn_trio import SystemTask


class Task(Protocol):
    """A detached task, seen as an ``asyncio.Task`` is on every backend: ``exception()`` and
    ``result()`` raise ``asyncio.CancelledError`` for a cancelled task."""

    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def cancel(self) -> bool: ...
    def result(self) -> Any: ...
    def exception(self) -> BaseException | None: ...
    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...


def spawn(bridge: Bridge, fn: Callable[..., Awaitable[Any]], *args: Any) -> Task:
    """Start ``fn(*args)`` now on ``bridge``'s loop (which must be the running one), detached from
    the caller, with a copy of its context variables."""
    if bridge.backend == "asyncio":
        return asyncio.ensure_future(fn(*args))
    from ._spawn_trio import spawn_system_task

    return spawn_system_task(fn, args)


def wait(tasks: Sequence[Task]) -> Awaitable[object]:
    """Await it to return once every task of ``tasks`` (at least one, all of the running loop) is
    done, whatever their outcome; it raises nothing of theirs. Cancelling the caller stops the wait,
    not the tasks. (On asyncio, ``asyncio.wait`` itself: no coroutine more per await.)"""
    if isinstance(tasks[0], asyncio.Future):
        return asyncio.wait(tasks)  # type: ignore[type-var]
    return _wait_system_tasks(tasks)


async def _wait_system_tasks(tasks: Sequence[Task]) -> None:
    for task in tasks:
        await cast("SystemTask", task).finished.wait()
