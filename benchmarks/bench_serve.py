"""Serving benchmark (issue 5): HTTP requests/s and p50/p99 latency on loopback, one run.

Servers on the same model (PP-OCR orientation classifier from the rapidocr wheel, input
[1,3,48,192], or with ``--model rec`` the recognizer at [1,3,48,64]; .npy in and out), each in
its own uvicorn subprocess on 127.0.0.1:

* echo      - no inference: decodes the body and answers a constant (what HTTP alone costs);
* naive     - an async Starlette endpoint that calls ``compiled_model(x)`` inline (blocks the loop);
* executor  - the same endpoint with ``run_in_executor`` (one infer request per worker thread);
* aioinfer  - ``aioinfer.asgi.create_app`` without batching (``max_batch_size=1``);
* batched   - ``create_app`` with dynamic batching (``max_batch_size=16``, ``max_delay=0.002``);

at 1, 16 and 64 concurrent clients (aiohttp, one connection each, a bounded number of requests),
beside the model's own ceiling: ``openvino.AsyncInferQueue`` with batch-1 jobs, no HTTP.

    python benchmarks/bench_serve.py
    python benchmarks/bench_serve.py --requests 400 --clients 1 16 64 --json bench_serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

SHAPES = {"cls": [1, 3, 48, 192], "rec": [1, 3, 48, 64]}  # ~1.6 ms and ~11 ms a job on 2 cores
KIND = "cls"  # set from --model, in the harness and in each server subprocess
SHAPE = SHAPES[KIND]
VARIANTS = ("echo", "naive", "executor", "aioinfer", "batched")
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

    if variant in ("aioinfer", "batched"):
        import aioinfer
        from aioinfer.asgi import create_app

        source = aioinfer.load(
            model_path(), device="CPU", config=CONFIG, reshape=[-1, *SHAPE[1:]], share_inputs=True
        )
        return create_app(
            source, max_batch_size=16 if variant == "batched" else 1, max_delay=0.002, max_queue=1024
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

    uvicorn.run(build_app(variant), host="127.0.0.1", port=port, log_level="warning")


# -- the clients --------------------------------------------------------------------------------


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


async def load(url: str, clients: int, requests: int) -> dict[str, float]:
    """``requests`` requests in all from ``clients`` concurrent clients; requests/s, p50, p99 (ms)."""
    import aiohttp

    body = npy(np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32))
    headers = {"content-type": "application/x-npy", "accept": "application/x-npy"}
    latencies: list[float] = []
    errors = 0

    async def client(n: int) -> None:
        nonlocal errors
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=timeout) as session:
            for _ in range(n):
                t0 = time.perf_counter()
                try:
                    async with session.post(f"{url}/v1/infer", data=body, headers=headers) as response:
                        y = np.load(io.BytesIO(await response.read())) if response.status == 200 else None
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    y = None
                latencies.append((time.perf_counter() - t0) * 1e3)
                errors += y is None or y.shape[0] != 1  # one row back for the one sent

    per_client = max(1, requests // clients)
    await asyncio.gather(*(client(min(3, per_client)) for _ in range(clients)))  # warm-up
    latencies.clear()
    start = time.perf_counter()
    await asyncio.gather(*(client(per_client) for _ in range(clients)))
    elapsed = time.perf_counter() - start
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"rps": len(latencies) / elapsed, "p50_ms": float(p50), "p99_ms": float(p99), "errors": errors}


def ceiling(jobs: int) -> float:
    """Inferences/s of batch-1 jobs through openvino.AsyncInferQueue (the model's own limit here)."""
    import openvino as ov

    compiled = compile_model()
    queue = ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    for _ in range(len(queue)):
        queue.start_async(x)
    queue.wait_all()
    start = time.perf_counter()
    for _ in range(jobs):
        queue.start_async(x)
    queue.wait_all()
    return jobs / (time.perf_counter() - start)


async def bench_variant(
    variant: str, port: int, clients: list[int], requests: int
) -> dict[int, dict[str, float]]:
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, __file__, "--serve", variant, "--port", str(port), "--model", KIND]
    proc = subprocess.Popen(command)
    try:
        await wait_ready(url, proc)
        return {n: await load(url, n, requests) for n in clients}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a baseline that does not drain: do not leave it behind
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
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
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global KIND, SHAPE
    KIND, SHAPE = args.model, SHAPES[args.model]
    if args.serve:
        serve(args.serve, args.port)
        return 0

    results = {
        v: asyncio.run(bench_variant(v, args.port + i, args.clients, args.requests))
        for i, v in enumerate(VARIANTS)
    }
    limit = ceiling(max(args.requests, 500))
    print(f"model: PP-OCR {KIND} {SHAPE}")
    print(f"ceiling (AsyncInferQueue, batch-1 jobs, no HTTP): {limit:.0f} inferences/s\n")
    print(f"{'server':<10}" + "".join(f"{f'{n} clients: req/s  p50  p99 ms':>34}" for n in args.clients))
    for variant, by_clients in results.items():
        row = "".join(
            f"{r['rps']:>17.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f}" for r in by_clients.values()
        )
        print(f"{variant:<10}{row}")
    top = max(args.clients)
    print()
    for variant in ("aioinfer", "batched"):
        r = results[variant][top]
        print(
            f"{variant} at {top} clients: {r['rps'] / results['naive'][top]['rps']:.2f}x naive, "
            f"{r['rps'] / limit:.2f}x ceiling, p99/p50 {r['p99_ms'] / r['p50_ms']:.2f}, errors {r['errors']}"
        )
    gain = results["batched"][top]["rps"] / results["aioinfer"][top]["rps"]
    print(f"dynamic batching at {top} clients: {gain:.2f}x the requests/s without it")
    if args.json:
        args.json.write_text(json.dumps({"ceiling_ips": limit, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
