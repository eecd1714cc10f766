"""aioinfer.Batcher on real exact models: grouping, scattering, isolation of bad or departing callers."""

from __future__ import annotations

import asyncio
import re

import anyio
import models
import numpy as np
import openvino as ov
import pytest

import aioinfer
from aioinfer._batcher import Batcher


def rows(start: int, n: int = 1) -> np.ndarray:
    return (np.arange(start * 4, (start + n) * 4, dtype=np.float32) / 8).reshape(n, 4)


async def test_concurrent_calls_are_grouped_and_each_gets_its_own_rows(linear_model):
    sizes: list[int] = []
    async with Batcher(linear_model, max_batch_size=8, max_delay=0.05, on_batch=sizes.append) as batcher:
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
        async with Batcher(linear_model, max_batch_size=64, max_delay=0.001) as batcher:
            out = await batcher.infer(rows(1))  # alone: must not wait for 63 others that never come
    np.testing.assert_array_equal(out[0], models.linear_expected(rows(1)))


async def test_a_bad_input_fails_only_its_own_call(linear_model):
    async with Batcher(linear_model, max_batch_size=8, max_delay=0.02) as batcher:
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
    real = linear_model.run_adapted
    runs: list[int] = []  # rows of every inference tried, failed or not

    async def faulty(inputs: dict[int, np.ndarray], timeout: float | None = None) -> aioinfer.Outputs:
        runs.append(len(inputs[0]))
        if (inputs[0][:, 0] == -1).any():
            raise aioinfer.InferenceError("injected device fault")
        return await real(inputs, timeout)

    monkeypatch.setattr(linear_model, "run_adapted", faulty)
    marked = np.full((2, 4), -1, np.float32)
    xs = [rows(i, n=1 + i % 2) for i in range(5)]
    xs.insert(2, marked)
    sizes: list[int] = []
    async with Batcher(linear_model, max_batch_size=16, max_delay=0.05, on_batch=sizes.append) as batcher:
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
    async with Batcher(linear_model, max_batch_size=8, max_delay=0.03) as batcher:
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
    async with Batcher(linear_model, max_batch_size=2, max_delay=0, max_queue=3) as batcher:
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
        Batcher(model, max_batch_size=8, max_delay=0.02) as batcher,
    ):
        assert batcher.max_batch_size == 3
        outs = await asyncio.gather(*(batcher.infer(rows(i)) for i in range(7)))
        with pytest.raises(aioinfer.InputShapeError):
            await batcher.infer(rows(0, n=4))
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out[0], rows(i) + 1)
    assert batcher.items == 7 and batcher.batches >= 3


async def test_close_finishes_waiting_calls_then_refuses(linear_model):
    batcher = Batcher(linear_model, max_batch_size=4, max_delay=0.05)
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
        with pytest.raises(aioinfer.NotBatchableError, match="leading dimensions"):
            Batcher(model)
        with pytest.raises(aioinfer.NotBatchableError, match="leading dimensions"):
            await Batcher.checked(model)


async def test_different_trailing_shapes_run_in_separate_batches():
    async with (
        aioinfer.load(models.dynamic_sum(), device="CPU", config=models.EXACT) as model,
        Batcher(model, max_batch_size=8, max_delay=0.02) as batcher,
    ):
        xs = [np.full((1, 2 + i % 3), i, np.float32) for i in range(9)]
        outs = await asyncio.gather(*(batcher.infer(x) for x in xs))
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out["s"], x.sum(axis=1))


# -- which models may be batched: the probe of Batcher.checked and the checks of Batcher -------------

SEPARABLE = {
    "dynamic batch": lambda: aioinfer.load(models.linear(), device="CPU", config=models.EXACT),
    "fixed batch, padded": lambda: aioinfer.load(models.linear([4, 4]), device="CPU", config=models.EXACT),
    "integer input": lambda: aioinfer.load(models.two_in_two_out(), device="CPU", config=models.EXACT),
    "device's default precision": lambda: aioinfer.load(models.slow_conv(32, 2), device="CPU"),
}


