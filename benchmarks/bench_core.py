"""Core benchmark: aioinfer's request pool against OpenVINO's own ways of running a compiled model.

On the same compiled model, in one run, alternating the methods and repeating, it reports inferences/s for
  (a) sync          a plain synchronous loop of ``InferRequest.infer``
  (b) queue         ``openvino.AsyncInferQueue`` with a callback: the native reference
  (c) to_thread     naive asyncio: ``asyncio.to_thread`` with one request per worker
  (d) aioinfer      many concurrent ``await model.infer(x)``
then the ratio aioinfer / AsyncInferQueue (median of the per-round ratios), the event-loop lag p99 while
aioinfer saturates the device (how late a 1 ms heartbeat wakes), and the median overhead of one
``await model.infer()`` on an idle pool over ``InferRequest.infer()``.

    python benchmarks/bench_core.py                  # PP-OCR classifier (~2 ms) and recognizer (~10 ms)
    python benchmarks/bench_core.py --rounds 7 --seconds 2 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import openvino as ov

import aioinfer
from aioinfer._loading import core
from aioinfer._bundled import bundled_model

# (label, bundled model, fixed input shape)
CASES = {
    "cls": ("PP-OCR classifier", "cls", [1, 3, 48, 192]),
    "rec": ("PP-OCR recognizer", "rec", [1, 3, 48, 64]),
}
METHODS = ("sync", "queue", "to_thread", "aioinfer")


@dataclass
class CaseResult:
    model: str
    shape: list[int]
    num_requests: int
    device_ms: float
    ips: dict[str, float]
    ratio_aioinfer_over_queue: float
    loop_lag_p99_ms: float
    idle_overhead_us: float


def compile_case(kind: str, shape: list[int], device: str) -> ov.CompiledModel:
    model = core().read_model(str(bundled_model(kind)))
    model.reshape(shape)
    return core().compile_model(model, device, {"PERFORMANCE_HINT": "THROUGHPUT"})


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


async def run_aioinfer(model: aioinfer.AsyncModel, x: np.ndarray, n: int, concurrency: int) -> tuple[float, list[float]]:
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


async def idle_overhead_us(model: aioinfer.AsyncModel, compiled: ov.CompiledModel, x: np.ndarray, n: int) -> float:
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


async def bench_case(kind: str, device: str, rounds: int, seconds: float) -> CaseResult:
    label, bundled, shape = CASES[kind]
    compiled = await asyncio.to_thread(compile_case, bundled, shape, device)
    jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    model = aioinfer.AsyncModel(compiled, device=device, num_requests=jobs)
    try:
        for _ in range(10):
            await model.infer(x)
        per_call = 1 / run_sync(compiled, x, 20)
        n = max(20, int(seconds / per_call))
        print(f"\n{label} {shape}: ~{per_call * 1e3:.2f} ms/inference sync, {jobs} requests, {n} per run",
              file=sys.stderr)
        ips: dict[str, list[float]] = {m: [] for m in METHODS}
        lags: list[float] = []
        for r in range(rounds):
            order = METHODS if r % 2 == 0 else tuple(reversed(METHODS))
            for method in order:
                if method == "sync":
                    ips[method].append(run_sync(compiled, x, n))
                elif method == "queue":
                    ips[method].append(run_queue(compiled, x, n, jobs))
                elif method == "to_thread":
                    ips[method].append(await run_to_thread(compiled, x, n, jobs))
                else:
                    value, lag = await run_aioinfer(model, x, n, concurrency=4 * jobs)
                    ips[method].append(value)
                    lags += lag
            print(f"  round {r + 1}: " + "  ".join(f"{m} {ips[m][-1]:.0f}/s" for m in METHODS), file=sys.stderr)
        ratio = statistics.median(a / q for a, q in zip(ips["aioinfer"], ips["queue"]))
        overhead = await idle_overhead_us(model, compiled, x, 2000 if per_call < 0.005 else 300)
        return CaseResult(
            model=label,
            shape=shape,
            num_requests=jobs,
            device_ms=round(per_call * 1e3, 3),
            ips={m: round(statistics.median(v), 1) for m, v in ips.items()},
            ratio_aioinfer_over_queue=round(ratio, 3),
            loop_lag_p99_ms=round(float(np.percentile(lags, 99)), 3),
            idle_overhead_us=round(overhead, 1),
        )
    finally:
        await model.aclose()


def print_table(results: list[CaseResult]) -> None:
    head = f"{'model':<20}{'ms':>7}" + "".join(f"{m:>11}" for m in METHODS)
    print(head + f"{'ratio':>8}{'lag p99':>10}{'idle +us':>10}")
    for r in results:
        cells = "".join(f"{r.ips[m]:>9.0f}/s" for m in METHODS)
        print(f"{r.model:<20}{r.device_ms:>7.2f}{cells}{r.ratio_aioinfer_over_queue:>8.3f}"
              f"{r.loop_lag_p99_ms:>8.2f}ms{r.idle_overhead_us:>8.1f}us")
    print("ratio = aioinfer / AsyncInferQueue (median of per-round pairs); lag p99 = how late a 1 ms heartbeat "
          "woke while aioinfer saturated the device; idle +us = median await model.infer() - InferRequest.infer()")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.5, help="target duration of one method's run")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)

    async def all_cases() -> list[CaseResult]:
        return [await bench_case(k, args.device, args.rounds, args.seconds) for k in args.models]

    results = asyncio.run(all_cases())
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
