"""Shape lanes (``load(..., shape_lanes=N)``, aioinfer/_lanes.py and the lane half of
aioinfer/_pool.py) on real OpenVINO, on asyncio, uvloop and trio: whatever lane a job runs on and
however lanes are reassigned or grown meanwhile, every caller gets exactly its own answer; lanes
grow only for really recurring shapes, up to the limit; cancellation, timeouts, ``aclose()`` while a
copy compiles, a pool dropped without ``aclose()`` and a copy that fails to compile all leave the
pool exact and nothing running.

A few pool internals are read to check what the public API cannot show (which lane a running job
is on, the lane thread) and, where said, to hold a compile at a chosen moment."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import random
import threading
import weakref
from collections.abc import Callable, Iterator

import anyio
import models
import numpy as np
import openvino as ov
import pytest
from concurrency import gather, start_submitted

import aioinfer
from aioinfer import _pool, _reaper
from aioinfer._lanes import TRACKED_PER_LANE, ShapeLanes
from aioinfer._model import AsyncModel

pytestmark = [
    pytest.mark.anyio,
    # a lane thread that dies of an exception must fail the test, not just warn
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
]

GUARD_S = 30  # a hang fails the test instead of the run (never reached when it works)
SLOW_SIZE = 48  # slow_conv(size=48, layers=2): about a millisecond per batch row


def load_linear(**kwargs: object) -> aioinfer._model._Loading:
    return aioinfer.load(models.linear(), device="CPU", config=models.EXACT, **kwargs)


def load_slow(**kwargs: object) -> aioinfer._model._Loading:
    return aioinfer.load(
        models.slow_conv(size=SLOW_SIZE, layers=2), device="CPU", config=models.EXACT, **kwargs
    )


def rows(batch: int, key: int) -> np.ndarray:
    """A [batch, 4] input for ``linear`` whose values tell the call (``key``) apart."""
    return np.arange(32 * key, 32 * key + batch * 4, dtype=np.float32).reshape(batch, 4)


def slow_input(batch: int, key: int) -> np.ndarray:
    """A [batch, 3, 48, 48] input for slow_conv: its output ``y[:, 0]`` is ``key`` exactly."""
    return np.full((batch, 3, SLOW_SIZE, SLOW_SIZE), key, np.float32)


def assert_slow_answer(out: aioinfer.Outputs, batch: int, key: int) -> None:
    np.testing.assert_array_equal(out["y"][:, 0], np.full(batch, key, np.float32))


def assert_counters_add_up(stats: aioinfer.Stats) -> None:
    """Every submitted job is counted exactly once, at any moment."""
    settled = stats.completed + stats.failed + stats.cancelled
    assert settled + stats.in_flight + stats.queued == stats.submitted, stats


async def wait_idle(model: AsyncModel) -> None:
    """Wait (without sleeping) until every request is idle, jobs cancelled on the device included."""
    await model._pool._wait_idle()
    assert model._pool.busy_requests() == 0


async def lane_thread_ended(model: AsyncModel) -> None:
    """Wait, off the loop, until the last lane thread started (if any) has ended."""
    grower = model._pool._grower
    if grower is not None:
        await anyio.to_thread.run_sync(grower.join, GUARD_S)
        assert not grower.is_alive(), "the lane thread is stuck"


def lane_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "aioinfer-lane" and t.is_alive()]


def running_lanes(model: AsyncModel) -> list[int]:
    """The lane of each slot running a job now."""
    busy = [s for s in model._pool._slots if s.job is not None]
    return [next(i for i, r in enumerate(s.requests) if r is s.request) for s in busy]


async def grow_to(
    model: AsyncModel, lanes: int, make: Callable[[int], np.ndarray], shapes: list[int]
) -> None:
    """Call ``model`` on each of ``shapes`` in turn, one at a time, each lane compiled before the
    next call, until it runs ``lanes`` copies."""
    for _ in range(4 * lanes):
        for shape in shapes:
            await model.infer(make(shape))
            await lane_thread_ended(model)
            if model.stats().lanes == lanes:
                return
    pytest.fail(f"only {model.stats().lanes} lanes of {lanes} after many alternating shapes")


def exact_compile(model: ov.Model) -> ov.CompiledModel:
    return ov.Core().compile_model(model, "CPU", models.EXACT)


class GatedCompile:
    """A ``compile_lane`` that really compiles a copy of ``model``, but first waits until the test
    opens its gate (the only way to hold the lane thread at a chosen moment); from call ``fail_from``
    on it raises instead, as a device out of memory would."""

    def __init__(self, model: ov.Model, *, gated: bool = True, fail_from: int | None = None) -> None:
        self.model = model
        self.calls = 0
        self.fail_from = fail_from
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.finished = threading.Event()
        if not gated:
            self.gate.set()

    def __call__(self) -> ov.CompiledModel:
        self.calls += 1
        self.entered.set()
        try:
            assert self.gate.wait(GUARD_S), "the test never opened the gate"
            if self.fail_from is not None and self.calls >= self.fail_from:
                raise RuntimeError("out of memory (a test's failing compile)")
            return exact_compile(self.model)
        finally:
            self.finished.set()


async def async_model(model: ov.Model, compile_lane: GatedCompile, **kwargs: object) -> AsyncModel:
    """An AsyncModel of ``model`` whose lanes beyond the first are made by ``compile_lane``."""
    compiled = await anyio.to_thread.run_sync(exact_compile, model)
    return AsyncModel(compiled, device="CPU", compile_lane=compile_lane, **kwargs)  # type: ignore[arg-type]


# -- ShapeLanes: the policy, alone ------------------------------------------------------------------


def test_one_shape_owns_lane_zero_and_never_grows() -> None:
    lanes = ShapeLanes(3)
    assert [lanes.lane_for((2, 4)) for _ in range(100)] == [(0, False)] * 100
    assert (lanes.count, lanes.growing) == (1, False)


def test_shapes_seen_once_never_grow_a_lane() -> None:
    lanes = ShapeLanes(3)
    lanes.lane_for("owner")
    assert [lanes.lane_for(("once", i)) for i in range(50)] == [(0, False)] * 50
    assert (lanes.count, lanes.growing) == (1, False)


def test_a_shape_called_twice_without_a_lane_grows_one_lane_at_a_time() -> None:
    lanes = ShapeLanes(3)
    lanes.lane_for("a")
    assert lanes.lane_for("b") == (0, False)  # seen once: runs on a's lane, asks for nothing
    assert lanes.lane_for("b") == (0, True)  # twice, and no free lane: one more is asked for
    assert lanes.growing
    assert [lanes.lane_for("c") for _ in range(2)] == [(0, False)] * 2  # one is already growing
    lanes.grown()
    assert (lanes.count, lanes.growing) == (2, False)
    assert lanes.lane_for("c") == (1, False)  # the new lane is free: taken at once, no growth
    assert lanes.lane_for("d") == (0, False)
    assert lanes.lane_for("d") == (0, True)  # the third and last
    lanes.grown()
    assert lanes.lane_for("d") == (2, False)
    assert [lanes.lane_for("e") for _ in range(2)] == [(0, False)] * 2  # at the limit: no growth
    assert (lanes.count, lanes.limit, lanes.growing) == (3, 3, False)
    assert [lanes.lane_for(s)[0] for s in "acd"] == [0, 1, 2]  # each owner kept its lane


def test_the_lowest_free_lane_is_taken_first() -> None:
    lanes = ShapeLanes(4)
    lanes.lane_for("a")
    for _ in range(3):
        lanes.grown()
    assert [lanes.lane_for(s) for s in "bcd"] == [(1, False), (2, False), (3, False)]
    assert [lanes.lane_for(s)[0] for s in "abcd"] == [0, 1, 2, 3]


def test_a_shape_called_more_than_twice_as_often_takes_over_the_least_called_owners_lane() -> None:
    lanes = ShapeLanes(2)
    lanes.lane_for("a")
    lanes.lane_for("b")
    lanes.lane_for("b")
    lanes.grown()
    assert lanes.lane_for("b") == (1, False)  # b owns lane 1 (3 calls), a owns lane 0 (1 call)
    # c runs on the least called owner's lane, a's, and owns it from its 3rd call (more than 2 x 1)
    assert [lanes.lane_for("c") for _ in range(4)] == [(0, False)] * 4
    assert lanes.lane_for("a") == (1, False)  # a lost lane 0: it runs on b's, the least called (3 < 4)
    assert [lanes.lane_for("a") for _ in range(5)] == [(1, False)] * 5  # 7 calls > 2 x 3: a owns it
    assert lanes.lane_for("b") == (0, False)  # b lost it: runs on c's lane (4 calls < a's 7)


def test_stop_growing_ends_growth_for_good() -> None:
    lanes = ShapeLanes(4)
    lanes.lane_for("a")
    lanes.lane_for("b")
    assert lanes.lane_for("b") == (0, True)
    lanes.stop_growing()  # the copy failed to compile
    assert (lanes.count, lanes.limit, lanes.growing) == (1, 1, False)
    assert [lanes.lane_for(s) for s in "ccddbb"] == [(0, False)] * 6


def test_a_client_sending_ever_new_shapes_is_tracked_in_bounded_memory() -> None:
    lanes = ShapeLanes(2)
    for i in range(20_000):
        assert lanes.lane_for(("new", i)) == (0, False)
    assert len(lanes._calls) <= TRACKED_PER_LANE * 2 + 1
    assert lanes.lane_for(("new", 0)) == (0, False)  # the owner of lane 0 still has it
    assert lanes.count == 1


# -- never a wrong answer ---------------------------------------------------------------------------


async def test_concurrent_callers_on_more_shapes_than_lanes_each_get_their_exact_answer() -> None:
    """7 batch sizes on 3 lanes, 300 concurrent callers a round: lanes change owners and grow while
    jobs run, jobs being given their lane on the loop and on OpenVINO's callback threads."""
    rng = random.Random(20261128)
    submitted = 0
    async with load_linear(num_requests=2, shape_lanes=3) as model:
        assert model.info.shape_lanes == 3 and model.info.to_dict()["shape_lanes"] == 3
        for round_ in range(40):
            xs = [rows(rng.randint(1, 7), submitted + i) for i in range(300)]
            outs = await gather(*(model.infer(x) for x in xs))
            for x, out in zip(xs, outs, strict=True):
                np.testing.assert_array_equal(out["y"], models.linear_expected(x))
            submitted += len(xs)
            if model.stats().lanes == 3 and round_ >= 3:
                break
        await lane_thread_ended(model)
        stats = model.stats()
        slots = model._pool._slots
        assert stats.lanes == 3, "the lanes never grew to the limit"
        assert all(len(slot.requests) == 3 for slot in slots)
        ran = [any(slot.requests[lane].latency > 0 for slot in slots) for lane in range(3)]
        assert ran == [True, True, True], "a lane was never used"
    assert (stats.submitted, stats.completed, stats.failed, stats.cancelled) == (submitted, submitted, 0, 0)
    assert_counters_add_up(stats)


