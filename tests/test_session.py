"""Sessions (aioinfer/_session.py): one infer request pinned to a stream of calls, on an exact
stateful model (tests/models.py ``accumulator``: ``state += x; y = state``), on asyncio, uvloop and
trio."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

import anyio
import models
import numpy as np
import pytest

import aioinfer

pytestmark = pytest.mark.anyio
GUARD_S = 30  # a hang fails the test instead of the run (never reached when it works)


@pytest.fixture
async def acc() -> AsyncIterator[aioinfer.AsyncModel]:
    async with aioinfer.load(
        models.accumulator(), device="CPU", config=models.EXACT, num_requests=2
    ) as model:
        yield model


def row(value: float) -> np.ndarray:
    return np.full((1, 4), value, np.float32)


async def run_stream(model: aioinfer.AsyncModel, key: int, length: int) -> None:
    """One session's calls, each checked against the running sum of this stream alone."""
    async with model.session() as session:
        total = row(0)
        for i in range(length):
            x = row(key * 1000 + i)
            total += x
            y = await session.infer(x)
            np.testing.assert_array_equal(y[0], total)
        np.testing.assert_array_equal((await session.state())["acc"], total)


async def test_concurrent_sessions_each_see_exactly_their_own_running_sum(acc: aioinfer.AsyncModel) -> None:
    assert acc.info.stateful and acc.info.to_dict()["stateful"]
    with anyio.fail_after(GUARD_S):
        async with anyio.create_task_group() as tg:
            for key in range(12):  # six times as many sessions as requests: the others wait
                tg.start_soon(run_stream, acc, key, 15)
    stats = acc.stats()
    assert (stats.completed, stats.in_flight, stats.queued) == (12 * 15, 0, 0)


async def test_a_stateful_model_outside_a_session_is_refused_and_keeps_working(
    acc: aioinfer.AsyncModel,
) -> None:
    with pytest.raises(aioinfer.SessionError, match="keeps state"):
        await acc.infer(row(1))
    with pytest.raises(aioinfer.SessionError, match="session"):
        await acc.run_adapted(acc.adapt(row(1)))
    await run_stream(acc, 1, 3)


async def test_each_session_starts_from_the_initial_state(acc: aioinfer.AsyncModel) -> None:
    for _ in range(4):  # more sessions than requests, one after the other: requests are reused
        async with acc.session() as session:
            np.testing.assert_array_equal((await session.infer(row(5)))[0], row(5))
            np.testing.assert_array_equal((await session.infer(row(2)))[0], row(7))


async def test_reset_and_state(acc: aioinfer.AsyncModel) -> None:
    async with acc.session() as session:
        assert (await session.state())["acc"].tolist() == row(0).tolist()
        await session.infer(row(3))
        await session.reset()
        assert (await session.state())["acc"].tolist() == row(0).tolist()
        np.testing.assert_array_equal((await session.infer(row(1)))[0], row(1))


async def test_a_call_given_up_while_it_ran_leaves_the_state_unknown_until_reset(
    acc: aioinfer.AsyncModel,
) -> None:
    async with acc.session() as session:
        await session.infer(row(1))
        with anyio.move_on_after(0):  # submitted and started before the first suspension
            await session.infer(row(100))
        with pytest.raises(aioinfer.SessionError, match="state is unknown"):
            await session.infer(row(1))
        await session.reset()
        np.testing.assert_array_equal((await session.infer(row(2)))[0], row(2))


async def test_a_timed_out_call_also_taints_the_session(acc: aioinfer.AsyncModel) -> None:
    async with acc.session() as session:
        with pytest.raises(aioinfer.InferTimeout):
            await session.infer(row(1), timeout=0)  # expired before the first suspension
        with pytest.raises(aioinfer.SessionError, match="state is unknown"):
            await session.infer(row(1))


async def test_a_cancelled_session_gives_its_request_back(acc: aioinfer.AsyncModel) -> None:
    holding = anyio.Event()

    async def hold() -> None:
        async with acc.session() as session:
            await session.infer(row(1))
            holding.set()
            await anyio.sleep_forever()

    with anyio.fail_after(GUARD_S):
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            tg.start_soon(hold)
            await holding.wait()
            tg.cancel_scope.cancel()
        # both requests are back: two sessions at once open without waiting for anything
        async with acc.session() as a, acc.session() as b:
            np.testing.assert_array_equal((await a.infer(row(4)))[0], row(4))
            np.testing.assert_array_equal((await b.infer(row(6)))[0], row(6))


