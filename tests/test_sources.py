"""FrameSource as a whole: arguments checked at once by open_source, a source that is not there, and
the lifecycle (stop, break, cancel, aclose, a source dropped unclosed) releasing the capture and
joining the reader thread."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from frames import collect, source_threads
from models import write_indexed_video

import aioinfer
from aioinfer._sources import open_source

N = 40
pytestmark = pytest.mark.timeout(60)


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
    await asyncio.to_thread(thread.join, 10)
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
