"""Side-by-side throughput of aioinfer and OpenVINO's own ways to run one compiled model, on every
async backend, and what one await costs beside a bare hand-made bridge.

Methods, run alternately on the same compiled model:
  sync       a plain synchronous loop of ``InferRequest.infer``
  queue      ``openvino.AsyncInferQueue`` with a callback: the native reference
  to_thread  naive async (on asyncio): a worker thread per request, ``anyio.to_thread.run_sync``
  aioinfer   many concurrent ``await model.infer(x)``, in a run of each backend: asyncio, uvloop, trio
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import numpy as np
import openvino as ov
import openvino.opset13 as opset

from ._errors import InputCountError, InputShapeError
from ._loading import compile_model, read_model, reshape, used_precision
from ._model import DEFAULT_HINT, AsyncModel

METHODS = ("sync", "queue", "to_thread", "aioinfer")
LOOPS: dict[str, tuple[str, dict[str, Any]]] = {  # name: anyio backend, its options
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}
T = TypeVar("T")


@dataclass
class LoopResult:
    """aioinfer on one backend: inferences/s (median of the rounds), its ratio to AsyncInferQueue
    (median of per-round pairs), and the event loop's lag p99 while it saturated the device."""

    ips: float
    ratio_over_queue: float
    loop_lag_p99_ms: float


@dataclass
class BenchResult:
    model: str
    shape: list[int]
    num_requests: int
    device_ms: float
    ips: dict[str, float]  # by method (median of the rounds); "aioinfer" is aioinfer on asyncio
    loops: dict[str, LoopResult]


@dataclass
class IdleResult:
    """Median µs of one call on an idle model (tiny 1x4), each way measured alternately in one run."""

    aioinfer_us: float  # await model.infer(x)
    bare_us: float  # the bare hop of :func:`bare_hop`, input tensor filled in place
    bare_inputs_us: float  # the same hop with ``start_async({0: x})``
    infer_us: float  # InferRequest.infer(x), synchronous

    @property
    def ratio(self) -> float:
        """aioinfer's await over the bare hop's."""
        return self.aioinfer_us / self.bare_us


def available_loops() -> tuple[str, ...]:
    """The backends of :data:`LOOPS` this interpreter can run: asyncio, and uvloop and trio where
    installed."""
    return tuple(name for name in LOOPS if name == "asyncio" or importlib.util.find_spec(name) is not None)