@pytest.mark.parametrize("load", SEPARABLE.values(), ids=SEPARABLE.keys())
async def test_checked_batches_a_separable_model_and_says_how_it_knows(load):
    async with load() as model:
        batcher = await Batcher.checked(model, max_batch_size=8)
        assert batcher.basis.startswith("probe: each row of a batch of")
        probed = model.stats().completed  # the probe's inferences: a batch, then each row alone
        assert probed == 1 + min(3, batcher.max_batch_size) and model.stats().failed == 0
        async with batcher:
            xs = [
                {i: np.full((1, *info.shape[1:]), k, info.dtype) for i, info in enumerate(model.info.inputs)}
                for k in range(6)
            ]
            outs = await asyncio.gather(*(batcher.infer(x) for x in xs))
            for x, out in zip(xs, outs, strict=True):
                alone = await model.infer({i: _stack_to(a, model) for i, a in x.items()})
                for got, want in zip(out, alone, strict=True):
                    np.testing.assert_array_equal(got, want[:1])
        assert batcher.items == 6


def _stack_to(row: np.ndarray, model: aioinfer.AsyncModel) -> np.ndarray:
    """``row`` repeated to the model's fixed batch size, if it has one (as the Batcher pads)."""
    fixed = model.info.inputs[0].shape[0]
    return np.repeat(row, fixed, axis=0) if fixed > 1 else row


REFUSED = {  # the model, why it is refused, how many rows it takes
    "rows interact": (models.rows_mixed([-1, 4]), "rows interacting on output 'y'", 2),
    "rows interact with padding": (models.rows_mixed([4, 4]), "rows interacting on output 'y'", 4),
    "batch dimension flattened": (
        models.batch_dropped("reshape", [-1, 4]),
        "output 'y' has shape [12] for a batch of 3 rows and [4] for one row",
        2,
    ),
    "batch dimension squeezed": (
        models.batch_dropped("squeeze", [-1, 4]),
        "inconsistent leading dimensions",
        1,
    ),
    "the probe fails to run": (models.needs_three_rows(), "the probe's inference failed (InferenceError", 3),
    "one row at most": (models.linear([1, 4]), "takes one row per inference: nothing to batch", 1),
}


@pytest.mark.parametrize("source, why, n", REFUSED.values(), ids=REFUSED.keys())
async def test_checked_refuses_a_model_batching_would_change_and_leaves_it_working(source, why, n):
    async with aioinfer.load(source, device="CPU", config=models.EXACT) as model:
        with pytest.raises(aioinfer.NotBatchableError) as refused:
            await Batcher.checked(model, max_batch_size=8)
        assert why in str(refused.value)
        assert (await model.infer(np.ones((n, 4), np.float32)))[0].size > 0  # the model still serves
        assert model.stats().in_flight == 0


async def test_a_batcher_never_hands_out_rows_of_outputs_that_lost_the_batch_dimension():
    # Constructed directly, a Batcher trusts the caller that rows do not interact; it can still see
    # that outputs do not come back with one row per input row, and fails those calls instead of
    # cutting every caller a wrong slice.
    async with (
        aioinfer.load(models.batch_dropped("reshape", [-1, 4]), device="CPU", config=models.EXACT) as model,
        Batcher(model, max_batch_size=8, max_delay=0.02) as batcher,
    ):
        assert batcher.basis == "declared batch-separable by the caller (no probe)"
        results = await asyncio.gather(*(batcher.infer(rows(i)) for i in range(5)), return_exceptions=True)
        for result in results:
            assert isinstance(result, aioinfer.NotBatchableError), result
            assert re.search(r"output 'y' came back with shape \[\d+\] for a batch of \d rows", str(result))
        assert batcher.batches == batcher.items == 0  # nothing was answered
        np.testing.assert_array_equal((await model.infer(rows(1)))[0], models.linear_expected(rows(1))[0])
