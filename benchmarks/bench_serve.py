"""Serving benchmark (issue 5): HTTP requests/s and p50/p99 latency on loopback, one run.

Servers on the same model (PP-OCR orientation classifier from the rapidocr wheel, input
[1,3,48,192], or with ``--model rec`` the recognizer at [1,3,48,64]; .npy in and out), each in
its own uvicorn subprocess on 127.0.0.1, all up at once:

* echo      - no inference: decodes the body and answers a constant (what HTTP alone costs);
* echo-grpc - no inference, over gRPC: a ``grpc.aio`` server (uvloop) that parses each
  ``ModelInferRequest`` and answers a constant (what gRPC alone costs: gRPC's own bound);
* naive     - an async Starlette endpoint that calls ``compiled_model(x)`` inline (blocks the loop);
* executor  - the same endpoint with ``run_in_executor`` (one infer request per worker thread);
* aioinfer  - ``aioinfer.asgi.create_app`` without batching (``max_batch_size=1``);
* batched   - ``create_app`` with dynamic batching (``max_batch_size=16``, or ``--max-batch-size``;
  ``max_delay=0.002``);

* oip-json, oip-binary, oip-grpc - ``aioinfer serve``'s server as ``batched``, driven over the Open
  Inference Protocol: ``/v2/models/cls/infer`` with JSON tensors, with the binary tensor data
  extension, and ``ModelInfer`` over gRPC (``raw_input_contents``, one channel per client);

* client-triton, client-grpc, client-triton-http, client-http - one ``aioinfer serve``-like OIP
  server (as ``oip-grpc``) driven by one shared client object per variant: ``tritonclient.grpc.aio``,
  ``aioinfer.load("grpc://...")``, ``tritonclient.http.aio`` (binary data) and
  ``aioinfer.load("http://...")``, in alternating rounds (``--rounds``) at the largest
  ``--clients``, the median of each reported with the ratio to ``tritonclient.grpc.aio``;

at 1, 16 and 64 concurrent clients (aiohttp, one connection each, a bounded number of requests),
beside the model's own ceiling: ``openvino.AsyncInferQueue`` with batch-1 jobs, no HTTP, and the
bound HTTP and inference sharing the cores set: 1 / (1/ceiling + 1/echo's requests/s).
``--rounds`` alternating rounds, each of every server at every client count and then the ceiling:
a round's ratios compare one moment of a shared box, whose speed drifts between moments; each
ratio is reported as its median over the rounds, with its range.
``--variants`` runs only some servers (echo is always run: the bound needs it). aioinfer's servers
load the model as ``aioinfer serve`` does by default (``PERFORMANCE_HINT`` THROUGHPUT, the device's
optimal number of infer requests), or as ``--hint`` and ``--num-requests`` say; the report quotes
their ``/v1/info``.

The clients all run in this process, on the cores the servers use. Its glibc malloc is told to keep
freed memory (``mallopt``: trim threshold 64 MiB, mmap threshold 4 MiB) rather than trim and
re-fault its heap at each large message, which made grpcio's client spend twice the CPU on rec's
212 KB answers; the servers keep glibc's defaults.

    python benchmarks/bench_serve.py
    python benchmarks/bench_serve.py --variants batched oip-binary oip-grpc --clients 64 --requests 3000
    python benchmarks/bench_serve.py --requests 400 --clients 1 16 64 --rounds 3 --json bench_serve.json
    python benchmarks/bench_serve.py --variants oip-grpc --clients 64 --hint LATENCY --num-requests 2
    python benchmarks/bench_serve.py --variants client-triton client-grpc client-triton-http client-http \
        --clients 64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SHAPES = {"cls": [1, 3, 48, 192], "rec": [1, 3, 48, 64]}  # ~1.6 ms and ~11 ms a job on 2 cores
KIND = "cls"  # set from --model, in the harness and in each server subprocess
SHAPE = SHAPES[KIND]
BATCH = 16  # the batching servers' max_batch_size, set from --max-batch-size likewise
HINT = "THROUGHPUT"  # aioinfer's servers' PERFORMANCE_HINT (--hint; aioinfer's default)
NUM_REQUESTS: int | None = None  # their infer requests (--num-requests; None: the device's optimum)
SERVERS = (
    "echo",
    "echo-grpc",
    "naive",
    "executor",
    "aioinfer",
    "batched",
    "oip-json",
    "oip-binary",
    "oip-grpc",
)
GRPC = ("echo-grpc", "oip-grpc")  # the servers driven over gRPC
OURS = ("aioinfer", "batched", "oip-json", "oip-binary", "oip-grpc")  # aioinfer's own servers
# one shared client object, one OIP server
CLIENTS = ("client-triton", "client-grpc", "client-triton-http", "client-http")
VARIANTS = SERVERS + CLIENTS
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
GRPC_OFFSET = 1000  # an OIP server's gRPC port: its HTTP port + this
CONFIG = {"PERFORMANCE_HINT": "THROUGHPUT"}


def model_path() -> str:
    import aioinfer

    return str(aioinfer.bundled_model(KIND))


def compile_model():
    import openvino as ov

    core = ov.Core()
    model = core.read_model(model_path())
    model.reshape({0: ov.PartialShape([-1, *SHAPE[1:]])})
    return core.compile_model(model, "CPU", CONFIG)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# -- the servers (run in a subprocess: ``bench_serve.py --serve VARIANT --port N``) ------------------


def build_app(variant: str):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    if variant in ("aioinfer", "batched") or variant.startswith("oip"):
        import aioinfer
        from aioinfer.asgi import create_app

        source = aioinfer.load(
            model_path(),
            device="CPU",
            config={"PERFORMANCE_HINT": HINT},
            num_requests=NUM_REQUESTS,
            reshape=[-1, *SHAPE[1:]],
            share_inputs=True,
        )
        return create_app(
            {KIND: source},
            max_batch_size=1 if variant == "aioinfer" else BATCH,
            max_delay=0.002,
            max_queue=1024,
        )

    compiled = compile_model()
    local = threading.local()

    def run(x: np.ndarray) -> np.ndarray:
        if not hasattr(local, "request"):
            local.request = compiled.create_infer_request()
        return local.request.infer(x)[0].copy()

    async def infer(request: Request) -> Response:
        x = np.load(io.BytesIO(await request.body()))
        if variant == "echo":
            y = np.zeros((len(x), 2), np.float32)
        elif variant == "naive":
            y = compiled(x)[0]
        else:
            y = await asyncio.get_running_loop().run_in_executor(None, run, x)
        return Response(npy(y), media_type="application/x-npy")

    async def ready(request: Request) -> Response:
        return JSONResponse({"status": "ready"})

    return Starlette(routes=[Route("/v1/infer", infer, methods=["POST"]), Route("/health/ready", ready)])


def serve(variant: str, port: int) -> None:
    import uvicorn

    if variant.startswith("oip"):  # as ``aioinfer serve --grpc-port``: HTTP and gRPC on one loop
        from aioinfer._cli.serve import _event_loop_runner
        from aioinfer._server import serve as serve_both

        app = build_app(variant)
        grpc_port = port + GRPC_OFFSET
        run = _event_loop_runner()  # the loop aioinfer serve runs on (uvloop when installed)
        run(serve_both(app, host="127.0.0.1", port=port, drain_timeout=5, grpc_port=grpc_port))
        return
    if variant == "echo-grpc":
        uvicorn.run(echo_grpc_app(port + GRPC_OFFSET), host="127.0.0.1", port=port, log_level="warning")
        return
    uvicorn.run(build_app(variant), host="127.0.0.1", port=port, log_level="warning")


def echo_grpc_app(grpc_port: int):
    """An HTTP app answering only ``/health/ready``, running beside it (same loop) a ``grpc.aio``
    server whose ModelInfer parses the request and answers one [1, 2] FP32 output, no inference."""
    import grpc
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from aioinfer._oip_proto import SERVICE, messages

    m = messages()
    answer = m["ModelInferResponse"](model_name=KIND, raw_output_contents=[bytes(8)])
    answer.outputs.add(name="y", datatype="FP32", shape=[1, 2])

    async def infer(request, context):
        return answer

    method = grpc.unary_unary_rpc_method_handler(
        infer,
        request_deserializer=m["ModelInferRequest"].FromString,
        response_serializer=m["ModelInferResponse"].SerializeToString,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 2**26)])
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": method}),)
        )
        server.add_insecure_port(f"127.0.0.1:{grpc_port}")
        await server.start()
        yield
        await server.stop(1)

    async def ready(request):
        return JSONResponse({"status": "ready"})

    return Starlette(routes=[Route("/health/ready", ready)], lifespan=lifespan)


# -- the clients --------------------------------------------------------------------------------


def lean_allocator() -> None:
    """Keep glibc's malloc in this process, the load generator's, from trimming its heap and
    re-faulting it at each large message (what made grpcio's client spend 1.5 ms a 212 KB answer
    of rec, against 0.8 without). The servers keep their defaults: this is the clients' process,
    which shares the box's cores with them; elsewhere than glibc, nothing changes."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_TRIM_THRESHOLD, 64 * 2**20)
    libc.mallopt(M_MMAP_THRESHOLD, 4 * 2**20)


