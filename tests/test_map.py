"""amap / model.map over real videos and iterables, with real OpenVINO models."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import weakref

import anyio
import numpy as np
import pytest
import sniffio
from concurrency import ASYNCIO_LOOPS
from frames import EMPTY, IMAGES, faulty_folder
from models import EXACT, decode_index, frame_index, frame_probe, linear, linear_expected, write_indexed_video

import aioinfer
from aioinfer import _bridge
from aioinfer._map import MapResult, amap
from aioinfer._sources import open_source

N = 60
pytestmark = [pytest.mark.timeout(120), pytest.mark.anyio]


@pytest.fixture
def video(tmp_path):
    return write_indexed_video(tmp_path / "clip.avi", N)


@pytest.fixture
async def probe():
    async with aioinfer.load(frame_probe(), device="CPU", config=EXACT, num_requests=2) as model:
        yield model
    assert_idle(model)


@pytest.fixture
async def slow_probe():
    async with aioinfer.load(frame_probe(layers=3), device="CPU", config=EXACT, num_requests=2) as model:
        yield model
    assert_idle(model)


def assert_idle(model: aioinfer.AsyncModel) -> None:
    assert model.stats().in_flight == 0 and model.stats().queued == 0
    assert model._pool.busy_requests() == 0


def assert_paired(r: MapResult) -> None:
    assert decode_index(r.output["means"]) == r.index == frame_index(r.input)


def source_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("aioinfer-source")]


async def test_ordered_map_over_video_yields_every_frame_once_in_order_paired(video, probe):
    async with open_source(video) as frames:
        results = [r async for r in probe.map(frames, max_in_flight=8)]
    assert [r.index for r in results] == list(range(N))
    assert [r.timestamp_ms for r in results] == [i * 40.0 for i in range(N)]
    for r in results:
        assert_paired(r)
        assert r.error is None
    assert probe.stats().completed == N


async def test_unordered_map_pairs_every_result_with_its_own_frame(video, slow_probe):
    async with open_source(video, start=10, count=30, step=2) as frames:
        results = [r async for r in slow_probe.map(frames, max_in_flight=6, ordered=False)]
    assert sorted(r.index for r in results) == list(range(10, N, 2))
    for r in results:
        assert_paired(r)


@pytest.mark.parametrize("kind", ["list", "generator", "async generator"])
async def test_map_over_iterables_indexes_by_position(kind):
    items = [np.full((2, 4), i, np.float32) for i in range(10)]

    async def agen():
        for x in items:
            yield x

    source = {"list": items, "generator": (x for x in items), "async generator": agen()}[kind]
    async with aioinfer.load(linear(), device="CPU", config=EXACT) as model:
        results = [r async for r in model.map(source, max_in_flight=3)]
    assert [r.index for r in results] == list(range(10))
    for r, x in zip(results, items, strict=True):
        assert r.input is x and r.timestamp_ms is None
        np.testing.assert_array_equal(r.output["y"], linear_expected(x))


async def test_failing_item_raises_at_its_position_and_cancels_the_rest():
    items = (
        [np.ones((1, 4), np.float32)] * 5 + [np.ones((1, 5), np.float32)] + [np.ones((1, 4), np.float32)] * 20
    )
    async with aioinfer.load(linear(), device="CPU", num_requests=2) as model:
        seen = []
        with pytest.raises(aioinfer.InputShapeError, match=r"got \[1, 5\]"):
            async for r in model.map(items, max_in_flight=4):
                seen.append(r.index)
        assert seen == [0, 1, 2, 3, 4]
    assert_idle(model)


async def test_return_exceptions_yields_the_error_with_its_item():
    items = [np.ones((1, 4), np.float32), np.ones((1, 5), np.float32), np.ones((1, 4), np.float32)]
    async with aioinfer.load(linear(), device="CPU") as model:
        results = [r async for r in model.map(items, max_in_flight=2, return_exceptions=True)]
    assert [r.index for r in results] == [0, 1, 2]
    assert results[0].error is None and results[2].error is None
    assert isinstance(results[1].error, aioinfer.InputShapeError) and results[1].output is None
    assert results[1].input is items[1]


async def test_source_error_is_raised_after_the_results_before_it():
    def items():
        for i in range(5):
            yield np.full((1, 4), i, np.float32)
        raise OSError("camera unplugged")

    for ordered in (True, False):
        seen = []
        async with aioinfer.load(linear(), device="CPU") as model:
            with pytest.raises(OSError, match="camera unplugged"):
                async for r in model.map(open_source(items()), max_in_flight=3, ordered=ordered):
                    seen.append(r.index)
        assert sorted(seen) == list(range(5))


class Tracked(np.ndarray):
    """An array that can be weakly referenced, to count how many frames are alive."""


async def test_fast_source_never_runs_ahead_of_a_slow_model(slow_probe):
    refs: list[weakref.ref[Tracked]] = []
    produced = 0
    max_in_flight, buffer = 4, 2

    def frames():
        nonlocal produced
        for i in range(40):
            frame = np.full((48, 64, 3), i, np.uint8).view(Tracked)
            refs.append(weakref.ref(frame))
            produced += 1
            yield frame

    peak_alive = peak_ahead = 0
    async with open_source(frames(), buffer=buffer) as source:
        async for i, r in _enumerate(slow_probe.map(source, max_in_flight=max_in_flight)):
            assert r.index == i
            del r
            gc.collect()
            peak_alive = max(peak_alive, sum(ref() is not None for ref in refs))
            peak_ahead = max(peak_ahead, produced - (i + 1))
    # read but not yielded <= max_in_flight; the buffer; one frame held by the reader thread
    assert peak_ahead <= max_in_flight + buffer + 1
    assert peak_alive <= max_in_flight + buffer + 1
    assert produced == 40


async def _enumerate(results):
    i = 0
    async for r in results:
        yield i, r
        i += 1


async def test_drop_oldest_on_a_fast_video_drops_and_counts_frames(tmp_path, slow_probe):
    video = write_indexed_video(tmp_path / "long.avi", 200)
    async with open_source(video, drop="oldest", buffer=1) as frames:
        results = slow_probe.map(frames, max_in_flight=2)
        indices = [r.index async for r in results]
        stats = results.stats()
        source_stats = frames.stats()
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert source_stats.read == 200
    assert source_stats.dropped > 0 and source_stats.dropped == 200 - len(indices)
    assert stats.dropped == source_stats.dropped
    assert stats.read == stats.inferred == len(indices) and stats.in_flight == 0


async def test_break_cancels_in_flight_and_releases_the_source(video, slow_probe):
    async with open_source(video) as frames:
        async for r in slow_probe.map(frames, max_in_flight=6):
            if r.index == 5:
                break
    assert not source_threads()
    await slow_probe.aclose()
    assert_idle(slow_probe)
    assert slow_probe.stats().submitted < N


@pytest.mark.parametrize("anyio_backend", ASYNCIO_LOOPS)  # asyncio tasks by nature
async def test_cancelling_the_consumer_stops_everything(video, slow_probe):
    started = asyncio.Event()

    async def consume():
        async with open_source(video) as frames:
            async for _ in slow_probe.map(frames, max_in_flight=6):
                started.set()

    task = asyncio.ensure_future(consume())
    await started.wait()
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
    assert not source_threads()
    await slow_probe.aclose()
    assert_idle(slow_probe)
    # every job accounted for; how many were still running when the cancellation came (and so
    # count as cancelled) depends on the box's timing (CI once saw all 4 finished)
    stats = slow_probe.stats()
    assert stats.submitted == stats.completed + stats.cancelled and stats.failed == 0


async def test_source_stop_drains_the_frames_in_flight(video, slow_probe):
    async with open_source(video) as frames:
        results = slow_probe.map(frames, max_in_flight=6)
        indices = []
        async for r in results:
            indices.append(r.index)
            if r.index == 10:
                frames.stop()
                read = results.stats().read
        assert indices == list(range(len(indices)))
        assert len(indices) == read  # everything read before stop() was inferred and yielded
    assert not source_threads()


async def test_map_stop_and_aclose(video, slow_probe):
    async with open_source(video) as frames:
        async with slow_probe.map(frames, max_in_flight=4) as results:
            indices = []
            async for r in results:
                indices.append(r.index)
                if r.index == 3:
                    results.stop()
            assert indices == list(range(len(indices))) and 4 <= len(indices) <= 8
        async with slow_probe.map(frames, max_in_flight=4) as results:
            first = await results.__anext__()
            assert first.index == len(indices)
        stats = results.stats()
        # whatever else was read by then (how much is a race with the first result) was cancelled
        assert stats.read >= stats.inferred == 1 and stats.in_flight == 0
    await slow_probe.aclose()
    assert_idle(slow_probe)


async def test_stats_and_progress_bar(video, probe, capsys):
    async with open_source(video, count=25) as frames:
        results = amap(probe.infer, frames, max_in_flight=4, progress=True)
        assert [r.index async for r in results] == list(range(25))
    stats = results.stats()
    assert (stats.read, stats.inferred, stats.failed, stats.dropped, stats.in_flight) == (25, 25, 0, 0, 0)
    assert stats.fps > 0
    assert "25/25" in capsys.readouterr().err


async def test_stats_fps_counts_failed_results_too():
    items = [np.ones((1, 5), np.float32)] * 3  # every one fails
    async with aioinfer.load(linear(), device="CPU") as model:
        results = model.map(items, max_in_flight=2, return_exceptions=True)
        assert [r.error is not None async for r in results] == [True] * 3
    stats = results.stats()
    assert (stats.read, stats.inferred, stats.failed) == (3, 0, 3)
    assert stats.fps > 0


@pytest.mark.parametrize("anyio_backend", ASYNCIO_LOOPS)  # asyncio tasks by nature
async def test_aclose_returns_once_the_cancelled_jobs_are_gone():
    started, ended = [], []

    async def fn(x):
        started.append(x)
        try:
            await asyncio.sleep(30)
        finally:
            ended.append(x)

    results = amap(fn, range(10), max_in_flight=4)

    async def next_or_end():
        try:
            return await results.__anext__()
        except StopAsyncIteration:
            return "end"

    pending = asyncio.ensure_future(next_or_end())
    while len(started) < 4:
        await asyncio.sleep(0)
    await results.aclose()
    assert sorted(ended) == sorted(started) == [0, 1, 2, 3]  # not merely asked to cancel
    await results.aclose()  # idempotent
    assert await pending == "end"  # closed from another task: the end, not a failure of item 0


def test_max_in_flight_must_be_positive():
    async def fn(x):
        return x

    async def main():
        with pytest.raises(ValueError, match="max_in_flight"):
            amap(fn, [1], max_in_flight=0)

    asyncio.run(main())


async def test_map_stopped_before_it_starts_reads_nothing(probe):
    produced = []

    def items():
        for i in range(5):
            produced.append(i)
            yield np.zeros((2, 2, 3), np.uint8)

    results = probe.map(items(), max_in_flight=2)
    results.stop()
    assert [r async for r in results] == []
    assert produced == []


async def test_stop_from_another_thread_ends_the_map_with_the_jobs_in_flight_yielded(probe):
    waiting = threading.Event()  # set once the source waits for a frame that never comes

    async def camera():
        for _ in range(3):
            yield np.zeros((2, 2, 3), np.uint8)
        _bridge.current().call_soon_threadsafe(waiting.set)  # run once this task waits below
        await anyio.sleep_forever()

    if sniffio.current_async_library() == "asyncio":  # asyncio and uvloop: calling the loop from
        asyncio.get_running_loop().set_debug(True)  # a wrong thread raises, not just fails to wake it
    results = probe.map(camera(), max_in_flight=4)

    def stop_when_idle() -> None:  # the user's camera thread: the map's loop waits meanwhile
        if waiting.wait(30):
            results.stop()

    stopper = threading.Thread(target=stop_when_idle)
    stopper.start()
    try:
        with anyio.fail_after(20):  # a stop that never reaches the loop would hang: fail instead
            got = [r.index async for r in results]
    finally:
        waiting.set()
        stopper.join()
    stats = results.stats()
    assert got == [0, 1, 2]
    assert (stats.read, stats.inferred, stats.failed, stats.in_flight) == (3, 3, 0, 0)


@pytest.mark.parametrize("drop", [None, "oldest"])
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_break_closes_the_users_generator(probe, drop, kind):
    closed = []

    def frames():
        try:
            for i in range(1000):
                yield np.full((48, 64, 3), i % 256, np.uint8)
        finally:
            closed.append(True)

    async def aframes():
        try:
            for i in range(1000):
                await anyio.sleep(0)
                yield np.full((48, 64, 3), i % 256, np.uint8)
        finally:
            closed.append(True)

    async with open_source(frames() if kind == "sync" else aframes(), drop=drop) as source:
        async for r in probe.map(source, max_in_flight=4):
            if r.index >= 5:
                break
    assert closed == [True]
    assert not source_threads()


class Unplugged(BaseException):
    """Not an Exception: what a source may raise that ``except Exception`` would miss."""


def failing_source(kind: str, error: BaseException) -> object:
    """Three items [1, 4], then ``error`` raised by the source itself: a sync or async generator,
    given as it is or through ``open_source``."""

    def frames():
        for i in range(3):
            yield np.full((1, 4), i, np.float32)
        raise error

    async def aframes():
        for i in range(3):
            await anyio.sleep(0)
            yield np.full((1, 4), i, np.float32)
        raise error

    generator = frames() if "async" not in kind else aframes()
    return open_source(generator) if kind.startswith("source") else generator


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("kind", ["generator", "async generator", "source of generator", "source of async"])
@pytest.mark.parametrize(
    ("raised", "expected", "match"),
    [
        (
            asyncio.CancelledError,
            aioinfer.SourceError,
            r"frames.*raised CancelledError although nobody cancel",
        ),
        (lambda: Unplugged("cable pulled"), Unplugged, "cable pulled"),
    ],
    ids=["CancelledError", "BaseException"],
)
async def test_source_raising_on_its_own_fails_the_map_never_hangs_or_ends_it(
    linear_model, kind, raised, expected, match, ordered
):
    error = raised()
    seen = []

    async def consume():
        async for r in linear_model.map(failing_source(kind, error), max_in_flight=2, ordered=ordered):
            seen.append(r.index)

    with pytest.raises(expected, match=match) as info, anyio.fail_after(10):
        await consume()  # used to wait forever, or to end as if the source had
    assert info.value is error or info.value.__cause__ is error
    assert sorted(seen) == [0, 1, 2]
    if sniffio.current_async_library() == "asyncio":  # trio keeps no count of cancellation requests
        assert asyncio.current_task().cancelling() == 0
    assert not source_threads()
    assert_idle(linear_model)


async def stalling_frames(closed: list[bool]):
    """A camera whose next frame never comes after the third: cancelled inside the source; notes
    in ``closed`` that it was closed."""
    try:
        for i in range(3):
            yield np.full((1, 4), i, np.float32)
        await anyio.sleep_forever()
        yield np.zeros((1, 4), np.float32)
    finally:
        closed.append(True)


@pytest.mark.parametrize("anyio_backend", ASYNCIO_LOOPS)  # asyncio tasks by nature (a cancel scope: below)
@pytest.mark.parametrize("through", ["map", "open_source"])
async def test_cancelling_the_consumer_task_while_the_source_waits_still_cancels_and_cleans_up(
    linear_model, through
):
    closed, third = [], asyncio.Event()
    source = stalling_frames(closed) if through == "map" else open_source(stalling_frames(closed))

    async def consume():
        async with linear_model.map(source, max_in_flight=2) as results:
            async for r in results:
                if r.index == 2:
                    third.set()

    task = asyncio.ensure_future(consume())
    await third.wait()
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()  # not a SourceError: this one was ours
    if through == "open_source":
        await source.aclose()
    assert closed == [True]
    assert_idle(linear_model)


@pytest.mark.parametrize("anyio_backend", ASYNCIO_LOOPS)  # asyncio's CancelledError by nature
async def test_function_raising_cancelled_error_on_its_own_fails_its_item_not_the_consumer():
    async def fn(x):
        if x == 2:
            raise asyncio.CancelledError
        return x * 10

    results = [r async for r in amap(fn, range(5), max_in_flight=2, return_exceptions=True)]
    assert [r.output for r in results] == [0, 10, None, 30, 40]
    assert isinstance(results[2].error, aioinfer.ItemCancelledError)
    assert isinstance(results[2].error.__cause__, asyncio.CancelledError)
    seen = []
    with pytest.raises(aioinfer.ItemCancelledError, match="item 2 raised CancelledError"):
        async for r in amap(fn, range(5), max_in_flight=2):
            seen.append(r.output)
    assert seen == [0, 10]
    assert asyncio.current_task().cancelling() == 0


@pytest.mark.parametrize("anyio_backend", ASYNCIO_LOOPS)  # the asyncio loop's error log by nature
async def test_failure_of_an_item_never_yielded_is_not_logged_as_never_retrieved(loop_errors):
    third_failed = asyncio.Event()

    async def fn(x):
        if x == 3:
            third_failed.set()
            raise ValueError("item 3")
        if x == 0:
            await third_failed.wait()
        return x

    results = amap(fn, range(10), max_in_flight=4)
    async for r in results:
        assert r.index == 0
        break
    await results.aclose()  # nothing but `results` holds the jobs now
    del results
    gc.collect()
    assert not [c["message"] for c in loop_errors]  # was: "Task exception was never retrieved"


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_bad_image_file_is_its_frames_error_and_the_next_frames_come(tmp_path, probe, ordered):
    faulty_folder(tmp_path)
    async with open_source(tmp_path) as frames:
        results = probe.map(frames, max_in_flight=4, ordered=ordered, return_exceptions=True)
        got = [r async for r in results]
        source_stats = frames.stats()
    indices = [r.index for r in got]
    assert indices == list(range(IMAGES)) if ordered else sorted(indices) == list(range(IMAGES))
    bad = [r for r in got if r.error is not None]
    assert [r.index for r in bad] == [EMPTY]
    assert isinstance(bad[0].error, aioinfer.FrameError) and f"img{EMPTY}.jpg" in str(bad[0].error)
    assert bad[0].input is None and bad[0].output is None
    for r in got:
        if r.error is None:
            assert_paired(r)
    stats = results.stats()
    assert (stats.read, stats.inferred, stats.failed, stats.in_flight) == (IMAGES, IMAGES - 1, 1, 0)
    assert (source_stats.read, source_stats.failed) == (IMAGES - 1, 1)
    assert not source_threads()


async def test_without_return_exceptions_a_bad_image_file_raises_at_its_frame(tmp_path, probe):
    faulty_folder(tmp_path)
    seen = []
    with pytest.raises(aioinfer.FrameError, match=rf"img{EMPTY}\.jpg"):
        async with open_source(tmp_path) as frames:
            async for r in probe.map(frames, max_in_flight=4):
                seen.append(r.index)
    assert seen == list(range(EMPTY))
    assert not source_threads()


@pytest.mark.parametrize("anyio_backend", ASYNCIO_LOOPS)  # asyncio's CancelledError by nature
async def test_source_that_swallows_our_cancellation_gets_no_more_items_run():
    calls, inside, gate = [], asyncio.Event(), asyncio.Event()

    async def fn(x):
        calls.append(x)
        return x

    async def stubborn():
        yield 0
        inside.set()
        with contextlib.suppress(asyncio.CancelledError):  # swallowed: it goes on
            await gate.wait()
        yield 1

    results = amap(fn, stubborn(), max_in_flight=1)
    first = await results.__anext__()
    await inside.wait()  # the feeder is inside the source, where aclose() cancels it
    await asyncio.wait_for(results.aclose(), 10)  # used to wait for a slot that never came back
    assert first.index == 0 and calls == [0]  # nobody would have awaited item 1's job


def test_map_result_frame_is_a_deprecated_name_of_input():
    result = MapResult(0, None, "item", 1)
    with pytest.warns(DeprecationWarning, match="MapResult.input"):
        assert result.frame == "item"


@pytest.mark.parametrize("deadline", ["move_on_after", "fail_after"])
async def test_a_deadline_around_async_for_over_a_map_frees_everything(video, slow_probe, deadline):
    seen = []
    with contextlib.ExitStack() as stack:
        if deadline == "fail_after":
            stack.enter_context(pytest.raises(TimeoutError))
        scope = stack.enter_context(getattr(anyio, deadline)(30))
        async with open_source(video) as frames, slow_probe.map(frames, max_in_flight=6) as results:
            async for r in results:
                seen.append(r.index)
                if r.index == 2:
                    scope.deadline = anyio.current_time()  # it passes now: the next wait is cancelled
    assert scope.cancelled_caught and seen == [0, 1, 2]
    assert not source_threads()
    stats = slow_probe.stats()
    assert stats.in_flight == 0 and stats.queued == 0  # no job left running
    assert results.stats().in_flight == 0 and results.stats().read <= 3 + 6


@pytest.mark.parametrize("through", ["map", "open_source"])
async def test_a_cancel_scope_while_the_source_waits_cancels_inside_it_and_cleans_up(linear_model, through):
    closed: list[bool] = []
    source = stalling_frames(closed) if through == "map" else open_source(stalling_frames(closed))
    with anyio.CancelScope() as scope:
        async with linear_model.map(source, max_in_flight=2) as results:
            async for r in results:
                if r.index == 2:
                    scope.cancel()
    assert scope.cancelled_caught  # not a SourceError: this cancellation was ours
    if through == "open_source":
        await source.aclose()
    assert closed == [True]
    assert linear_model.stats().in_flight == 0


@pytest.mark.parametrize(
    ("made", "used"), [("trio", "asyncio"), ("asyncio", "trio"), ("asyncio", "asyncio"), ("trio", "trio")]
)
def test_a_map_used_in_another_run_than_its_own_raises_event_loop_error(made, used):
    async def double(x):
        return 2 * x

    async def make():
        results = amap(double, range(5), max_in_flight=2)
        assert (await results.__anext__()).output == 0
        return results

    async def use(results):
        with pytest.raises(aioinfer.EventLoopError, match=f"this map belongs to the {made} event loop"):
            await results.__anext__()
        with pytest.raises(aioinfer.EventLoopError):
            await results.aclose()

    results = anyio.run(make, backend=made)
    anyio.run(use, results, backend=used)
