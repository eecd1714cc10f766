"""aioinfer.Batcher on real exact models: grouping, scattering, isolation of bad or departing callers."""

from __future__ import annotations

import asyncio

import anyio
import models
import numpy as np
import openvino as ov
import pytest

import aioinfer
from aioinfer._batcher import Batcher, can_batch


def rows(start: int, n: int = 1) -> np.ndarray:
    return (np.arange(start * 4, (start + n) * 4, dtype=np.float32) / 8).reshape(n, 4)


async def test_concurrent_calls_are_grouped_and_each_gets_its_own_rows(linear_model):
    sizes: list[int] = []
    async with Batcher(linear_model, max_batch_size=8, max_delay_ms=50, on_batch=sizes.append) as batcher:
        xs = [rows(i, n=1 + i % 3) for i in range(60)]
        outs = await asyncio.gather(*(batcher.infer(x) for x in xs))
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out["y"], models.linear_expected(x))
        assert out.names == ["y"]
    assert sum(sizes) == sum(len(x) for x in xs)
    assert max(sizes) == 8 and all(s <= 8 for s in sizes)
    assert batcher.items == 60 and batcher.batches == len(sizes) < 60


async def test_batch_waits_at_most_max_delay_for_company(linear_model):
    with anyio.fail_after(5):  # a few ms are expected; seconds mean it waited for company
        async with Batcher(linear_model, max_batch_size=64, max_delay_ms=1) as batcher:
            out = await batcher.infer(rows(1))  # alone: must not wait for 63 others that never come
    np.testing.assert_array_equal(out[0], models.linear_expected(rows(1)))


async def test_a_bad_input_fails_only_its_own_call(linear_model):
    async with Batcher(linear_model, max_batch_size=8, max_delay_ms=20) as batcher:
        calls = [batcher.infer(rows(i)) for i in range(6)]
        calls.insert(3, batcher.infer(np.zeros((1, 5), np.float32)))
        calls.insert(5, batcher.infer(np.array([["a", "b", "c", "d"]])))
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[3], aioinfer.InputShapeError) and "expected shape [?,4]" in str(results[3])
    assert isinstance(results[5], aioinfer.InputDtypeError)
    good = [r for i, r in enumerate(results) if i not in (3, 5)]
    for i, out in enumerate(good):
        np.testing.assert_array_equal(out[0], models.linear_expected(rows(i)))


async def test_a_batch_the_device_fails_is_retried_call_by_call_so_only_the_faulty_call_fails(
    linear_model, monkeypatch
):
    # No real input makes the CPU fail an inference its shape checks let through, so the fault is
    # injected: the model's inference raises InferenceError whenever the marked row (-1 first) is in it.
    real = linear_model._infer_adapted
    runs: list[int] = []  # rows of every inference tried, failed or not

    async def faulty(inputs: dict[int, np.ndarray], timeout: float | None = None) -> aioinfer.Outputs:
        runs.append(len(inputs[0]))
        if (inputs[0][:, 0] == -1).any():
            raise aioinfer.InferenceError("injected device fault")
        return await real(inputs, timeout)

    monkeypatch.setattr(linear_model, "_infer_adapted", faulty)
    marked = np.full((2, 4), -1, np.float32)
    xs = [rows(i, n=1 + i % 2) for i in range(5)]
    xs.insert(2, marked)
    sizes: list[int] = []
    async with Batcher(linear_model, max_batch_size=16, max_delay_ms=50, on_batch=sizes.append) as batcher:
        results = await asyncio.gather(*(batcher.infer(x) for x in xs), return_exceptions=True)
    assert isinstance(results[2], aioinfer.InferenceError) and "injected" in str(results[2])
    for i, (x, out) in enumerate(zip(xs, results, strict=True)):
        if i != 2:
            np.testing.assert_array_equal(out["y"], models.linear_expected(x))
    assert runs == [sum(map(len, xs)), *map(len, xs)]  # one batch, then each call alone
    good_rows = [len(x) for i, x in enumerate(xs) if i != 2]
    assert sorted(sizes) == sorted(good_rows)  # every row that ran is counted once
    assert batcher.items == batcher.batches == 5


