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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import openvino as ov
import openvino.opset13 as opset

from ._errors import InputCountError, InputShapeError
from ._loading import compile_model, read_model, reshape
from ._model import DEFAULT_HINT, AsyncModel

METHODS = ("sync", "queue", "to_thread", "aioinfer")
T = TypeVar("T")


@dataclass
class BenchResult:
    model: str
    shape: list[int]
    num_requests: int
    device_ms: float
    ips: dict[str, float]
    ratio_aioinfer_over_queue: float
    loop_lag_p99_ms: float


def compile_fixed(
    model: str | Path, shape: list[int] | None, device: str, config: Mapping[str, Any] | None = None
) -> tuple[ov.CompiledModel, list[int]]:
    """Compile ``model`` with its single input fixed to ``shape`` (``None``: the input's own static
    shape) and ``config`` (``PERFORMANCE_HINT`` THROUGHPUT unless it says otherwise); and that shape.
    Raises :class:`InputCountError` for a model of several inputs and :class:`InputShapeError` for
    a dynamic input without ``shape``."""
    ov_model = read_model(model)
    if len(ov_model.inputs) != 1:
        raise InputCountError(f"the model takes {len(ov_model.inputs)} inputs; the benchmark feeds one")
    if shape is None:
        pshape = ov_model.input(0).get_partial_shape()
        if pshape.is_dynamic:
            raise InputShapeError(
                f"the model's input has a dynamic shape {pshape}: give a fixed one (shape=, or --shape "
                "on the command line, e.g. 1,3,224,224)"
            )
        shape = [d.get_length() for d in pshape]
    reshape(ov_model, shape)
    compiled = compile_model(ov_model, device, {"PERFORMANCE_HINT": DEFAULT_HINT, **(config or {})})
    return compiled, shape


def run_sync(compiled: ov.CompiledModel, x: np.ndarray, n: int) -> float:
    request = compiled.create_infer_request()
    t0 = time.perf_counter()
    for _ in range(n):
        request.infer({0: x})
    return n / (time.perf_counter() - t0)


def run_queue(compiled: ov.CompiledModel, x: np.ndarray, n: int, jobs: int) -> float:
    queue = ov.AsyncInferQueue(compiled, jobs)

    def callback(request: ov.InferRequest, userdata: object) -> None:
        request.get_output_tensor(0).data.copy()  # the same work aioinfer does: outputs the caller owns

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


async def run_aioinfer(model: AsyncModel, x: np.ndarray, n: int, concurrency: int) -> float:
    """Inferences/s with ``concurrency`` tasks awaiting in a loop."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await model.infer(x)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in _split(n, concurrency)))
    return n / (time.perf_counter() - t0)


async def lag_while(work: Awaitable[T]) -> tuple[T, list[float]]:
    """``work``'s result, and how late (ms) a 1 ms heartbeat woke, time after time, while it ran."""
    lags: list[float] = []
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - t - 0.001) * 1e3)
    except BaseException:  # cancelled: the work goes too
        task.cancel()
        raise
    return await task, lags


async def idle_overhead_us(n: int = 3000, device: str = "AUTO") -> float:
    """Median over ``n`` alternating pairs of (one ``await model.infer(x)`` on an idle pool) minus
    (one ``InferRequest.infer(x)``), on a model so small (``y = 2x + 1``, 1x4) that only the
    overhead remains."""
    x = opset.parameter([1, 4], np.float32, name="x")
    y = opset.add(opset.multiply(x, opset.constant(np.float32(2))), opset.constant(np.float32(1)))
    config = {"PERFORMANCE_HINT": "THROUGHPUT"}
    compiled = await asyncio.to_thread(compile_model, ov.Model([y], [x], "tiny"), device, config)
    request = compiled.create_infer_request()
    data = np.ones((1, 4), np.float32)
    ours, theirs = [], []
    async with AsyncModel(compiled, device=device) as model:
        for _ in range(n):
            t = time.perf_counter()
            request.infer({0: data})
            theirs.append(time.perf_counter() - t)
            t = time.perf_counter()
            await model.infer(data)
            ours.append(time.perf_counter() - t)
    return (statistics.median(ours) - statistics.median(theirs)) * 1e6


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


