"""Shared test setup: tests/ on sys.path for ``models``; every async test fails on loop errors;
``pytestmark = pytest.mark.anyio`` in a module runs its async tests on asyncio, uvloop and trio."""

import asyncio
import gc
import inspect
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/models.py: the exact opset models


BACKENDS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param(("trio", {}), id="trio"),
]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict]:
    """The backends a module marked ``pytest.mark.anyio`` runs on (anyio's pytest plugin)."""
    return request.param


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict]]:
    """Everything the event loop reports to its exception handler during the test (and at the
    garbage collection after it): "Future exception was never retrieved", "Task was destroyed but
    it is pending", exceptions in callbacks. The test fails if there is any. (Trio has no such
    handler: what it cannot deliver fails the run itself.)"""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # trio
        yield []
        return
    errors: list[dict] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    gc.collect()
    loop.set_exception_handler(previous)
    assert not errors, [c.get("message") for c in errors]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if inspect.iscoroutinefunction(getattr(item, "function", None)):
            item.add_marker(pytest.mark.usefixtures("loop_errors"))


@pytest.fixture
async def linear_model() -> AsyncIterator[object]:
    """``y = 2x + 1`` (tests/models.py) on CPU in exact f32, with a dynamic batch: [-1, 4]."""
    import models

    import aioinfer

    async with aioinfer.load(models.linear(), device="CPU", config=models.EXACT) as model:
        yield model