async def test_lanes_answer_bitwise_as_the_model_without_lanes() -> None:
    """dynamic_sum on 6 shapes [rows, columns]: random floats give bit for bit the sums of a model
    loaded without lanes; small integers (whose sums are exact) give numpy's."""
    rng = np.random.default_rng(7)
    shapes = [(1, 5), (2, 5), (3, 7), (1, 64), (4, 3), (2, 33)]
    plain = aioinfer.load(models.dynamic_sum(), device="CPU", config=models.EXACT, num_requests=2)
    laned = aioinfer.load(
        models.dynamic_sum(), device="CPU", config=models.EXACT, num_requests=2, shape_lanes=3
    )
    async with plain as reference, laned as model:
        for _ in range(30):
            picks = rng.integers(0, len(shapes), 240)
            floats = [rng.standard_normal(shapes[k]).astype(np.float32) for k in picks[:120]]
            ints = [rng.integers(-50, 50, shapes[k]).astype(np.float32) for k in picks[120:]]
            want, got = await gather(
                gather(*(reference.infer(x) for x in floats)),
                gather(*(model.infer(x) for x in floats + ints)),
            )
            for x, expected, out in zip(floats, want, got, strict=False):
                np.testing.assert_array_equal(out["s"], expected["s"])
                assert out["s"].shape == (x.shape[0],)
            for x, out in zip(ints, got[len(floats) :], strict=True):
                np.testing.assert_array_equal(out["s"], x.sum(axis=1))
            if model.stats().lanes == 3:
                break
        await lane_thread_ended(model)
        assert model.stats().lanes == 3
        assert reference.stats().lanes == 1 and reference.info.shape_lanes == 1


