"""What the event-loop monitor costs: inferences/s of many concurrent awaits on a tiny model (the
loop as busy as aioinfer can make it: the worst case for a heartbeat competing with it), with and
without ``aioinfer.monitor_loop()``, alternating the two in each round, on asyncio, uvloop and trio;
the median ratio of the per-round pairs (and its quartiles), and the loop lag the monitor saw.
Beside it, what the monitor costs an idle process: the share of one core the whole process uses
while its loop sleeps, without and with a monitor (heartbeat and watcher thread, the defaults).

    python benchmarks/bench_monitor.py
    python benchmarks/bench_monitor.py --rounds 9 --seconds 1 --interval 0.01

With ``--serve SECONDS``: instead, ``aioinfer serve`` (its monitor on, as by default) on the PP-OCR
orientation classifier of the rapidocr wheel, under ``--clients`` concurrent ``/v1/infer`` clients
for SECONDS; the loop figures of ``/v1/info`` at the end of the load and the line the server
prints when it exits.

    python benchmarks/bench_monitor.py --serve 20 --clients 32
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import anyio
import numpy as np
import openvino as ov
import openvino.opset13 as ops

import aioinfer

BACKENDS = {"asyncio": ("asyncio", {}), "uvloop": ("asyncio", {"use_uvloop": True}), "trio": ("trio", {})}


def tiny_model() -> ov.Model:
    """``y = 2x + 1`` on a [1, 4] f32 input: microseconds of device time, all loop overhead."""
    x = ops.parameter([1, 4], np.float32, name="x")
    y = ops.add(ops.multiply(x, ops.constant(np.float32(2))), ops.constant(np.float32(1)))
    return ov.Model([y.output(0)], [x], "tiny")


async def throughput(model: aioinfer.AsyncModel, seconds: float, concurrency: int) -> float:
    """Inferences/s of ``concurrency`` tasks awaiting the model back to back for ``seconds``."""
    x = np.ones((1, 4), np.float32)
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await model.infer(x)
            done += 1

    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)
    return done / (time.perf_counter() - start)


async def idle_cpu(monitored: bool, seconds: float) -> float:
    """The share of one core this process uses over ``seconds`` of an idle loop (with a monitor
    at its defaults if ``monitored``)."""
    async with aioinfer.monitor_loop() if monitored else nullcontext():
        cpu = time.process_time()
        await anyio.sleep(seconds)
        return (time.process_time() - cpu) / seconds


async def compare(args: argparse.Namespace) -> tuple[list[float], list[float], aioinfer.LoopStats]:
    """Per-round inferences/s without and with a monitor (the order alternating), and the figures
    of the last monitor."""
    without: list[float] = []
    with_: list[float] = []
    async with aioinfer.load(tiny_model(), device="CPU", num_requests=4) as model:
        await throughput(model, 0.3, args.concurrency)  # warm-up
        for round_ in range(args.rounds):
            for monitored in (round_ % 2 == 0, round_ % 2 == 1):
                if not monitored:
                    without.append(await throughput(model, args.seconds, args.concurrency))
                    continue
                async with aioinfer.monitor_loop(interval=args.interval) as monitor:
                    with_.append(await throughput(model, args.seconds, args.concurrency))
    return without, with_, monitor.stats()


async def serve_under_load(seconds: float, clients: int) -> None:
    """``aioinfer serve`` under load; print its loop figures (see the module's docstring)."""
    import io
    import re
    import signal
    import subprocess
    import sys
    import threading

    import httpx

    command = [sys.executable, "-m", "aioinfer", "serve", str(aioinfer.bundled_model("cls")), "--port", "0"]
    server = subprocess.Popen([*command, "--device", "CPU"], stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    lines: list[str] = []  # its whole log, read all along (a full pipe would block it)
    reader = threading.Thread(target=lambda: lines.extend(server.stderr or ()), daemon=True)
    reader.start()
    while not (url := re.search(r"Uvicorn running on (http://\S+)", "".join(lines))):
        if server.poll() is not None:
            raise SystemExit("the server exited:\n" + "".join(lines))
        await anyio.sleep(0.1)
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).random((1, 3, 48, 192), np.float32))
    body, done = buffer.getvalue(), 0
    async with httpx.AsyncClient(base_url=url.group(1), timeout=60) as client:
        while (await client.get("/health/ready")).status_code != 200:
            await anyio.sleep(0.1)
        deadline = time.perf_counter() + seconds  # the load's window starts once the model is ready

        async def one_client() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                answer = await client.post(
                    "/v1/infer", content=body, headers={"content-type": "application/x-npy"}
                )
                answer.raise_for_status()
                done += 1

        async with anyio.create_task_group() as group:
            for _ in range(clients):
                group.start_soon(one_client)
        loop = (await client.get("/v1/info")).json()["loop"]
    server.send_signal(signal.SIGTERM)
    server.wait()
    reader.join()
    print(f"{done / seconds:,.0f} requests/s from {clients} clients for {seconds:g} s; /v1/info loop: {loop}")
    print("the server at exit:", *[line.strip() for line in lines if line.startswith("loop lag:")])
    for warning in "".join(lines).split("WARNING:")[1:]:  # each with the stack it caught
        if "event loop was blocked" in warning:
            print("WARNING:" + warning.split("\nINFO:")[0].rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", nargs="+", choices=sorted(BACKENDS), default=list(BACKENDS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of one measured run")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--interval", type=float, default=0.05, help="the monitor's heartbeat, seconds")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle loop measured")
    parser.add_argument("--serve", type=float, metavar="SECONDS", help="aioinfer serve under load instead")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients with --serve")
    args = parser.parse_args(argv)
    if args.serve:
        anyio.run(serve_under_load, args.serve, args.clients)
        return 0
    print(
        f"{'backend':<8} {'idle CPU without/with':>22} {'without, inf/s':>15} {'with, inf/s':>12} "
        f"{'ratio (q1-q3)':>20}  loop lag while saturated"
    )
    for name in args.backends:
        backend, options = BACKENDS[name]
        idle = [
            anyio.run(idle_cpu, m, args.idle, backend=backend, backend_options=options) for m in (False, True)
        ]
        without, with_, loop = anyio.run(compare, args, backend=backend, backend_options=options)
        ratios = [w / o for w, o in zip(with_, without, strict=True)]
        q1, median, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        print(
            f"{name:<8} {idle[0]:>10.3%} / {idle[1]:>7.3%} {statistics.median(without):>15,.0f} "
            f"{statistics.median(with_):>12,.0f} {median:>6.3f} ({q1:.3f}-{q3:.3f})  {loop.summary()}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
