"""Side-by-side throughput of aioinfer and OpenVINO's own ways to run one compiled model.

Methods, run alternately on the same compiled model:
  sync       a plain synchronous loop of ``InferRequest.infer``
  queue      ``openvino.AsyncInferQueue`` with a callback: the native reference
  to_thread  naive asyncio: ``asyncio.to_thread`` with one request per worker
  aioinfer   many concurrent ``await model.infer(x)``
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov

from ._loading import compile_model, read_model, reshape
from ._model import AsyncModel

METHODS = ("sync", "queue", "to_thread", "aioinfer")


@dataclass
class BenchResult:
    model: str
    shape: list[int]
    num_requests: int
    device_ms: float
    ips: dict[str, float]
    ratio_aioinfer_over_queue: float
    loop_lag_p99_ms: float
    idle_overhead_us: float


def compile_fixed(model: str | Path, shape: list[int], device: str) -> ov.CompiledModel:
    """Compile ``model`` with its (single) input fixed to ``shape`` and the THROUGHPUT hint."""
    ov_model = read_model(model)
    reshape(ov_model, shape)
    return compile_model(ov_model, device, {"PERFORMANCE_HINT": "THROUGHPUT"})


def run_sync(compiled: ov.CompiledModel, x: np.ndarray, n: int) -> float:
    request = compiled.create_infer_request()
    t0 = time.perf_counter()
    for _ in range(n):
        request.infer({0: x})
    return n / (time.perf_counter() - t0)


def run_queue(compiled: ov.CompiledModel, x: np.ndarray, n: int, jobs: int) -> float:
    queue = ov.AsyncInferQueue(compiled, jobs)
    done = [0]

    def callback(request: ov.InferRequest, userdata: object) -> None:
        request.get_output_tensor(0).data.copy()  # the same work aioinfer does: outputs the caller owns
        done[0] += 1

    queue.set_callback(callback)
    t0 = time.perf_counter()
    for _ in range(n):
        queue.start_async({0: x})
    queue.wait_all()
    return n / (time.perf_counter() - t0)


async def run_to_thread(compiled: ov.CompiledModel, x: np.ndarray, n: int, jobs: int) -> float:
    async def worker(count: int) -> None:
        request = compiled.create_infer_request()
        for _ in range(count):
            await asyncio.to_thread(request.infer, {0: x})

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in _split(n, jobs)))
    return n / (time.perf_counter() - t0)


async def run_aioinfer(
    model: AsyncModel, x: np.ndarray, n: int, concurrency: int
) -> tuple[float, list[float]]:
    """Inferences/s with ``concurrency`` tasks awaiting in a loop, and the heartbeat's lateness (ms)."""
    lags: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - t - 0.001) * 1e3)

    async def worker(count: int) -> None:
        for _ in range(count):
            await model.infer(x)

    beat = asyncio.create_task(heartbeat())
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in _split(n, concurrency)))
    ips = n / (time.perf_counter() - t0)
    stop.set()
    await beat
    return ips, lags


async def idle_overhead_us(model: AsyncModel, compiled: ov.CompiledModel, x: np.ndarray, n: int) -> float:
    """Median of (one awaited infer on an idle pool) minus median of (one InferRequest.infer)."""
    request = compiled.create_infer_request()
    ours, theirs = [], []
    for _ in range(n):
        t = time.perf_counter()
        request.infer({0: x})
        theirs.append(time.perf_counter() - t)
        t = time.perf_counter()
        await model.infer(x)
        ours.append(time.perf_counter() - t)
    return (statistics.median(ours) - statistics.median(theirs)) * 1e6


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


async def bench_model(
    model: str | Path,
    shape: list[int],
    *,
    device: str = "CPU",
    rounds: int = 5,
    seconds: float = 1.5,
    label: str | None = None,
    log: Callable[[str], None] = print,
) -> BenchResult:
    """Measure the four methods on one compiled model, alternating their order each round."""
    compiled = await asyncio.to_thread(compile_fixed, model, shape, device)
    jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    aio = AsyncModel(compiled, device=device, num_requests=jobs)
    try:
        for _ in range(10):
            await aio.infer(x)
        per_call = 1 / run_sync(compiled, x, 20)
        n = max(20, int(seconds / per_call))
        label = label or Path(model).stem
        log(f"{label} {shape}: ~{per_call * 1e3:.2f} ms/inference sync, {jobs} requests, {n} per run")
        ips: dict[str, list[float]] = {m: [] for m in METHODS}
        lags: list[float] = []
        for r in range(rounds):
            order = METHODS if r % 2 == 0 else METHODS[::-1]
            for method in order:
                value, lag = await _run_method(method, aio, compiled, x, n, jobs)
                ips[method].append(value)
                lags += lag
            log(f"  round {r + 1}/{rounds}: " + "  ".join(f"{m} {ips[m][-1]:.0f}/s" for m in METHODS))
        overhead = await idle_overhead_us(aio, compiled, x, 2000 if per_call < 0.005 else 300)
    finally:
        await aio.aclose()
    return BenchResult(
        model=label,
        shape=shape,
        num_requests=jobs,
        device_ms=round(per_call * 1e3, 3),
        ips={m: round(statistics.median(v), 1) for m, v in ips.items()},
        ratio_aioinfer_over_queue=round(
            statistics.median(a / q for a, q in zip(ips["aioinfer"], ips["queue"], strict=True)), 3
        ),
        loop_lag_p99_ms=round(float(np.percentile(lags, 99)), 3),
        idle_overhead_us=round(overhead, 1),
    )


async def _run_method(
    method: str, aio: AsyncModel, compiled: ov.CompiledModel, x: np.ndarray, n: int, jobs: int
) -> tuple[float, list[float]]:
    """Inferences/s of one method (and the loop lag samples, for aioinfer)."""
    if method == "sync":
        return run_sync(compiled, x, n), []
    if method == "queue":
        return run_queue(compiled, x, n, jobs), []
    if method == "to_thread":
        return await run_to_thread(compiled, x, n, jobs), []
    return await run_aioinfer(aio, x, n, concurrency=4 * jobs)


def format_table(results: list[BenchResult]) -> str:
    """The results as a fixed-width table with a legend."""
    lines = [
        f"{'model':<22}{'ms':>7}"
        + "".join(f"{m:>12}" for m in METHODS)
        + f"{'ratio':>8}{'lag p99':>10}{'idle +':>10}"
    ]
    for r in results:
        cells = "".join(f"{r.ips[m]:>10.0f}/s" for m in METHODS)
        lines.append(
            f"{r.model:<22}{r.device_ms:>7.2f}{cells}{r.ratio_aioinfer_over_queue:>8.3f}"
            f"{r.loop_lag_p99_ms:>8.2f}ms{r.idle_overhead_us:>8.1f}us"
        )
    lines.append(
        "ms = one synchronous inference; ratio = aioinfer / AsyncInferQueue (median of per-round pairs); "
        "lag p99 = how late a 1 ms heartbeat woke while aioinfer saturated the device; "
        "idle + = median await model.infer() minus median InferRequest.infer() on an idle pool"
    )
    return "\n".join(lines)