async def wait_ready(url: str, proc: subprocess.Popen) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        while proc.poll() is None:
            try:
                async with session.get(f"{url}/health/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)  # a benchmark harness waiting for a subprocess to come up
    raise RuntimeError(f"the server exited with {proc.returncode}")


def oip_body(x: np.ndarray, binary: bool) -> tuple[bytes, dict[str, str]]:
    """An OIP /infer body for input ``x`` (named as the model's input 0), JSON or binary both ways."""
    tensor: dict = {"name": "x", "shape": list(x.shape), "datatype": "FP32"}
    if not binary:
        return json.dumps({"inputs": [{**tensor, "data": x.ravel().tolist()}]}).encode(), {}
    head = {"inputs": [{**tensor, "parameters": {"binary_data_size": x.nbytes}}]}
    header = json.dumps({**head, "parameters": {"binary_data_output": True}}).encode()
    return header + x.tobytes(), {"inference-header-content-length": str(len(header))}


def rows(answer: bytes, variant: str, length: str | None) -> int:
    """The rows of the first output in an answer of ``variant``'s server (0 if unreadable)."""
    if variant.startswith("oip"):
        head = json.loads(answer[: int(length)] if length else answer)
        return head["outputs"][0]["shape"][0]
    return np.load(io.BytesIO(answer)).shape[0]


@contextlib.asynccontextmanager
async def connection(url: str, variant: str):
    """One client's connection: a coroutine function sending one request, true if answered right."""
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    if variant in GRPC:
        import grpc

        from aioinfer._grpc import messages

        m = messages()
        message = m["ModelInferRequest"](model_name=KIND, raw_input_contents=[x.tobytes()])
        message.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
        request = message.SerializeToString()  # once, as the HTTP clients send a body built once
        port = int(url.rsplit(":", 1)[1]) + GRPC_OFFSET
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                response_deserializer=m["ModelInferResponse"].FromString,
            )

            async def call_grpc() -> bool:
                try:
                    return (await infer(request)).outputs[0].shape[0] == 1
                except grpc.aio.AioRpcError:
                    return False

            yield call_grpc
        return
    import aiohttp

    if variant.startswith("oip"):
        path = f"/v2/models/{KIND}/infer"
        body, headers = oip_body(x, variant == "oip-binary")
    else:
        path, body = "/v1/infer", npy(x)
        headers = {"content-type": "application/x-npy", "accept": "application/x-npy"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=timeout) as session:

        async def call() -> bool:
            try:
                async with session.post(f"{url}{path}", data=body, headers=headers) as response:
                    answer = await response.read()
                    length = response.headers.get("inference-header-content-length")
                    return response.status == 200 and rows(answer, variant, length) == 1
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return False

        yield call