async def test_shared_inputs_with_lanes_give_each_caller_its_own_result() -> None:
    async with load_linear(num_requests=2, shape_lanes=3, share_inputs=True) as model:
        for _ in range(20):
            xs = [rows(1 + i % 5, i) for i in range(300)]
            outs = await gather(*(model.infer(x) for x in xs))
            for x, out in zip(xs, outs, strict=True):
                np.testing.assert_array_equal(out["y"], models.linear_expected(x))
            if model.stats().lanes == 3:
                break
        assert model.stats().lanes == 3


async def test_sessions_and_shared_calls_mix_on_a_model_with_lanes() -> None:
    """A session keeps one request (on whichever lane it was) for its calls, of any shape; the
    shared calls around it keep moving between lanes; back in the pool, the request is given lanes
    again. Every answer exact."""
    async with load_linear(num_requests=3, shape_lanes=3) as model:

        async def stream(key: int) -> None:
            async with model.session() as session:
                for i in range(30):
                    x = rows(1 + (key + i) % 4, 100 * key + i)
                    np.testing.assert_array_equal((await session.infer(x))["y"], models.linear_expected(x))

        async def shared(key: int) -> None:
            for i in range(60):
                x = rows(1 + (key * i) % 6, 10_000 + 100 * key + i)
                np.testing.assert_array_equal((await model.infer(x))["y"], models.linear_expected(x))

        with anyio.fail_after(GUARD_S):
            async with anyio.create_task_group() as tg:
                for key in range(4):
                    tg.start_soon(stream, key)
                    tg.start_soon(shared, key + 1)
        await lane_thread_ended(model)
        stats = model.stats()
        assert stats.lanes > 1 and (stats.completed, stats.failed) == (4 * 30 + 4 * 60, 0)
        xs = [rows(1 + i % 6, i) for i in range(120)]  # every request is back in the pool, on lanes
        outs = await gather(*(model.infer(x) for x in xs))
        assert all((o["y"] == models.linear_expected(x)).all() for o, x in zip(outs, xs, strict=True))


