"""The buffer between the reader thread and the event loop: bounded, the reader waits for the
consumer, or with drop="oldest" the oldest frames are dropped and counted."""

from __future__ import annotations

import threading

import anyio
import numpy as np
import pytest

from aioinfer._sources import open_source

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]


async def test_drop_oldest_keeps_only_the_newest_frames_and_counts_the_rest():
    produced, done = threading.Event(), threading.Event()

    def camera():  # a live source that never waits for its consumer
        for i in range(100):
            yield np.full((4, 4, 3), i, np.uint8)
        done.set()
        produced.wait()

    async with open_source(camera(), drop="oldest", buffer=2, live=True) as frames:
        await anyio.to_thread.run_sync(done.wait)  # everything was produced while nobody consumed
        produced.set()
        got = [f.index async for f in frames]
        stats = frames.stats()
    assert got == [98, 99]
    assert (stats.read, stats.delivered, stats.dropped, stats.buffered) == (100, 2, 98, 0)


async def test_without_drop_the_reader_waits_for_the_consumer():
    produced = []
    blocked = threading.Event()

    def items():
        for i in range(20):
            produced.append(i)
            if i == 2:  # the 3rd frame cannot enter a full buffer of 2 until one is consumed
                blocked.set()
            yield np.zeros(1)

    async with open_source(items(), buffer=2) as frames:
        await anyio.to_thread.run_sync(blocked.wait)
        assert frames.stats().read == 2 and len(produced) == 3
        got = [f.index async for f in frames]
    assert got == list(range(20)) and frames.stats().dropped == 0