@contextlib.asynccontextmanager
async def shared_client(url: str, variant: str, clients: int):
    """One client object for all concurrent clients, as an application holds one: a coroutine
    function sending one request through it, true if answered right."""
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    grpc_address = f"127.0.0.1:{int(url.rsplit(':', 1)[1]) + GRPC_OFFSET}"
    if variant == "client-triton":
        import tritonclient.grpc.aio as triton
        from tritonclient.utils import InferenceServerException

        client = triton.InferenceServerClient(grpc_address)
        try:
            output = (await client.get_model_metadata(KIND)).outputs[0].name
            tensor = triton.InferInput("x", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)

            async def call_triton() -> bool:
                try:
                    return (await client.infer(KIND, [tensor])).as_numpy(output).shape[0] == 1
                except InferenceServerException:
                    return False

            yield call_triton
        finally:
            await client.close()
        return
    if variant == "client-triton-http":
        import tritonclient.http.aio as triton_http

        client = triton_http.InferenceServerClient(url.split("://", 1)[1], conn_limit=clients)
        try:
            output = (await client.get_model_metadata(KIND))["outputs"][0]["name"]
            tensor = triton_http.InferInput("x", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x, binary_data=True)
            wanted = [triton_http.InferRequestedOutput(output, binary_data=True)]

            async def call_triton_http() -> bool:
                try:
                    answer = await client.infer(KIND, [tensor], outputs=wanted)
                    return answer.as_numpy(output).shape[0] == 1
                except Exception:  # tritonclient raises its own errors and aiohttp's
                    return False

            yield call_triton_http
        finally:
            await client.close()
        return
    import aioinfer

    remote = f"grpc://{grpc_address}/{KIND}" if variant == "client-grpc" else f"{url}/v2/models/{KIND}"
    async with aioinfer.load(remote, num_requests=clients) as model:

        async def call_aioinfer() -> bool:
            try:
                return (await model.infer(x))[0].shape[0] == 1
            except aioinfer.AioInferError:
                return False

        yield call_aioinfer