async def test_a_late_callback_from_a_request_of_another_lane_is_ignored() -> None:
    """A completion callback from a request that is not its slot's current one (a cancelled job's
    that OpenVINO reported late, after the slot moved to another lane) must not deliver the job that
    now runs on the slot's other request: it would read outputs not yet computed. OpenVINO cannot be
    made to report late on demand, so the callback is called directly, as OpenVINO's thread would."""
    async with load_slow(num_requests=1, shape_lanes=2) as model:
        await grow_to(model, 2, lambda b: slow_input(b, 0), [1, 2])
        pool = model._pool
        out: dict[str, aioinfer.Outputs] = {}

        async def long_call() -> None:
            out["y"] = await model.infer(slow_input(256, 9))  # a new shape: the free lane 1

        async with anyio.create_task_group() as tg:
            await start_submitted(tg, long_call)
            assert running_lanes(model) == [1]
            await anyio.to_thread.run_sync(pool._callback, (0, 0))  # lane 0's request is idle
            assert running_lanes(model) == [1], "a callback from lane 0 released the job of lane 1"
        assert_slow_answer(out["y"], 256, 9)
        assert model.stats().completed == 5  # grow_to's 4 and this one


# -- growth: to the limit, and only for alternating shapes ---------------------------------------------


async def test_lanes_grow_to_the_limit_and_no_further() -> None:
    async with load_linear(num_requests=2, shape_lanes=3) as model:
        seen = []
        for batch in [1, 2, 3, 4, 5, 6] * 3:
            out = await model.infer(rows(batch, batch))
            np.testing.assert_array_equal(out["y"], models.linear_expected(rows(batch, batch)))
            await lane_thread_ended(model)
            seen.append(model.stats().lanes)
        assert seen[:6] == [1] * 6  # shapes seen once grow nothing
        assert seen == sorted(seen) and seen[-1] == 3 and max(seen) == 3
        last = model._pool._grower
        outs = await gather(*(model.infer(rows(1 + i % 9, i)) for i in range(200)))  # 9 shapes at once
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out["y"], models.linear_expected(rows(1 + i % 9, i)))
        assert model._pool._grower is last, "a lane thread was started beyond the limit"
        assert model.stats().lanes == 3
        assert all(len(slot.requests) == 3 for slot in model._pool._slots)


