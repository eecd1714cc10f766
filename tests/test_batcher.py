"""aioinfer.Batcher on real exact models, on asyncio, uvloop and trio: grouping, scattering, isolation
of bad or departing callers, closing, and any runner with ``info`` (no OpenVINO compiled model)."""

from __future__ import annotations

import dataclasses
import gc
import re
import weakref
from typing import Any

import anyio
import models
import numpy as np
import openvino as ov
import pytest
from concurrency import gather

import aioinfer
from aioinfer._batcher import Batcher

pytestmark = pytest.mark.anyio


def rows(start: int, n: int = 1) -> np.ndarray:
    return (np.arange(start * 4, (start + n) * 4, dtype=np.float32) / 8).reshape(n, 4)


class Remote:
    """A runner with only ``info``, ``adapt`` and ``run_adapted`` (what a remote model offers: no
    OpenVINO ``compiled``), here over a real model. ``gated``: every inference waits at the gate
    until the test opens it, so a test can act while a batch is on the device (timing control only:
    the real model computes every answer)."""

    def __init__(self, model: aioinfer.AsyncModel, *, gated: bool = False, num_requests: int | None = None):
        self._model = model
        self.info = dataclasses.replace(model.info, num_requests=num_requests or model.info.num_requests)
        self.entered = anyio.Event()  # an inference reached the gate
        self.gate = anyio.Event()
        if not gated:
            self.gate.set()
        self.runs: list[int] = []  # rows of each inference

    def adapt(self, inputs: Any) -> dict[int, np.ndarray]:
        return self._model.adapt(inputs)

    async def run_adapted(
        self, arrays: dict[int, np.ndarray], timeout: float | None = None
    ) -> aioinfer.Outputs:
        self.runs.append(len(arrays[0]))
        self.entered.set()
        await self.gate.wait()
        return await self._model.run_adapted(arrays, timeout)


async def test_concurrent_calls_are_grouped_and_each_gets_its_own_rows(linear_model):
    sizes: list[int] = []
    async with Batcher(linear_model, max_batch_size=8, max_delay=0.05, on_batch=sizes.append) as batcher:
        xs = [rows(i, n=1 + i % 3) for i in range(60)]
        outs = await gather(*(batcher.infer(x) for x in xs))
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
        results = await gather(*calls, return_exceptions=True)
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
        results = await gather(*(batcher.infer(x) for x in xs), return_exceptions=True)
    assert isinstance(results[2], aioinfer.InferenceError) and "injected" in str(results[2])
    for i, (x, out) in enumerate(zip(xs, results, strict=True)):
        if i != 2:
            np.testing.assert_array_equal(out["y"], models.linear_expected(x))
    # one batch, then each call alone (concurrently: in any order)
    assert runs[0] == sum(map(len, xs)) and sorted(runs[1:]) == sorted(map(len, xs))
    good_rows = [len(x) for i, x in enumerate(xs) if i != 2]
    assert sorted(sizes) == sorted(good_rows)  # every row that ran is counted once
    assert batcher.items == batcher.batches == 5


async def test_a_caller_cancelled_while_waiting_for_company_leaves_the_batch_to_the_others(linear_model):
    sizes: list[int] = []
    results: dict[int, aioinfer.Outputs] = {}
    left = anyio.Event()

    async def call(i: int) -> None:
        results[i] = await batcher.infer(rows(i))

    async def impatient() -> None:
        with anyio.move_on_after(0.05) as scope:  # leaves while its batch still waits for company
            results[1] = await batcher.infer(rows(1))
        assert scope.cancelled_caught
        left.set()

    # a batch of 4 waits (up to 30 s) for 4 rows: it runs only once callers 3 and 4 come
    async with Batcher(linear_model, max_batch_size=4, max_delay=30, on_batch=sizes.append) as batcher:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in (0, 2):
                    tg.start_soon(call, i)
                tg.start_soon(impatient)
                await left.wait()
                for i in (3, 4):
                    tg.start_soon(call, i)
    assert sorted(results) == [0, 2, 3, 4]  # the one who left got nothing
    for i, out in results.items():
        np.testing.assert_array_equal(out[0], models.linear_expected(rows(i)))
    assert sizes == [4] and batcher.items == 4


async def test_a_caller_cancelled_while_its_batch_runs_gets_nothing_and_the_others_their_rows(linear_model):
    remote = Remote(linear_model, gated=True)
    results: dict[int, aioinfer.Outputs] = {}

    async def call(i: int, scope: anyio.CancelScope) -> None:
        with scope:
            results[i] = await batcher.infer(rows(i))

    scopes = [anyio.move_on_after(30) for _ in range(4)]
    async with Batcher(remote, max_batch_size=4, max_delay=30) as batcher:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i, scope in enumerate(scopes):
                    tg.start_soon(call, i, scope)
                await remote.entered.wait()  # the batch of all four is on the device
                scopes[2].cancel()
                await anyio.wait_all_tasks_blocked()
                remote.gate.set()
    assert scopes[2].cancelled_caught and sorted(results) == [0, 1, 3]
    for i, out in results.items():
        np.testing.assert_array_equal(out[0], models.linear_expected(rows(i)))
    assert remote.runs == [4] and batcher.items == 4  # the batch ran once, for everyone


