"""The frame pipeline of ``aioinfer run``: frames → a bare model → an annotated video and JSON
Lines, on asyncio, uvloop and trio."""

from __future__ import annotations

import json

import pytest
from models import EXACT, decode_index, frame_index, frame_probe, write_indexed_video

import aioinfer
from aioinfer._pipeline import Step, run_pipeline
from aioinfer._sources import open_source

N = 12
pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]


async def test_pipeline_writes_every_frame_in_order_to_the_video_and_the_jsonl(tmp_path):
    video = write_indexed_video(tmp_path / "in.avi", N)
    seen = []
    model = aioinfer.load(frame_probe(), device="CPU", config=EXACT, num_requests=2)
    async with model as loaded, open_source(video) as frames:
        stats = await run_pipeline(
            Step.of_model(loaded),
            frames,
            video=tmp_path / "out.avi",
            jsonl=tmp_path / "out.jsonl",
            max_in_flight=4,
            each=lambda r: seen.append(decode_index(r.output["means"])),
        )
    assert stats.frames == N and stats.dropped == 0 and seen == list(range(N))
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(N))
    assert records[0]["outputs"]["means"]["shape"] == [64]
    async with open_source(tmp_path / "out.avi") as written:
        assert [frame_index(f.image) async for f in written] == list(range(N))
