"""FrameSource as a whole: arguments checked at once by open_source, a source that is not there, and
the lifecycle (stop, break, cancel, aclose, a source dropped unclosed) releasing the capture and
joining the reader thread."""

from __future__ import annotations

import asyncio
import contextlib

import anyio
import numpy as np
import pytest
from concurrency import ASYNCIO_LOOPS
from frames import collect, source_threads
from models import write_indexed_video

import aioinfer
from aioinfer._sources import open_source

N = 40
pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]


@pytest.fixture
def video(tmp_path):
    return write_indexed_video(tmp_path / "clip.avi", N, fps=20.0)


def test_bad_arguments_are_rejected_at_once(video):
    with pytest.raises(ValueError, match="step"):
        open_source(video, step=0)
    with pytest.raises(ValueError, match="direction"):
        open_source(video, direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="drop"):
        open_source(video, drop="newest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="known length"):
        open_source(iter([]), direction="backward")
    with pytest.raises(ValueError, match="known length"):
        open_source(0, direction="backward")
    with pytest.raises(TypeError, match="single image"):
        open_source(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(TypeError, match="not known"):
        len(open_source(video))  # a video's length is known once it is opened


async def test_missing_file_raises_source_error_naming_it(tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(aioinfer.SourceError, match=r"missing\.mp4"):
        await collect(open_source(missing))
    with pytest.raises(aioinfer.SourceError, match=r"no images found.*\*\.jpg"):
        await collect(open_source(str(tmp_path / "*.jpg")))


async def test_stop_ends_iteration_releases_capture_and_joins_thread(video):
    async with open_source(video) as frames:
        got = []
        async for f in frames:
            got.append(f.index)
            if f.index == 4:
                frames.stop()
        assert got == list(range(5))
        reader = frames._reader
        assert not frames._thread.is_alive()
        assert not reader._cap.isOpened()
    assert not source_threads()


@pytest.mark.parametrize("anyio_backend", ASYNCIO_LOOPS)  # asyncio tasks by nature
@pytest.mark.parametrize("how", ["break", "cancel"])
async def test_break_or_cancel_then_exit_releases_everything(video, how):
    source = open_source(video)

    async def consume():
        async with source as frames:
            async for f in frames:
                if f.index == 3:
                    if how == "break":
                        break
                    asyncio.current_task().cancel()
                    await asyncio.sleep(0)

    task = asyncio.ensure_future(consume())
    await asyncio.wait([task])
    assert task.cancelled() == (how == "cancel")
    assert not source._thread.is_alive()
    assert not source._reader._cap.isOpened()
    assert not source_threads()


async def test_source_dropped_without_closing_stops_its_thread(video):
    source = open_source(video, buffer=1)
    assert (await source.__anext__()).index == 0
    thread = source._thread
    del source
    await anyio.to_thread.run_sync(thread.join, 10)
    assert not thread.is_alive()


async def test_stop_before_opening_yields_nothing(video):
    source = open_source(video)
    source.stop()
    assert await collect(source) == []
    assert not source_threads()


async def test_aclose_before_opening_yields_nothing(video):
    source = open_source(video)
    await source.aclose()
    assert [f async for f in source] == []


@pytest.mark.parametrize("deadline", ["move_on_after", "fail_after"])
@pytest.mark.parametrize("kind", ["live video", "async generator"])
async def test_a_deadline_around_async_for_over_a_source_releases_everything(video, deadline, kind):
    closed = []

    async def camera():  # its fifth frame never comes: the consumer waits for it
        try:
            for i in range(4):
                yield np.full((2, 2), i, np.uint8)
            await anyio.sleep_forever()
        finally:
            closed.append(True)

    source = open_source(video, live=True) if kind == "live video" else open_source(camera())
    got = []
    with contextlib.ExitStack() as stack:
        if deadline == "fail_after":
            stack.enter_context(pytest.raises(TimeoutError))
        scope = stack.enter_context(getattr(anyio, deadline)(30))
        async with source as frames:
            async for f in frames:
                got.append(f.index)
                if f.index == 3:
                    scope.deadline = anyio.current_time()  # it passes now: the wait for the next is cancelled
    assert scope.cancelled_caught and got == [0, 1, 2, 3]
    assert not source_threads()
    assert closed == ([] if kind == "live video" else [True])
    if kind == "live video":
        assert not source._reader._cap.isOpened()


@pytest.mark.parametrize(("made", "used"), [("trio", "asyncio"), ("asyncio", "trio"), ("asyncio", "asyncio")])
def test_a_source_opened_in_one_run_and_used_in_another_raises_event_loop_error(video, made, used):
    source = open_source(video, buffer=1)

    async def first():
        return (await source.__anext__()).index

    async def use():
        with pytest.raises(aioinfer.EventLoopError, match=f"frame source belongs to the {made} event loop"):
            await source.__anext__()
        with pytest.raises(aioinfer.EventLoopError):
            await source.aclose()  # stops its reader all the same

    assert anyio.run(first, backend=made) == 0
    anyio.run(use, backend=used)
    source._thread.join(10)
    assert not source_threads()