async def test_cancelled_and_timed_out_callers_do_not_break_the_batch(linear_model):
    async with Batcher(linear_model, max_batch_size=8, max_delay_ms=30) as batcher:
        tasks = [asyncio.create_task(batcher.infer(rows(i))) for i in range(8)]
        await asyncio.sleep(0)  # let every task join the pending batch (not a synchronisation on time)
        tasks[2].cancel()
        timed_out = batcher.infer(rows(99), timeout=0)
        with pytest.raises(aioinfer.InferTimeout):
            await timed_out
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    for i, out in enumerate(results):
        if i != 2:
            np.testing.assert_array_equal(out[0], models.linear_expected(rows(i)))


async def test_max_queue_rejects_at_once(linear_model):
    async with Batcher(linear_model, max_batch_size=2, max_delay_ms=0, max_queue=3) as batcher:
        calls = [batcher.infer(rows(i)) for i in range(10)]
        calls.append(batcher.infer(np.zeros((1, 5), np.float32)))  # refused before its inputs are checked
        results = await asyncio.gather(*calls, return_exceptions=True)
    rejected = [r for r in results if isinstance(r, aioinfer.QueueFull)]
    assert rejected and "max_queue=3" in str(rejected[0])
    assert isinstance(results[-1], aioinfer.QueueFull)
    for i, out in enumerate(results):
        if not isinstance(out, aioinfer.QueueFull):
            np.testing.assert_array_equal(out[0], models.linear_expected(rows(i)))


async def test_fixed_batch_model_is_padded():
    async with aioinfer.load(models.linear([4, 4]), device="CPU", config=models.EXACT) as model:
        sizes: list[int] = []
        async with Batcher(model, max_batch_size=16, on_batch=sizes.append) as batcher:
            assert batcher.max_batch_size == 4
            outs = await asyncio.gather(*(batcher.infer(rows(i)) for i in range(3)))
            with pytest.raises(aioinfer.InputShapeError, match="at most 4 rows"):
                await batcher.infer(rows(0, n=5))
    for i, out in enumerate(outs):
        assert out[0].shape == (1, 4)
        np.testing.assert_array_equal(out[0], models.linear_expected(rows(i)))


async def test_bounded_dynamic_batch_caps_the_batch_size():
    x = models.ops.parameter(ov.PartialShape("[1..3,4]"), np.float32, name="x")
    y = models.ops.add(x, models.ops.constant(np.float32(1)))
    async with (
        aioinfer.load(ov.Model([y], [x], "bounded"), device="CPU", config=models.EXACT) as model,
        Batcher(model, max_batch_size=8, max_delay_ms=20) as batcher,
    ):
        assert batcher.max_batch_size == 3
        outs = await asyncio.gather(*(batcher.infer(rows(i)) for i in range(7)))
        with pytest.raises(aioinfer.InputShapeError):
            await batcher.infer(rows(0, n=4))
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out[0], rows(i) + 1)
    assert batcher.items == 7 and batcher.batches >= 3


async def test_close_finishes_waiting_calls_then_refuses(linear_model):
    batcher = Batcher(linear_model, max_batch_size=4, max_delay_ms=50)
    tasks = [asyncio.create_task(batcher.infer(rows(i))) for i in range(10)]
    await asyncio.sleep(0)
    await batcher.aclose()
    for i, task in enumerate(tasks):
        assert task.done()
        np.testing.assert_array_equal(task.result()[0], models.linear_expected(rows(i)))
    with pytest.raises(aioinfer.ClosedError):
        await batcher.infer(rows(0))
    assert not linear_model.closed  # the model belongs to the caller


async def test_models_without_a_batch_dimension_are_refused():
    async with aioinfer.load(models.reshape_fails_at_runtime(), device="CPU") as model:
        assert not can_batch(model)
        with pytest.raises(ValueError, match="leading dimensions"):
            Batcher(model)


async def test_different_trailing_shapes_run_in_separate_batches():
    async with (
        aioinfer.load(models.dynamic_sum(), device="CPU", config=models.EXACT) as model,
        Batcher(model, max_batch_size=8, max_delay_ms=20) as batcher,
    ):
        xs = [np.full((1, 2 + i % 3), i, np.float32) for i in range(9)]
        outs = await asyncio.gather(*(batcher.infer(x) for x in xs))
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out["s"], x.sum(axis=1))