async def test_one_shape_never_grows_a_lane() -> None:
    async with load_linear(num_requests=2, shape_lanes=4) as model:
        for _ in range(3):
            xs = [rows(2, i) for i in range(200)]
            outs = await gather(*(model.infer(x) for x in xs))
            assert all((o["y"] == models.linear_expected(x)).all() for o, x in zip(outs, xs, strict=True))
        assert model.stats().lanes == 1
        assert model._pool._grower is None and lane_threads() == []
        assert all(len(slot.requests) == 1 for slot in model._pool._slots)


async def test_two_alternating_shapes_grow_one_lane_only() -> None:
    async with load_linear(num_requests=2, shape_lanes=4) as model:
        for _ in range(6):
            xs = [rows(1 + i % 2, i) for i in range(200)]
            outs = await gather(*(model.infer(x) for x in xs))
            assert all((o["y"] == models.linear_expected(x)).all() for o, x in zip(outs, xs, strict=True))
            await lane_thread_ended(model)
        assert model.stats().lanes == 2


# -- cancellation and timeouts --------------------------------------------------------------------


# OpenVINO's CPU plugin (2026.4) can spoil a compiled model for a moment when a running job of a
# dynamic-shape model is cancelled: the next job of another shape on it gets the cancelled job's
# output shape, or fails. So the pool gives such a job up without cancelling it on the device
# (``_pool._all_static``; the last test below would find it), and the tests here also keep each
# compiled copy on one shape once a job has been given up on it.


