"""Backend-neutral concurrency for tests that run on asyncio, uvloop and trio (``pytest.mark.anyio``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup, TaskStatus

# for a test of a module marked ``pytest.mark.anyio`` that is asyncio's by nature (asyncio tasks'
# cancel(), add_done_callback): ``@pytest.mark.parametrize("anyio_backend", ASYNCIO_LOOPS)``
ASYNCIO_LOOPS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
]


async def gather(*calls: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
    """Await ``calls`` concurrently, each in its own task (started together: in which order is
    the backend's choice, trio's varies), and return their results in the order of ``calls``.
    With ``return_exceptions``, an exception takes its call's place (a cancellation still
    propagates); without, the first one cancels the rest and is raised in an ``ExceptionGroup``."""
    results: list[Any] = [None] * len(calls)

    async def run(i: int, call: Awaitable[Any]) -> None:
        try:
            results[i] = await call
        except Exception as exc:
            if not return_exceptions:
                raise
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i, call in enumerate(calls):
            tg.start_soon(run, i, call)
    return results


async def start_submitted(tg: TaskGroup, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Start ``fn(*args)`` in ``tg`` and return once it has run up to its first blocking await: for
    a call of ``model.infer``, once its job is submitted (it submits before it first waits)."""

    async def run(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await fn(*args)

    await tg.start(run)
