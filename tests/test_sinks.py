"""Video and JSON Lines sinks: written files are read back with OpenCV and json."""

from __future__ import annotations

import json

import anyio
import numpy as np
import pytest
from models import EXACT, frame_index, frame_probe, indexed_frame

import aioinfer
from aioinfer._sinks import JsonlSink, VideoSink
from aioinfer._sources import open_source

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]


@pytest.mark.parametrize("name", ["out.avi", "out.mp4", "out.mkv"])
async def test_video_sink_writes_frames_that_read_back_in_order(tmp_path, name):
    path = tmp_path / name
    async with VideoSink(path, fps=10) as sink:
        for i in range(12):
            await sink.write(indexed_frame(i))
    assert sink.written == 12
    async with open_source(path) as frames:
        assert len(frames) == 12 and frames.fps == 10
        assert [frame_index(f.image) async for f in frames] == list(range(12))


async def test_video_sink_converts_grayscale(tmp_path):
    async with VideoSink(tmp_path / "gray.avi") as sink:
        await sink.write(indexed_frame(5)[:, :, 0])
    async with open_source(tmp_path / "gray.avi") as frames:
        (frame,) = [f async for f in frames]
    assert frame.image.shape == (48, 64, 3) and frame_index(frame.image) == 5


async def test_video_sink_rejects_bad_frames_and_names(tmp_path):
    with pytest.raises(ValueError, match=r"no default codec for 'out\.xyz'"):
        VideoSink(tmp_path / "out.xyz")
    async with VideoSink(tmp_path / "out.avi") as sink:
        await sink.write(indexed_frame(0))
        with pytest.raises(ValueError, match="size 32x16 in a video of 64x48"):
            await sink.write(np.zeros((16, 32, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            await sink.write(np.zeros((48, 64, 3), np.float32))
        await sink.write(indexed_frame(1))  # the sink still works
    assert sink.written == 2
    with pytest.raises(ValueError, match="closed"):
        await sink.write(indexed_frame(2))


async def test_video_sink_that_cannot_open_raises_oserror(tmp_path):
    sink = VideoSink(tmp_path / "no" / "such" / "dir" / "out.avi")
    with pytest.raises(OSError, match="cannot write video"):
        await sink.write(indexed_frame(0))
    await sink.aclose()


async def test_jsonl_sink_writes_one_json_object_per_line(tmp_path):
    path = tmp_path / "preds.jsonl"
    async with aioinfer.load(frame_probe(), device="CPU", config=EXACT) as model:
        out = await model.infer(indexed_frame(3))
    async with JsonlSink(path) as sink:
        await sink.write({"index": 0, "outputs": out, "score": np.float32(0.5), "box": np.arange(4)})
        await sink.write({"index": 1, "text": "héllo"})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and sink.written == 2
    first, second = map(json.loads, lines)
    assert first["score"] == 0.5 and first["box"] == [0, 1, 2, 3]
    assert first["outputs"]["means"] == out["means"].tolist()
    assert second == {"index": 1, "text": "héllo"}


async def test_jsonl_sink_rejects_what_json_cannot_hold(tmp_path):
    async with JsonlSink(tmp_path / "p.jsonl") as sink:
        with pytest.raises(TypeError, match="cannot write object as JSON"):
            await sink.write({"x": object()})
        await sink.write({"ok": True})
    assert (tmp_path / "p.jsonl").read_text() == '{"ok": true}\n'


async def test_empty_jsonl_sink_leaves_an_empty_file(tmp_path):
    async with JsonlSink(tmp_path / "empty.jsonl"):
        pass
    assert (tmp_path / "empty.jsonl").read_text() == ""


@pytest.mark.parametrize(("made", "used"), [("trio", "asyncio"), ("asyncio", "trio"), ("asyncio", "asyncio")])
def test_a_sink_used_in_another_run_than_its_first_raises_event_loop_error(tmp_path, made, used):
    sink = JsonlSink(tmp_path / "p.jsonl")

    async def elsewhere():
        with pytest.raises(aioinfer.EventLoopError, match=f"JsonlSink.*belongs to the {made} event loop"):
            await sink.write({"index": 1})

    async def main():
        async with sink:
            await sink.write({"index": 0})
            await anyio.to_thread.run_sync(lambda: anyio.run(elsewhere, backend=used))
            await sink.write({"index": 2})  # still works where it belongs

    anyio.run(main, backend=made)
    assert (tmp_path / "p.jsonl").read_text() == '{"index": 0}\n{"index": 2}\n'