@contextlib.asynccontextmanager
async def given(call):
    yield call


async def load(url: str, clients: int, requests: int, variant: str = "echo", call=None) -> dict[str, float]:
    """``requests`` requests in all from ``clients`` concurrent clients (each with its own
    connection, or all through ``call``); requests/s, p50, p99 (ms)."""
    latencies: list[float] = []
    errors = 0

    async def client(n: int) -> None:
        nonlocal errors
        async with given(call) if call is not None else connection(url, variant) as call_one:
            for _ in range(n):
                t0 = time.perf_counter()
                ok = await call_one()
                latencies.append((time.perf_counter() - t0) * 1e3)
                errors += not ok  # one row back for the one sent

    per_client = max(1, requests // clients)
    await asyncio.gather(*(client(min(3, per_client)) for _ in range(clients)))  # warm-up
    latencies.clear()
    start = time.perf_counter()
    await asyncio.gather(*(client(per_client) for _ in range(clients)))
    elapsed = time.perf_counter() - start
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"rps": len(latencies) / elapsed, "p50_ms": float(p50), "p99_ms": float(p99), "errors": errors}


def ceiling_queue() -> Any:
    """An openvino.AsyncInferQueue of the model with its optimal number of requests."""
    import openvino as ov

    compiled = compile_model()
    return ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))


def ceiling(queue: Any, jobs: int) -> float:
    """Inferences/s of ``jobs`` batch-1 jobs through ``queue`` (:func:`ceiling_queue`): the model's
    own limit here."""
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    for _ in range(len(queue)):
        queue.start_async(x)
    queue.wait_all()
    start = time.perf_counter()
    for _ in range(jobs):
        queue.start_async(x)
    queue.wait_all()
    return jobs / (time.perf_counter() - start)