async def test_cancelling_jobs_running_and_queued_on_different_lanes() -> None:
    """Two long jobs run on two lanes; behind them short jobs of four shapes wait (lanes change
    hands as they start) and every third is cancelled. Then two long jobs running on two different
    lanes are cancelled on the device. The others get their exact answers, the counters add up at
    every moment, and the lanes serve exactly afterwards."""
    long_a, long_b, short = 48, 49, [4, 5, 6, 7]  # the long ones stay on the device meanwhile
    async with load_slow(num_requests=2, shape_lanes=3) as model:
        await grow_to(model, 3, lambda b: slow_input(b, 0), [long_a, long_b, short[0]])
        # few enough short jobs that no short shape takes a long one's lane over (see _lanes.py)
        batches = {0: long_a, 1: long_b} | {i: short[i % 4] for i in range(2, 14)} | {14: long_a, 15: long_b}
        results: dict[int, aioinfer.Outputs] = {}
        scopes = {i: anyio.CancelScope() for i in batches}
        samples = []

        async def call(i: int) -> None:
            with scopes[i]:
                results[i] = await model.infer(slow_input(batches[i], i))
            samples.append(model.stats())

        async with anyio.create_task_group() as tg:
            for i in range(14):
                tg.start_soon(call, i)
            await anyio.wait_all_tasks_blocked()  # 2 running, 12 queued
            samples.append(model.stats())
            queued_victims = list(range(2, 14, 3))
            for i in queued_victims:
                scopes[i].cancel()
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, 14)
            tg.start_soon(call, 15)
            await anyio.wait_all_tasks_blocked()  # both submitted in one loop step: both running
            lanes = running_lanes(model)
            assert len(lanes) == 2 and len(set(lanes)) == 2, lanes
            scopes[14].cancel()
            scopes[15].cancel()
        victims = [*queued_victims, 14, 15]
        for i, batch in batches.items():
            if i in victims and scopes[i].cancelled_caught:
                assert i not in results
            else:  # not a victim, or (trio) its answer was delivered before the cancel reached it
                assert_slow_answer(results[i], batch, i)
        await wait_idle(model)
        stats = model.stats()
        for sample in samples:
            assert_counters_add_up(sample)
        assert (stats.in_flight, stats.queued, stats.failed) == (0, 0, 0)
        assert stats.submitted == 8 + len(batches)  # grow_to made 8 calls
        assert stats.completed == stats.submitted - stats.cancelled
        assert stats.cancelled >= len(queued_victims)
        assert_counters_add_up(stats)
        again = [long_a, long_b, short[0]] * 2  # each on its own lane (see above)
        outs = await gather(*(model.infer(slow_input(b, 500 + b)) for b in again))
        for b, out in zip(again, outs, strict=True):
            assert_slow_answer(out, b, 500 + b)


async def test_timeouts_with_lanes_fail_only_their_own_call() -> None:
    """``timeout=`` and the backend's ``fail_after`` on calls of three shapes, each on a lane of its
    own (see above): the others get their exact answers; afterwards the pool is idle and serves
    every shape."""
    total, shapes = 300, [1, 2, 3]
    async with load_slow(num_requests=2, shape_lanes=3) as model:
        await grow_to(model, 3, lambda b: slow_input(b, 0), shapes)
        for b in shapes:  # those without a lane take the free one
            await model.infer(slow_input(b, 0))
        assert set(model._pool._lanes._lane_of) == {((b, 3, SLOW_SIZE, SLOW_SIZE),) for b in shapes}
        before = model.stats()

        async def with_fail_after(x: np.ndarray) -> aioinfer.Outputs:
            with anyio.fail_after(0.002):
                return await model.infer(x)

        def call(i: int) -> object:
            x = slow_input(shapes[i % 3], i)
            if i % 3 == 1:
                return model.infer(x, timeout=0.002)
            if i % 3 == 2:
                return with_fail_after(x)
            return model.infer(x)

        results = await gather(*(call(i) for i in range(total)), return_exceptions=True)  # type: ignore[arg-type]
        timed_out = 0
        for i, result in enumerate(results):
            if isinstance(result, aioinfer.Outputs):
                assert_slow_answer(result, shapes[i % 3], i)
            else:
                assert i % 3 and isinstance(result, aioinfer.InferTimeout if i % 3 == 1 else TimeoutError)
                timed_out += 1
        assert timed_out > 0
        await wait_idle(model)
        stats = model.stats()
        assert (stats.submitted - before.submitted, stats.failed) == (total, 0)
        assert stats.completed + stats.cancelled == stats.submitted and stats.cancelled <= timed_out
        assert_counters_add_up(stats)
        outs = await gather(*(model.infer(slow_input(b, b)) for b in shapes))
        for b, out in zip(shapes, outs, strict=True):
            assert_slow_answer(out, b, b)


async def test_a_job_timed_out_on_the_device_does_not_spoil_the_next_jobs_of_other_shapes() -> None:
    """A timeout must never cost a later caller its answer. No lanes needed: one request, shapes
    that change; pure OpenVINO shows it too (start_async, cancel, then infer another shape)."""
    async with load_slow(num_requests=1) as model:
        for k in range(1, 41):
            with contextlib.suppress(aioinfer.InferTimeout):
                await model.infer(slow_input(2, -1), timeout=0.0002 * (k % 8))
            for batch in (5, 3):
                assert_slow_answer(await model.infer(slow_input(batch, k)), batch, k)
        stats = model.stats()
        assert stats.failed == 0 and stats.cancelled > 0
        assert_counters_add_up(stats)


