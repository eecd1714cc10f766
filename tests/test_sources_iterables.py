"""Where a frame is read from sequences and iterables: selection by position, live time stamps,
nothing pulled past the last selected item, and sources that fail in odd ways."""

from __future__ import annotations

import asyncio

import anyio
import numpy as np
import pytest
import sniffio
from frames import collect, source_threads

import aioinfer
from aioinfer._sources import open_source

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]


async def test_in_memory_sequence_and_iterables_select_by_position():
    arrays = [np.full((2, 2), i, np.uint8) for i in range(10)]

    async def agen():
        for a in arrays:
            yield a

    expected = [2, 5, 8]
    for items in (arrays, iter(arrays), (a for a in arrays), agen()):
        got = await collect(open_source(items, start=2, step=3))
        assert [f.index for f in got] == expected
        assert [int(f.image[0, 0]) for f in got] == expected
        assert all(f.timestamp_ms is None for f in got)
    assert len(open_source(arrays, count=4)) == 4
    backward = await collect(open_source(arrays, start=4, count=2, direction="backward"))
    assert [f.index for f in backward] == [4, 3]


async def test_live_iterable_is_stamped_with_time_since_opening():
    got = await collect(open_source(iter([np.zeros(3)] * 3), live=True))
    stamps = [f.timestamp_ms for f in got]
    assert all(s is not None and s >= 0 for s in stamps) and stamps == sorted(stamps)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"start": 1, "count": 2, "step": 5}, [1, 6]),
        ({"step": 30, "count": 1}, [0]),
        ({"start": 3, "count": 1, "step": 30}, [3]),
        ({"start": 4, "count": 0}, []),
        ({"count": 0, "step": 7}, []),
        ({"start": 95, "count": 3, "step": 4}, [95, 99]),
    ],
)
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_stream_selection_pulls_nothing_after_the_last_selected_item(kwargs, expected, kind):
    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield np.full((2, 2), i, np.uint8)

    async def async_items():
        for image in items():
            yield image

    got = await collect(open_source(items() if kind == "sync" else async_items(), **kwargs))
    assert [f.index for f in got] == expected
    assert [int(f.image[0, 0]) for f in got] == expected
    last = expected[-1] if expected else -1
    assert pulled == list(range(last + 1))  # a camera decodes no frame it does not deliver


async def test_source_whose_iter_raises_cancelled_error_fails_with_source_error():
    class Camera:
        def __iter__(self):
            raise asyncio.CancelledError  # on the opening thread: anyio would re-raise it to us as is

    with pytest.raises(aioinfer.SourceError, match=r"Camera.*CancelledError although nobody cancelled"):
        await collect(open_source(Camera()))
    if sniffio.current_async_library() == "asyncio":  # trio keeps no count of cancellation requests
        assert asyncio.current_task().cancelling() == 0
    assert not source_threads()


async def test_generator_failing_when_closed_still_ends_the_stream():
    def frames():
        try:
            for i in range(10):
                yield np.full((2, 2), i, np.uint8)
        finally:
            raise RuntimeError("camera driver crashed on release")

    got = []

    async def consume():
        async with open_source(frames(), count=3) as source:
            async for f in source:
                got.append(f.index)

    with pytest.raises(RuntimeError, match="crashed on release"), anyio.fail_after(10):
        await consume()  # the end it waits for used to never come
    assert got == [0, 1, 2]
    assert not source_threads()
