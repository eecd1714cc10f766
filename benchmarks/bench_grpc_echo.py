"""grpcio's own ceiling on this box, no model and no aioinfer: a ``grpc.aio`` server (its own
process) answering a 110 KB unary ``ModelInfer`` (the PP-OCR classifier's input) with a few bytes,
64 concurrent callers on a channel each. Compare with bench_serve.py's ``oip-grpc``.

    python benchmarks/bench_grpc_echo.py
"""

import asyncio
import subprocess
import sys
import time

import grpc

METHOD = "/inference.GRPCInferenceService/ModelInfer"


async def serve():
    async def echo(request: bytes, context) -> bytes:
        return b"ok" * 8

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 2**26)])
    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)  # the harness reads it: the server listens
    await server.wait_for_termination()


async def drive(port, n=4000, clients=64):
    payload = b"x" * (48 * 192 * 3 * 4)
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(clients)]
    calls = [c.unary_unary(METHOD) for c in channels]
    for c in calls:
        await c(payload)
    done = 0

    async def worker(call):
        nonlocal done
        while done < n:
            done += 1
            await call(payload)

    t = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in calls))
    print(f"grpc echo: {n / (time.perf_counter() - t):.0f} req/s at {clients} clients")
    for c in channels:
        await c.close()


if sys.argv[1:] == ["serve"]:
    asyncio.run(serve())
else:
    p = subprocess.Popen([sys.executable, __file__, "serve"], stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()  # the port, once the server listens; nothing if it failed
        if not line.strip().isdigit():
            raise SystemExit(f"the echo server did not start (exit code {p.wait()})")
        asyncio.run(drive(int(line)))
        asyncio.run(drive(int(line)))
    finally:
        p.kill()
        p.wait()