async def bench_model(
    model: str | Path,
    shape: list[int] | None = None,
    *,
    device: str = "AUTO",
    num_requests: int | None = None,
    config: Mapping[str, Any] | None = None,
    rounds: int = 5,
    seconds: float = 1.5,
    label: str | None = None,
    log: Callable[[str], None] = print,
) -> BenchResult:
    """Measure the four methods on one compiled model (see :func:`compile_fixed` for ``shape`` and
    ``config``), alternating their order each round, with ``num_requests`` requests (default: the
    device's optimum) for each method but ``sync``; ``rounds`` rounds of about ``seconds`` seconds
    per method. Raises :class:`ValueError` for ``rounds`` or ``seconds`` below 1 and 0."""
    if rounds < 1 or not seconds > 0:
        raise ValueError(f"rounds must be >= 1 and seconds > 0, got {rounds} and {seconds}")
    compiled, fixed = await asyncio.to_thread(compile_fixed, model, shape, device, config)
    jobs = num_requests or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    x = np.random.default_rng(0).random(fixed, dtype=np.float32)
    aio = AsyncModel(compiled, device=device, num_requests=jobs)
    try:
        for _ in range(10):
            await aio.infer(x)
        per_call = 1 / run_sync(compiled, x, 20)
        n = max(20, int(seconds / per_call))
        label = label or Path(model).stem
        hint = str(compiled.get_property("PERFORMANCE_HINT")).rpartition(".")[2]  # PerformanceMode.X
        log(f"{label} {fixed}: ~{per_call * 1e3:.2f} ms/inference sync, {jobs} requests, {hint}, {n} per run")
        ips: dict[str, list[float]] = {m: [] for m in METHODS}
        for r in range(rounds):
            order = METHODS if r % 2 == 0 else METHODS[::-1]
            for method in order:
                ips[method].append(await _run_method(method, aio, compiled, x, n, jobs))
            log(f"  round {r + 1}/{rounds}: " + "  ".join(f"{m} {ips[m][-1]:.0f}/s" for m in METHODS))
        _, lags = await lag_while(run_aioinfer(aio, x, n, concurrency=4 * jobs))
    finally:
        await aio.aclose()
    return BenchResult(
        model=label,
        shape=fixed,
        num_requests=jobs,
        device_ms=round(per_call * 1e3, 3),
        ips={m: round(statistics.median(v), 1) for m, v in ips.items()},
        ratio_aioinfer_over_queue=round(
            statistics.median(a / q for a, q in zip(ips["aioinfer"], ips["queue"], strict=True)), 3
        ),
        loop_lag_p99_ms=round(float(np.percentile(lags, 99)), 3),
    )


async def _run_method(
    method: str, aio: AsyncModel, compiled: ov.CompiledModel, x: np.ndarray, n: int, jobs: int
) -> float:
    """Inferences/s of one method."""
    if method == "sync":
        return run_sync(compiled, x, n)
    if method == "queue":
        return run_queue(compiled, x, n, jobs)
    if method == "to_thread":
        return await run_to_thread(compiled, x, n, jobs)
    return await run_aioinfer(aio, x, n, concurrency=4 * jobs)


def idle_overheads(device: str = "AUTO") -> dict[str, float]:
    """:func:`idle_overhead_us` under the default asyncio loop and, when installed, under uvloop."""
    runners: dict[str, Callable[[Any], Any]] = {"asyncio": asyncio.run}
    try:
        import uvloop

        runners["uvloop"] = uvloop.run
    except ImportError:
        pass
    return {name: run(idle_overhead_us(device=device)) for name, run in runners.items()}


def format_table(results: list[BenchResult], idle_us: dict[str, float] | None = None) -> str:
    """The results as a fixed-width table with a legend (and the idle overhead, if measured)."""
    head = "".join(f"{m:>12}" for m in METHODS)
    lines = [f"{'model':<22}{'ms':>7}{head}{'ratio':>8}{'lag p99':>10}"]
    for r in results:
        cells = "".join(f"{r.ips[m]:>10.0f}/s" for m in METHODS)
        lines.append(
            f"{r.model[:21]:<22}{r.device_ms:>7.2f}{cells}{r.ratio_aioinfer_over_queue:>8.3f}"
            f"{r.loop_lag_p99_ms:>8.2f}ms"
        )
    lines.append(
        "ms = one synchronous inference; ratio = aioinfer / AsyncInferQueue (median of per-round pairs); "
        "lag p99 = how late a 1 ms heartbeat woke while aioinfer saturated the device"
    )
    if idle_us:
        loops = ", ".join(f"{us:.1f} us ({name})" for name, us in idle_us.items())
        lines.append(
            f"idle overhead: one await model.infer() on an idle pool takes {loops} more than "
            "InferRequest.infer() (median, tiny 1x4 model)"
        )
    return "\n".join(lines)