async def test_an_abandoned_session_gives_its_request_back(acc: aioinfer.AsyncModel) -> None:
    abandoned = await acc.session()
    await abandoned.infer(row(9))
    del abandoned
    gc.collect()
    with anyio.fail_after(GUARD_S):
        async with acc.session() as a, acc.session() as b:
            np.testing.assert_array_equal((await a.infer(row(1)))[0], row(1))
            np.testing.assert_array_equal((await b.infer(row(1)))[0], row(1))


async def test_sessions_beyond_the_requests_wait_with_a_timeout() -> None:
    model = await aioinfer.load(models.accumulator(), device="CPU", config=models.EXACT, num_requests=1)
    async with model, model.session():
        with pytest.raises(aioinfer.InferTimeout):
            await model.session(timeout=0.05)
    assert model.stats().queued == 0


async def test_sessions_beyond_max_queue_are_refused() -> None:
    loading = aioinfer.load(
        models.accumulator(), device="CPU", config=models.EXACT, num_requests=1, max_queue=0
    )
    async with loading as model, model.session():
        with pytest.raises(aioinfer.QueueFull):
            await model.session()


async def test_a_session_cancelled_while_it_waits_takes_no_request(acc: aioinfer.AsyncModel) -> None:
    async with acc.session(), acc.session():
        with anyio.move_on_after(0.05) as scope:
            await acc.session()
        assert scope.cancelled_caught
    with anyio.fail_after(GUARD_S):
        await run_stream(acc, 2, 2)
        async with acc.session(), acc.session():
            pass


async def test_an_ended_session_refuses_calls(acc: aioinfer.AsyncModel) -> None:
    async with acc.session() as session:
        pass
    assert session.closed
    with pytest.raises(aioinfer.SessionError, match="ended"):
        await session.infer(row(1))
    with pytest.raises(aioinfer.SessionError, match="ended"):
        await session.state()


async def test_closing_the_model_ends_its_sessions() -> None:
    model = await aioinfer.load(models.accumulator(), device="CPU", config=models.EXACT, num_requests=1)
    session = await model.session()
    await session.infer(row(1))
    with anyio.fail_after(GUARD_S):
        await model.aclose()  # does not wait for the session to end
    with pytest.raises(aioinfer.ClosedError):
        await session.infer(row(1))
    with pytest.raises(aioinfer.ClosedError):
        await session.state()
    await session.aclose()


async def test_a_stateless_model_runs_a_session_in_order(linear_model: aioinfer.AsyncModel) -> None:
    results: list[int] = []

    async def call(session: aioinfer.Session, i: int) -> None:
        y = await session.infer(np.full((1, 4), i, np.float32))
        np.testing.assert_array_equal(y[0], models.linear_expected(np.full((1, 4), i, np.float32)))
        results.append(i)

    async with linear_model.session() as session:
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(call, session, i)
        assert await session.state() == {}
    assert sorted(results) == list(range(20))


async def test_map_with_a_session_runs_the_stream_in_order_and_ends_it(acc: aioinfer.AsyncModel) -> None:
    rows = [row(i) for i in range(1, 31)]
    async with acc.map(rows, session=True) as results:
        sums = [(r.index, r.output[0]) async for r in results]
    assert [i for i, _ in sums] == list(range(30))
    for i, y in sums:
        np.testing.assert_array_equal(y, row(sum(range(1, i + 2))))
    with anyio.fail_after(GUARD_S):  # the map's session has given its request back
        async with acc.session(), acc.session():
            pass


async def test_a_map_with_a_session_left_early_ends_its_session(acc: aioinfer.AsyncModel) -> None:
    async with acc.map([row(1)] * 10, session=True) as results:
        async for result in results:
            np.testing.assert_array_equal(result.output[0], row(1))
            break
    with anyio.fail_after(GUARD_S):
        async with acc.session(), acc.session():
            pass


async def test_map_without_a_session_fails_each_item_of_a_stateful_model(acc: aioinfer.AsyncModel) -> None:
    errors = [r.error async for r in acc.map([row(1)] * 3, return_exceptions=True)]
    assert all(isinstance(e, aioinfer.SessionError) for e in errors) and len(errors) == 3
    with pytest.raises(ValueError, match="one item at a time"):
        acc.map([row(1)], session=True, max_in_flight=4)
