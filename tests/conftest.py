"""Shared test setup: tests/ on sys.path for ``models``; every async test fails on loop errors.

Async tests and fixtures run on anyio's pytest plugin (``anyio_mode = "auto"``): on asyncio, or on
asyncio, uvloop and trio for a test marked ``pytest.mark.anyio`` (``pytestmark`` in a module)."""

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


@pytest.fixture(scope="module")
def anyio_backend() -> tuple[str, dict]:
    """The backend an async test runs on (anyio's pytest plugin runs them all, ``anyio_mode =
    "auto"``): asyncio, unless the test or its module is marked ``pytest.mark.anyio``."""
    return ("asyncio", {})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``pytest.mark.anyio`` run on asyncio, uvloop and trio (unless they choose)."""
    if (
        "anyio_backend" not in metafunc.fixturenames
        or metafunc.definition.get_closest_marker("anyio") is None
    ):
        return
    if any("anyio_backend" in m.args[0] for m in metafunc.definition.iter_markers("parametrize")):
        return
    metafunc.parametrize("anyio_backend", BACKENDS, scope="module")


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