@contextlib.asynccontextmanager
async def running(variant: str, port: int):
    """``variant``'s server on ``port`` in a subprocess of its own, ready: its URL; stopped after."""
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            variant,
            "--port",
            str(port),
            "--model",
            KIND,
            "--max-batch-size",
            str(BATCH),
            "--hint",
            HINT,
            *(["--num-requests", str(NUM_REQUESTS)] if NUM_REQUESTS else []),
        ]
    )
    try:
        await wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a baseline that does not drain: do not leave it behind
            proc.kill()
            proc.wait()


async def bench_servers(
    variants: list[str], port: int, clients: list[int], requests: int, rounds: int
) -> list[dict[str, Any]]:
    """Every server up at once, driven in ``rounds`` alternating rounds (each server at each client
    count in turn, then the ceiling), so that every round's ratios compare one moment of the box."""
    async with contextlib.AsyncExitStack() as stack:
        urls = {v: await stack.enter_async_context(running(v, port + VARIANTS.index(v))) for v in variants}
        runs, queue = [], ceiling_queue()  # compiled once, measured in every round
        ours = [url for v, url in urls.items() if v in OURS]
        setup = await served(ours[0]) if ours else None
        for _ in range(rounds):
            run: dict[str, Any] = {
                v: {n: await load(url, n, requests, v) for n in clients} for v, url in urls.items()
            }
            run["ceiling"] = ceiling(queue, max(requests, 500))
            run["served"] = setup
            runs.append(run)
    return runs


