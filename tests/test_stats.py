"""``model.stats()``: counters that follow every outcome of a job, latency percentiles, JSON."""

from __future__ import annotations

import json
from collections import deque

import models
import numpy as np
import pytest
from concurrency import gather

import aioinfer
from aioinfer._stats import Latency

pytestmark = pytest.mark.anyio


async def test_a_fresh_model_has_zero_counters_and_no_percentiles() -> None:
    async with aioinfer.load(models.linear(), device="CPU", num_requests=2) as model:
        stats = model.stats()
    counters = (stats.submitted, stats.completed, stats.failed, stats.cancelled, stats.rejected)
    assert counters == (0, 0, 0, 0, 0)
    assert (stats.in_flight, stats.queued, stats.num_requests) == (0, 0, 2)
    assert stats.device_ms == stats.await_ms == Latency(None, None, None)
    assert json.loads(json.dumps(stats.to_dict()))["device_ms"] == {"p50": None, "p95": None, "p99": None}


async def test_completed_and_failed_jobs_are_counted_with_percentiles() -> None:
    async with aioinfer.load(models.reshape_fails_at_runtime(), device="CPU", config=models.EXACT) as model:
        for length in (3, 4, 6, 5, 9):
            try:
                await model.infer(np.zeros(length, np.float32))
            except aioinfer.InferenceError:
                assert length % 3
        stats = model.stats()
    assert (stats.submitted, stats.completed, stats.failed, stats.cancelled) == (5, 3, 2, 0)
    for latency in (stats.device_ms, stats.await_ms):
        assert latency.p50 is not None and latency.p95 is not None and latency.p99 is not None
        assert 0 < latency.p50 <= latency.p95 <= latency.p99
    # each job's await spans its device time, so every percentile of the awaits is at least as long
    assert stats.await_ms.p50 >= stats.device_ms.p50 and stats.await_ms.p99 >= stats.device_ms.p99
    as_json = json.loads(json.dumps(stats.to_dict()))
    assert as_json["completed"] == 3 and as_json["await_ms"]["p99"] == stats.await_ms.p99


async def test_timeouts_count_as_cancelled_and_in_flight_never_exceeds_requests() -> None:
    size = 48
    async with aioinfer.load(models.slow_conv(size=size, layers=2), device="CPU", num_requests=1) as model:
        x = np.ones((1, 3, size, size), np.float32)
        # the last five wait behind 25 jobs: a zero timeout expires while they are queued
        calls = [model.infer(x, timeout=0 if i >= 25 else None) for i in range(30)]
        results = await gather(*calls, return_exceptions=True)
        stats = model.stats()
    timed_out = sum(isinstance(r, aioinfer.InferTimeout) for r in results)
    served = sum(isinstance(r, aioinfer.Outputs) for r in results)
    assert timed_out + served == 30 and timed_out >= 1
    assert (stats.submitted, stats.completed, stats.cancelled, stats.failed) == (30, served, timed_out, 0)
    assert (stats.in_flight, stats.queued, stats.num_requests) == (0, 0, 1)


def test_percentiles_are_over_the_recorded_samples() -> None:
    latency = Latency.of(deque([4.0, 1.0, 3.0, 2.0]))
    assert (latency.p50, latency.p95) == (2.5, 3.85)
    assert latency.p99 is not None and 3.85 < latency.p99 <= 4.0