async def test_a_caller_that_times_out_fails_alone(linear_model):
    async with Batcher(linear_model, max_batch_size=8, max_delay=0.03) as batcher:
        calls = [batcher.infer(rows(i)) for i in range(4)]
        calls.insert(2, batcher.infer(rows(99), timeout=0))
        results = await gather(*calls, return_exceptions=True)
    assert isinstance(results.pop(2), aioinfer.InferTimeout)
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out[0], models.linear_expected(rows(i)))


async def test_max_queue_rejects_at_once_while_the_calls_wait(linear_model):
    # one batch at a time on the device, held at the gate: the calls after it wait in the queue
    remote = Remote(linear_model, gated=True, num_requests=1)
    sizes: list[int] = []
    results: dict[int, aioinfer.Outputs] = {}

    async def call(i: int) -> None:
        results[i] = await batcher.infer(rows(i))

    batcher = Batcher(remote, max_batch_size=2, max_delay=0, max_queue=3, on_batch=sizes.append)
    async with batcher, anyio.create_task_group() as tg:
        tg.start_soon(call, 0)
        await remote.entered.wait()
        for i in (1, 2, 3):
            tg.start_soon(call, i)
        await anyio.wait_all_tasks_blocked()
        assert batcher.pending == 3
        with pytest.raises(aioinfer.QueueFull, match="max_queue=3"):
            await batcher.infer(rows(4))
        with pytest.raises(aioinfer.QueueFull):  # refused before its inputs are checked
            await batcher.infer(np.zeros((1, 5), np.float32))
        remote.gate.set()
    for i, out in results.items():
        np.testing.assert_array_equal(out[0], models.linear_expected(rows(i)))
    assert sorted(results) == [0, 1, 2, 3]
    assert sizes == [1, 2, 1]  # the calls that waited were batched as soon as the device was free
    assert remote.runs == [1, 2, 1] and batcher.items == 4


async def test_a_batch_shares_the_device_only_when_full(linear_model):
    # two requests, the first batch held at the gate: the next batch waits for company (or for the
    # device to be idle) rather than taking the second request for a few rows
    remote = Remote(linear_model, gated=True, num_requests=2)
    results: dict[int, aioinfer.Outputs] = {}

    async def call(i: int) -> None:
        results[i] = await batcher.infer(rows(i))

    async def arrive(i: int) -> None:
        tg.start_soon(call, i)
        await anyio.wait_all_tasks_blocked()

    batcher = Batcher(remote, max_batch_size=3, max_delay=0)
    async with batcher, anyio.create_task_group() as tg:
        try:
            await arrive(0)
            await remote.entered.wait()
            await arrive(1)
            await arrive(2)
            assert remote.runs == [1]  # two rows of three: they wait for company
            await arrive(3)
            assert remote.runs == [1, 3]  # full: it takes the second request
            await arrive(4)
            assert remote.runs == [1, 3] and batcher.pending == 1
        finally:
            remote.gate.set()  # a failed check must not leave the batches at the gate
    assert sorted(results) == [0, 1, 2, 3, 4]
    for i, out in results.items():
        np.testing.assert_array_equal(out[0], models.linear_expected(rows(i)))
    assert remote.runs == [1, 3, 1]  # the last one ran once the device was free


async def test_partial_overlap_lets_a_partial_batch_take_a_free_request(linear_model):
    # the same arrivals as above with partial_overlap=True: the second call does not wait for
    # company, it takes the second request at once
    remote = Remote(linear_model, gated=True, num_requests=2)
    results: dict[int, aioinfer.Outputs] = {}

    async def call(i: int) -> None:
        results[i] = await batcher.infer(rows(i))

    batcher = Batcher(remote, max_batch_size=3, max_delay=0, partial_overlap=True)
    async with batcher, anyio.create_task_group() as tg:
        try:
            tg.start_soon(call, 0)
            await remote.entered.wait()
            tg.start_soon(call, 1)
            await anyio.wait_all_tasks_blocked()
            assert remote.runs == [1, 1]
        finally:
            remote.gate.set()
    for i, out in results.items():
        np.testing.assert_array_equal(out[0], models.linear_expected(rows(i)))
    assert sorted(results) == [0, 1]