def run_on(loop: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``fn(*args)`` in a new run of ``loop`` (a name of :data:`LOOPS`)."""
    backend, options = LOOPS[loop]
    return anyio.run(fn, *args, backend=backend, backend_options=options)


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
            await anyio.to_thread.run_sync(request.infer, {0: x})

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for count in _split(n, jobs):
            tg.start_soon(worker, count)
    return n / (time.perf_counter() - t0)


async def run_aioinfer(model: AsyncModel, x: np.ndarray, n: int, concurrency: int) -> float:
    """Inferences/s with ``concurrency`` tasks awaiting in a loop."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await model.infer(x)

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for count in _split(n, concurrency):
            tg.start_soon(worker, count)
    return n / (time.perf_counter() - t0)


async def lag_while(work: Awaitable[T]) -> tuple[T, list[float]]:
    """``work``'s result, and how late (ms) a 1 ms heartbeat woke, time after time, while it ran
    (on any backend)."""
    lags: list[float] = []
    result: list[T] = []
    finished = anyio.Event()

    async def run() -> None:
        try:
            result.append(await work)
        finally:
            finished.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        while not finished.is_set():
            t = time.perf_counter()
            await anyio.sleep(0.001)
            lags.append((time.perf_counter() - t - 0.001) * 1e3)
    return result[0], lags


def bare_hop(
    compiled: ov.CompiledModel, backend: str, *, fill: bool
) -> Callable[[np.ndarray], Awaitable[Any]]:
    """``await hop(x)``: the least any bridge must do for one inference, with no aioinfer code: give
    ``x`` to a request (written into its input tensor with ``fill``, else ``start_async({0: x})``),
    copy the output in the completion callback and wake the loop through the backend's own
    thread-safe call: asyncio's ``call_soon_threadsafe`` setting a future, trio's
    ``TrioToken.run_sync_soon`` setting an event. For one caller at a time."""
    request = compiled.create_infer_request()
    tensor = request.get_input_tensor(0)
    box: list[Any] = [None, None]  # the waiter, the output

    def start(x: np.ndarray) -> None:
        if fill:
            tensor.data[...] = x
            request.start_async()
        else:
            request.start_async({0: x})

    if backend == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()

        def wake_trio(_: object) -> None:
            box[1] = request.get_output_tensor(0).data.copy()
            token.run_sync_soon(box[0].set)

        async def hop_trio(x: np.ndarray) -> Any:
            box[0] = event = trio.Event()
            start(x)
            await event.wait()
            return box[1]

        request.set_callback(wake_trio, None)
        return hop_trio

    loop = asyncio.get_running_loop()

    def wake_asyncio(_: object) -> None:
        loop.call_soon_threadsafe(box[0].set_result, request.get_output_tensor(0).data.copy())

    async def hop_asyncio(x: np.ndarray) -> Any:
        box[0] = future = loop.create_future()
        start(x)
        return await future

    request.set_callback(wake_asyncio, None)
    return hop_asyncio


async def idle_costs(compiled: ov.CompiledModel, backend: str, device: str, n: int) -> IdleResult:
    """In the running loop (``backend``: its anyio name): ``n`` rounds of one call each way, in an
    order that rotates from round to round; the median of each."""
    request = compiled.create_infer_request()
    data = np.ones((1, 4), np.float32)
    async with AsyncModel(compiled, device=device, num_requests=1) as model:

        async def infer(x: np.ndarray) -> Any:
            return request.infer({0: x})

        ways = [
            model.infer,
            bare_hop(compiled, backend, fill=True),
            bare_hop(compiled, backend, fill=False),
            infer,
        ]
        times: list[list[float]] = [[] for _ in ways]
        for r in range(n):
            for k in range(len(ways)):
                i = (r + k) % len(ways)
                t = time.perf_counter()
                await ways[i](data)
                times[i].append(time.perf_counter() - t)
    return IdleResult(*(round(statistics.median(t) * 1e6, 1) for t in times))


def idle_overheads(device: str = "AUTO", n: int = 2000) -> dict[str, IdleResult]:
    """:func:`idle_costs` on a model so small (``y = 2x + 1``, 1x4) that only the overhead remains,
    in a run of each available backend."""
    x = opset.parameter([1, 4], np.float32, name="x")
    y = opset.add(opset.multiply(x, opset.constant(np.float32(2))), opset.constant(np.float32(1)))
    compiled = compile_model(ov.Model([y], [x], "tiny"), device, {"PERFORMANCE_HINT": "THROUGHPUT"})
    return {loop: run_on(loop, idle_costs, compiled, LOOPS[loop][0], device, n) for loop in available_loops()}


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def bench_model(
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
    """Measure the methods on one compiled model (see :func:`compile_fixed` for ``shape`` and
    ``config``), aioinfer in a run of each available backend right beside a run of AsyncInferQueue
    (the ratio's pair), alternating their order each round, with ``num_requests`` requests
    (default: the device's optimum) for each method but ``sync``; ``rounds`` rounds of about
    ``seconds`` seconds per run. Raises :class:`ValueError` for
    ``rounds`` or ``seconds`` below 1 and 0."""
    if rounds < 1 or not seconds > 0:
        raise ValueError(f"rounds must be >= 1 and seconds > 0, got {rounds} and {seconds}")
    compiled, fixed = compile_fixed(model, shape, device, config)
    jobs = num_requests or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    x = np.random.default_rng(0).random(fixed, dtype=np.float32)
    run = _Runner(compiled, device, x, jobs)
    per_call = 1 / max(run_sync(compiled, x, 1) for _ in range(20))  # the fastest: least disturbed
    n = max(20, int(seconds / per_call))
    label = label or Path(model).stem
    hint = str(compiled.get_property("PERFORMANCE_HINT")).rpartition(".")[2]  # PerformanceMode.X
    log(f"{label} {fixed}: ~{per_call * 1e3:.2f} ms/inference sync, {jobs} requests, {hint}, {n} per run")
    loops = available_loops()
    steps = ["sync", "to_thread", *loops]  # a backend's step: AsyncInferQueue and aioinfer on it, in turn
    ips: dict[str, list[float]] = {"sync": [], "to_thread": [], "queue": []}
    pairs: dict[str, list[tuple[float, float]]] = {loop: [] for loop in loops}  # (aioinfer, queue)
    for r in range(rounds):
        flip = r % 2 == 1
        for step in steps[::-1] if flip else steps:
            if step not in LOOPS:
                ips[step].append(run.method(step, n))
                continue
            first, second = ("queue", step)[:: -1 if flip else 1]
            got = {first: run.method(first, n), second: run.method(second, n)}
            ips["queue"].append(got["queue"])
            pairs[step].append((got[step], got["queue"]))
        cells = [f"sync {ips['sync'][-1]:.0f}/s", f"to_thread {ips['to_thread'][-1]:.0f}/s"]
        cells += [f"{loop} {pairs[loop][-1][0]:.0f}/s vs queue {pairs[loop][-1][1]:.0f}/s" for loop in loops]
        log(f"  round {r + 1}/{rounds}: " + "  ".join(cells))
    by_loop = {loop: _loop_result(pairs[loop], run_on(loop, run.lags, n)) for loop in loops}
    medians = {m: round(statistics.median(v), 1) for m, v in ips.items()}
    return BenchResult(
        model=label,
        shape=fixed,
        num_requests=jobs,
        device_ms=round(per_call * 1e3, 3),
        ips={m: by_loop["asyncio"].ips if m == "aioinfer" else medians[m] for m in METHODS},
        loops=by_loop,
    )


def _loop_result(pairs: list[tuple[float, float]], lags: list[float]) -> LoopResult:
    """aioinfer on one backend, from each round's (aioinfer, AsyncInferQueue run beside it)
    inferences/s and the loop's lags in ms."""
    return LoopResult(
        ips=round(statistics.median(a for a, _ in pairs), 1),
        ratio_over_queue=round(statistics.median(a / q for a, q in pairs), 3),
        loop_lag_p99_ms=round(float(np.percentile(lags, 99)), 3),
    )


class _Runner:
    """One method's run on the benchmark's compiled model, its input and its number of requests."""

    def __init__(self, compiled: ov.CompiledModel, device: str, x: np.ndarray, jobs: int) -> None:
        self.compiled, self.device, self.x, self.jobs = compiled, device, x, jobs
        self.precision = used_precision(compiled)

    def method(self, name: str, n: int) -> float:
        """Inferences/s of a method but aioinfer, or of aioinfer in a run of the backend ``name``."""
        if name == "sync":
            return run_sync(self.compiled, self.x, n)
        if name == "queue":
            return run_queue(self.compiled, self.x, n, self.jobs)
        if name == "to_thread":
            return run_on("asyncio", run_to_thread, self.compiled, self.x, n, self.jobs)
        return run_on(name, self.aioinfer, n)

    def model(self) -> AsyncModel:
        """A model on the benchmark's compiled model, bound to the running loop."""
        return AsyncModel(self.compiled, device=self.device, num_requests=self.jobs, precision=self.precision)

    async def aioinfer(self, n: int) -> float:
        async with self.model() as model:
            await run_aioinfer(model, self.x, 2 * self.jobs, self.jobs)  # every request warm
            return await run_aioinfer(model, self.x, n, concurrency=4 * self.jobs)

    async def lags(self, n: int) -> list[float]:
        """The loop's lag in ms while aioinfer saturates the device."""
        async with self.model() as model:
            _, lags = await lag_while(run_aioinfer(model, self.x, n, concurrency=4 * self.jobs))
        return lags


def format_table(results: list[BenchResult], idle: dict[str, IdleResult] | None = None) -> str:
    """The results as fixed-width tables with a legend: every method (aioinfer on asyncio), aioinfer
    on each backend, and the idle cost of one await on each backend, if measured."""
    head = "".join(f"{m:>12}" for m in METHODS)
    lines = [f"{'model':<22}{'ms':>7}{head}{'ratio':>8}{'lag p99':>10}"]
    for r in results:
        cells = "".join(f"{r.ips[m]:>10.0f}/s" for m in METHODS)
        on_asyncio = r.loops["asyncio"]
        lines.append(
            f"{r.model[:21]:<22}{r.device_ms:>7.2f}{cells}{on_asyncio.ratio_over_queue:>8.3f}"
            f"{on_asyncio.loop_lag_p99_ms:>8.2f}ms"
        )
    lines.append(
        "ms = one synchronous inference (fastest of 20); aioinfer on asyncio; ratio = aioinfer / "
        "AsyncInferQueue (median of per-round pairs); lag p99 = how late a 1 ms heartbeat woke while "
        "aioinfer saturated the device"
    )
    lines += ["", f"{'model':<22}{'backend':<10}{'aioinfer':>12}{'queue':>12}{'ratio':>8}{'lag p99':>10}"]
    for r in results:
        for loop, on in r.loops.items():
            lines.append(
                f"{r.model[:21]:<22}{loop:<10}{on.ips:>10.0f}/s{r.ips['queue']:>10.0f}/s"
                f"{on.ratio_over_queue:>8.3f}{on.loop_lag_p99_ms:>8.2f}ms"
            )
    lines.append(
        "aioinfer in a run of each backend, each right beside a run of AsyncInferQueue (ratio: median of "
        "those pairs), alternating with the other methods"
    )
    if idle:
        lines += [
            "",
            f"{'idle overhead':<14}{'await infer':>13}{'bare hop':>11}{'ratio':>7}"
            f"{'bare start_async(x)':>21}{'InferRequest.infer':>20}",
        ]
        for loop, c in idle.items():
            lines.append(
                f"{loop:<14}{c.aioinfer_us:>10.1f} us{c.bare_us:>8.1f} us{c.ratio:>7.2f}"
                f"{c.bare_inputs_us:>18.1f} us{c.infer_us:>17.1f} us"
            )
        lines.append(
            "one call on an idle model (tiny 1x4), median, each way alternately in one run of each backend; "
            "bare hop = start_async on the request's filled input tensor + a callback copying the output "
            "+ the backend's thread-safe wake-up, no aioinfer code; ratio = await infer / bare hop"
        )
    return "\n".join(lines)