# -- lifecycle ------------------------------------------------------------------------------------


@pytest.fixture
def callbacks_running(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many of the pool's completion callbacks run right now (``[n]``), for pools made after
    this fixture: the real callback, counted around."""
    running = [0]
    lock = threading.Lock()
    real = _pool._completion_callback

    @functools.wraps(real)
    def counted(*args: object) -> None:
        with lock:
            running[0] += 1
        try:
            real(*args)  # type: ignore[arg-type]
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(_pool, "_completion_callback", counted)
    yield running


async def test_aclose_while_a_copy_compiles_returns_after_the_lane_thread(
    callbacks_running: list[int],
) -> None:
    gate = GatedCompile(models.linear())
    model = await async_model(models.linear(), gate, num_requests=2, shape_lanes=2)
    with anyio.fail_after(GUARD_S):
        for x in [rows(1, 0), rows(2, 0), rows(2, 0)]:  # 2 twice, no free lane: one more is compiled
            await model.infer(x)
        await anyio.to_thread.run_sync(gate.entered.wait)
        lane = model._pool._grower
        assert lane is not None and lane.is_alive()
        xs = [rows(1 + i % 3, i) for i in range(100)]  # meanwhile the calls run on the first lane
        outs = await gather(*(model.infer(x) for x in xs))
        assert all((o["y"] == models.linear_expected(x)).all() for o, x in zip(outs, xs, strict=True))
        assert model.stats().lanes == 1
        requests = [weakref.ref(slot.requests[0]) for slot in model._pool._slots]

        def open_once_the_watchdog_ended() -> None:  # aclose() has then waited for every job
            model._pool._watchdog.join()
            gate.gate.set()

        opener = threading.Thread(target=open_once_the_watchdog_ended, daemon=True)
        opener.start()
        xs = [rows(1 + i % 3, i) for i in range(200)]
        outs = [None] * len(xs)

        async def call(i: int) -> None:
            outs[i] = await model.infer(xs[i])

        try:
            async with anyio.create_task_group() as tg:  # closed while these still run
                for i in range(len(xs)):
                    tg.start_soon(call, i)
                await anyio.wait_all_tasks_blocked()
                await model.aclose()
                assert not lane.is_alive(), "aclose() returned before the lane thread ended"
                assert gate.finished.is_set()
                assert lane_threads() == []
                assert callbacks_running == [0], "a callback still runs after aclose()"
        finally:
            gate.gate.set()
        await anyio.to_thread.run_sync(opener.join)
    assert all((o["y"] == models.linear_expected(x)).all() for o, x in zip(outs, xs, strict=True))  # type: ignore[index]
    stats = model.stats()
    assert (stats.submitted, stats.completed) == (303, 303)
    assert stats.lanes == 1  # the copy compiled after close was dropped, never used
    assert all(slot.requests == [] and slot.request is None for slot in model._pool._slots)
    gc.collect()
    assert [r() for r in requests] == [None, None]  # released by aclose(), not left to the reaper
    with pytest.raises(aioinfer.ClosedError):
        await model.infer(rows(1, 0))


async def test_a_pool_dropped_without_aclose_has_every_lanes_requests_released_by_the_reaper() -> None:
    released_on: list[str] = []

    def died(_ref: weakref.ref) -> None:  # runs on the thread that dropped the last reference
        released_on.append(threading.current_thread().name)

    model = await load_linear(num_requests=2, shape_lanes=3)
    await grow_to(model, 3, lambda b: rows(b, b), [1, 2, 3])
    await gather(*(model.infer(rows(1 + i % 4, i)) for i in range(100)))
    refs = [weakref.ref(r, died) for slot in model._pool._slots for r in slot.requests]
    pool = weakref.ref(model._pool)
    assert len(refs) == 6
    del model
    gc.collect()
    assert pool() is None
    await anyio.to_thread.run_sync(_reaper.join)
    assert [r() for r in refs] == [None] * 6
    assert released_on == ["aioinfer-reaper"] * 6


async def test_a_pool_dropped_while_a_copy_compiles_lets_the_lane_thread_end() -> None:
    """The copy compiled for a pool already gone is dropped by the lane thread, unused."""
    gate = GatedCompile(models.linear())
    model = await async_model(models.linear(), gate, num_requests=2, shape_lanes=2)
    for x in [rows(1, 0), rows(2, 0), rows(2, 0)]:
        await model.infer(x)
    await anyio.to_thread.run_sync(gate.entered.wait, GUARD_S)
    lane = model._pool._grower
    pool = weakref.ref(model._pool)
    del model
    gc.collect()
    assert pool() is None
    await anyio.to_thread.run_sync(_reaper.join)
    gate.gate.set()
    await anyio.to_thread.run_sync(lane.join, GUARD_S)  # type: ignore[union-attr]
    assert not lane.is_alive() and gate.finished.is_set()  # type: ignore[union-attr]


async def test_a_copy_that_fails_to_compile_stops_growth_and_calls_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    compile_lane = GatedCompile(models.linear(), gated=False, fail_from=2)
    async with await async_model(models.linear(), compile_lane, num_requests=2, shape_lanes=4) as model:
        with caplog.at_level(logging.WARNING, logger="aioinfer"):
            await grow_to(model, 2, lambda b: rows(b, b), [1, 2, 3])
            for batch in [4, 5, 6, 4, 5, 6]:  # the next shape called twice asks for a third lane: it fails
                await model.infer(rows(batch, batch))
                await lane_thread_ended(model)
        assert compile_lane.calls == 2
        assert model.stats().lanes == 2
        failed = [r for r in caplog.records if "failed to compile" in r.getMessage()]
        assert len(failed) == 1 and "out of memory" in failed[0].getMessage()
        assert failed[0].levelno == logging.WARNING
        last = model._pool._grower
        xs = [rows(1 + i % 8, i) for i in range(300)]
        outs = await gather(*(model.infer(x) for x in xs))
        assert all((o["y"] == models.linear_expected(x)).all() for o, x in zip(outs, xs, strict=True))
        assert model._pool._grower is last and compile_lane.calls == 2  # never tried again
        assert model.stats().lanes == 2


# -- load's checks --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2", None])
def test_load_refuses_shape_lanes_that_are_not_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match=r"shape_lanes must be an integer >= 1, got"):
        aioinfer.load(models.linear(), shape_lanes=bad)  # type: ignore[arg-type]


def test_a_remote_model_refuses_shape_lanes() -> None:
    with pytest.raises(ValueError, match="remote model takes only"):
        aioinfer.load("http://127.0.0.1:9/v2/models/m", shape_lanes=2)
    with pytest.raises(ValueError, match="remote model takes only"):
        aioinfer.load("grpc://127.0.0.1:9/m", shape_lanes=2)


async def test_a_model_with_state_keeps_one_lane() -> None:
    async with aioinfer.load(
        models.accumulator(), device="CPU", config=models.EXACT, num_requests=2, shape_lanes=3
    ) as model:
        assert model.info.stateful and model.info.shape_lanes == 1
        assert model.info.to_dict()["shape_lanes"] == 1
        async with model.session() as session:
            total = np.zeros((1, 4), np.float32)
            for i in range(5):
                total += i
                np.testing.assert_array_equal((await session.infer(np.full((1, 4), i, np.float32)))[0], total)
        assert model.stats().lanes == 1
        assert model._pool._grower is None


async def test_shape_lanes_one_compiles_no_copy() -> None:
    async with load_linear(num_requests=2, shape_lanes=1) as model:
        await gather(*(model.infer(rows(1 + i % 5, i)) for i in range(50)))
        assert model.info.shape_lanes == 1 and model.stats().lanes == 1
        assert model._pool._compile_lane is None and model._pool._grower is None