async def test_fixed_batch_model_is_padded():
    async with aioinfer.load(models.linear([4, 4]), device="CPU", config=models.EXACT) as model:
        sizes: list[int] = []
        async with Batcher(model, max_batch_size=16, on_batch=sizes.append) as batcher:
            assert batcher.max_batch_size == 4
            outs = await gather(*(batcher.infer(rows(i)) for i in range(3)))
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
        outs = await gather(*(batcher.infer(rows(i)) for i in range(7)))
        with pytest.raises(aioinfer.InputShapeError):
            await batcher.infer(rows(0, n=4))
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out[0], rows(i) + 1)
    assert batcher.items == 7 and batcher.batches >= 3


async def test_close_finishes_waiting_calls_at_once_then_refuses(linear_model):
    batcher = Batcher(linear_model, max_batch_size=4, max_delay=30)  # 2 calls wait for company
    results: dict[int, aioinfer.Outputs] = {}

    async def call(i: int) -> None:
        results[i] = await batcher.infer(rows(i))

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(call, i)
        await anyio.wait_all_tasks_blocked()  # every call waits in the batcher
        assert batcher._collectors == 1  # its background task: 2 calls wait for company
        with anyio.fail_after(20):  # not the 30 s of max_delay
            await batcher.aclose()
        assert batcher.items == 10 and batcher._collectors == 0  # all served; no task outlives aclose
    for i in range(10):
        np.testing.assert_array_equal(results[i][0], models.linear_expected(rows(i)))
    with pytest.raises(aioinfer.ClosedError):
        await batcher.infer(rows(0))
    await batcher.aclose()  # idempotent
    assert not linear_model.closed  # the model belongs to the caller


async def test_an_abandoned_batcher_leaves_no_task_behind(linear_model):
    # asyncio: a background task left waiting would be destroyed pending at the garbage collection
    # (reported to the loop's exception handler: the loop_errors fixture fails the test)
    batcher = Batcher(linear_model, max_batch_size=4, max_delay=0.01)
    outs = await gather(*(batcher.infer(rows(i)) for i in range(6)))
    np.testing.assert_array_equal(outs[5][0], models.linear_expected(rows(5)))
    await anyio.wait_all_tasks_blocked()
    assert batcher._collectors == 0  # idle: no task waits for calls that may never come
    gone = weakref.ref(batcher)
    del batcher
    gc.collect()
    assert gone() is None


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
        outs = await gather(*(batcher.infer(x) for x in xs))
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out["s"], x.sum(axis=1))


# -- any runner with info: a remote model has no OpenVINO compiled model ------------------------------


async def test_a_runner_without_a_compiled_model_is_batched_from_its_info():
    async with aioinfer.load(models.linear([4, 4]), device="CPU", config=models.EXACT) as model:
        remote = Remote(model)
        assert not hasattr(remote, "compiled")
        batcher = await Batcher.checked(remote, max_batch_size=16)
        assert batcher.basis.startswith("probe: each row of a batch of 3")
        async with batcher:
            assert batcher.max_batch_size == 4  # the fixed batch, from info's shapes
            outs = await gather(*(batcher.infer(rows(i)) for i in range(3)))
            with pytest.raises(aioinfer.InputShapeError, match="at most 4 rows"):
                await batcher.infer(rows(0, n=5))
            with pytest.raises(aioinfer.InputShapeError, match=r"expected shape \[\?,4\]"):
                await batcher.infer(np.zeros((1, 5), np.float32))
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out[0], models.linear_expected(rows(i)))
    assert set(remote.runs) == {4}  # every inference padded to the model's 4 rows


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
            outs = await gather(*(batcher.infer(x) for x in xs))
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
        results = await gather(*(batcher.infer(rows(i)) for i in range(5)), return_exceptions=True)
        for result in results:
            assert isinstance(result, aioinfer.NotBatchableError), result
            assert re.search(r"output 'y' came back with shape \[\d+\] for a batch of \d rows", str(result))
        assert batcher.batches == batcher.items == 0  # nothing was answered
        np.testing.assert_array_equal((await model.infer(rows(1)))[0], models.linear_expected(rows(1))[0])


# -- one event loop (or trio run) per batcher ---------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_batcher_made_in_one_run_refuses_another(backend: str) -> None:
    async def make() -> Batcher:
        async with aioinfer.load(models.linear(), device="CPU", config=models.EXACT) as model:
            return Batcher(model)

    batcher = anyio.run(make, backend=backend)

    async def use() -> None:
        with pytest.raises(aioinfer.EventLoopError, match=f"this batcher belongs to the {backend} event"):
            await batcher.infer(rows(0))
        with pytest.raises(aioinfer.EventLoopError, match="it was made in"):
            await batcher.aclose()

    anyio.run(use, backend=backend)
