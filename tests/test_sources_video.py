"""Where a frame is read from a video file: order, index and timestamps, start/count/step/direction,
files that are missing, not videos or truncated, and a video played live at its frame rate."""

from __future__ import annotations

import anyio
import numpy as np
import pytest
from frames import collect, source_threads
from models import frame_index, write_indexed_video

import aioinfer
from aioinfer._sources import open_source

N = 40
pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]


@pytest.fixture
def video(tmp_path):
    return write_indexed_video(tmp_path / "clip.avi", N, fps=20.0)


async def test_video_frames_arrive_once_in_order_with_index_and_timestamp(video):
    async with open_source(video) as frames:
        assert len(frames) == N
        assert frames.fps == 20.0
        got = [f async for f in frames]
    assert [f.index for f in got] == list(range(N))
    assert [frame_index(f.image) for f in got] == list(range(N))
    assert [f.timestamp_ms for f in got] == [i * 50.0 for i in range(N)]
    assert got[0].image.shape == (48, 64, 3) and got[0].image.dtype == np.uint8
    assert not source_threads()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"start": 5, "count": 10}, list(range(5, 15))),
        ({"start": 3, "count": 5, "step": 4}, [3, 7, 11, 15, 19]),
        ({"step": 7}, list(range(0, N, 7))),
        ({"start": 30, "step": 3}, [30, 33, 36, 39]),
        ({"start": 38, "count": 10}, [38, 39]),
        ({"start": 100}, []),
        ({"count": 0}, []),
        ({"direction": "backward"}, list(range(N - 1, -1, -1))),
        ({"start": 20, "count": 4, "direction": "backward"}, [20, 19, 18, 17]),
        ({"start": 25, "step": 10, "direction": "backward"}, [25, 15, 5]),
        ({"start": 500, "count": 2, "direction": "backward"}, [N - 1, N - 2]),
    ],
)
async def test_start_count_step_direction_pick_exactly_those_frames(video, kwargs, expected):
    source = open_source(video, **kwargs)
    got = await collect(source)
    assert [f.index for f in got] == expected
    assert [frame_index(f.image) for f in got] == expected
    assert len(source) == len(expected)


async def test_file_that_is_not_a_video_raises_source_error(tmp_path):
    fake = tmp_path / "fake.avi"
    fake.write_bytes(b"this is not a video" * 100)
    with pytest.raises(aioinfer.SourceError, match=r"fake\.avi.*as a video"):
        await collect(open_source(fake))
    assert not source_threads()


async def test_truncated_video_raises_source_error(video, tmp_path):
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    with pytest.raises(aioinfer.SourceError, match=r"cut\.avi"):
        await collect(open_source(cut))
    assert not source_threads()


async def test_live_video_file_plays_at_its_frame_rate_like_a_camera(tmp_path):
    video = write_indexed_video(tmp_path / "fast.avi", 9, fps=100.0)
    start = anyio.current_time()
    got = await collect(open_source(video, live=True, step=2))
    assert [f.index for f in got] == [0, 2, 4, 6, 8]
    assert [f.timestamp_ms for f in got] == [0.0, 20.0, 40.0, 60.0, 80.0]
    assert anyio.current_time() - start >= 0.08  # never delivered ahead of the video's own clock