async def served(url: str) -> str:
    """How an aioinfer server runs its model, as its ``/v1/info`` says."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{url}/v1/info") as response:
        info = await response.json()
    model = info["model"]
    return (
        f"{model['config'].get('PERFORMANCE_HINT', 'default')} hint, {model['num_requests']} infer requests"
    )


async def compare_clients(
    variants: list[str], port: int, clients: int, requests: int, rounds: int
) -> dict[str, dict[str, float]]:
    """The client variants against one OIP server, in alternating rounds: each one's median round."""
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    async with running("oip-grpc", port) as url:
        for _ in range(rounds):
            for variant in variants:
                async with shared_client(url, variant, clients) as call:
                    runs[variant].append(await load(url, clients, requests, variant, call))
    return {v: median_run(r) for v, r in runs.items()}


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of median requests/s."""
    return sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]


def report_clients(results: dict[str, dict[str, float]], clients: int) -> None:
    print(f"model: PP-OCR {KIND} {SHAPE}; one OIP server, {clients} concurrent callers of one client")
    print(f"{'client':<20}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>8}{'x triton':>10}")
    triton = results.get("client-triton", {}).get("rps")
    for variant, r in results.items():
        ratio = f"{r['rps'] / triton:.2f}" if triton else "-"
        row = f"{r['rps']:>8.0f}{r['p50_ms']:>8.1f}{r['p99_ms']:>8.1f}{r['errors']:>8.0f}{ratio:>10}"
        print(f"{variant:<20}{row}")


def report_servers(runs: list[dict[str, Any]], variants: list[str], clients: list[int]) -> None:
    """Each server's median round, and its ratios to the ceiling and the bound of each round:
    median (range)."""
    top = max(clients)
    limits = [run["ceiling"] for run in runs]
    bounds = [1 / (1 / run["ceiling"] + 1 / run["echo"][top]["rps"]) for run in runs]
    # the same bound with gRPC's own transport ceiling, when it was measured
    grpc_bounds = [
        1 / (1 / run["ceiling"] + 1 / run["echo-grpc"][top]["rps"]) for run in runs if "echo-grpc" in run
    ]
    print(
        f"model: PP-OCR {KIND} {SHAPE}, batches of up to {BATCH}; "
        f"{len(runs)} alternating rounds, medians (range)"
    )
    if runs and runs[0]["served"]:
        print(f"aioinfer's servers (their /v1/info): {runs[0]['served']}")
    print(f"ceiling (AsyncInferQueue, batch-1 jobs, no HTTP): {spread(limits, '.0f')} inferences/s")
    print(f"combined bound at {top} clients, 1 / (1/ceiling + 1/echo): {spread(bounds, '.0f')} requests/s")
    if grpc_bounds:
        print(f"gRPC's own, 1 / (1/ceiling + 1/echo-grpc): {spread(grpc_bounds, '.0f')} requests/s")
    print()
    print(f"{'server':<10}" + "".join(f"{f'{n} clients: req/s  p50  p99 ms':>34}" for n in clients))
    for variant in variants:
        median = {n: median_run([run[variant][n] for run in runs]) for n in clients}
        row = "".join(f"{r['rps']:>17.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f}" for r in median.values())
        print(f"{variant:<10}{row}")
    print()
    for variant in (v for v in variants[1:] if v != "echo-grpc"):
        rps = [run[variant][top]["rps"] for run in runs]
        errors = sum(run[variant][top]["errors"] for run in runs)
        naive = (
            [r / run["naive"][top]["rps"] for r, run in zip(rps, runs, strict=True)]
            if "naive" in variants
            else []
        )
        print(
            f"{variant} at {top} clients: "
            + (f"{spread(naive, '.2f')}x naive, " if naive else "")
            + f"{spread([r / c for r, c in zip(rps, limits, strict=True)], '.2f')}x ceiling, "
            + f"{spread([r / b for r, b in zip(rps, bounds, strict=True)], '.2f')}x bound, "
            + (
                f"{spread([r / b for r, b in zip(rps, grpc_bounds, strict=True)], '.2f')}x gRPC's own bound, "
                if variant in GRPC and grpc_bounds
                else ""
            )
            + f"errors {errors}"
        )
    if "batched" in variants and "aioinfer" in variants:
        gains = [run["batched"][top]["rps"] / run["aioinfer"][top]["rps"] for run in runs]
        print(f"dynamic batching at {top} clients: {spread(gains, '.2f')}x the requests/s without it")


def spread(values: list[float], fmt: str) -> str:
    """``median (min-max)`` of ``values``, each formatted with ``fmt``."""
    low, mid, high = min(values), float(np.median(values)), max(values)
    return f"{mid:{fmt}} ({low:{fmt}}-{high:{fmt}})" if len(values) > 1 else f"{mid:{fmt}}"


def main(argv: list[str] | None = None) -> int:
    global KIND, SHAPE, BATCH, HINT, NUM_REQUESTS
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--requests", type=int, default=640, help="requests per (server, clients) measurement"
    )
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument(
        "--model", choices=sorted(SHAPES), default="cls", help="PP-OCR cls (~1.6 ms) or rec (~11 ms)"
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=BATCH, help="rows per batch of the batching servers"
    )
    parser.add_argument(
        "--hint",
        choices=("THROUGHPUT", "LATENCY"),
        default=HINT,
        type=str.upper,
        help="PERFORMANCE_HINT of aioinfer's servers, as aioinfer serve --hint (the ceiling keeps "
        "THROUGHPUT, the model's best)",
    )
    parser.add_argument(
        "--num-requests", type=int, help="infer requests of aioinfer's servers, as aioinfer serve's"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="servers to run"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating rounds (servers, and client variants)"
    )
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    KIND, SHAPE, BATCH = args.model, SHAPES[args.model], args.max_batch_size
    HINT, NUM_REQUESTS = args.hint, args.num_requests
    if args.serve:
        serve(args.serve, args.port)
        return 0
    lean_allocator()

    compared = [v for v in CLIENTS if v in args.variants]
    if compared:
        top = max(args.clients)
        port = args.port + len(VARIANTS)
        clients = asyncio.run(compare_clients(compared, port, top, args.requests, args.rounds))
        report_clients(clients, top)
        if args.json:
            args.json.write_text(json.dumps({"clients": clients}, indent=2))
    if not set(args.variants) & set(SERVERS):
        return 0
    variants = ["echo", *(v for v in SERVERS if v in args.variants and v != "echo")]
    runs = asyncio.run(bench_servers(variants, args.port, args.clients, args.requests, args.rounds))
    report_servers(runs, variants, args.clients)
    if args.json:
        args.json.write_text(json.dumps({"rounds": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
