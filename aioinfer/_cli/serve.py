"""``aioinfer serve``: a model or a task over HTTP, with dynamic batching and graceful shutdown."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import openvino as ov

from .. import _install, _loading
from .._codecs import MAX_JSON_VALUES
from .._monitor import monitor_loop
from . import UsageError, add_model_options, add_task_options, model_options, positive, task_options

if TYPE_CHECKING:
    from starlette.applications import Starlette

log = logging.getLogger("aioinfer.serve")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve models (or a task) over HTTP",
        description="Each MODEL is a path (served under its file stem), NAME=PATH, or a folder (every "
        "model file in it). The Open Inference Protocol (KServe v2) serves every model by name: GET /v2, "
        "/v2/health/live, /v2/health/ready, /v2/models/NAME[/versions/1][/ready], POST "
        "/v2/models/NAME[/versions/1]/infer. The first model also answers POST /v1/infer (tensors), "
        "POST /v1/predict (images, with --task), GET /v1/info, GET|PATCH /v1/settings; GET "
        "/health/live, GET /health/ready (ready once every model is) and GET /metrics cover them all. "
        "A client slower than --header-timeout to send a request's headers is disconnected. "
        "SIGTERM/SIGINT drain the requests in flight, close the models and exit 0.",
    )
    add_task_options(p, what="serve the model as this task (enables /v1/predict; one model only)")
    p.add_argument("more", nargs="*", metavar="MODEL", help="more models: PATH, NAME=PATH or a folder")
    add_model_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port, 0 for any free one (default: 8000)")
    p.add_argument(
        "--grpc-port",
        type=_port,
        help="also serve the Open Inference Protocol over gRPC (inference.GRPCInferenceService) on "
        "this port, 0 for any free one (default: no gRPC)",
    )
    p.add_argument(
        "--max-batch-size",
        type=positive(int),
        default=8,
        help="rows per batch; 1 turns batching off (default: 8)",
    )
    p.add_argument(
        "--max-delay-ms",
        type=positive(float, zero=True),
        default=2.0,
        help="longest wait for a batch to fill, milliseconds (default: 2; create_app's max_delay, "
        "in seconds)",
    )
    p.add_argument(
        "--batching",
        choices=("auto", "on", "off"),
        default="auto",
        help="auto: batch only if a probe at start-up shows that the model's rows do not interact "
        "(each row of a batch gets what it gets alone); on: the model is declared batch-separable, "
        "no probe; off: one request per inference. GET /v1/info says which and why",
    )
    p.add_argument(
        "--max-queue",
        type=positive(int, zero=True),
        default=256,
        help="requests that may wait, accepted and not yet running, beyond which 503 (default: 256)",
    )
    p.add_argument(
        "--timeout", type=positive(float), default=30.0, help="seconds per request before 504 (default: 30)"
    )
    p.add_argument(
        "--max-body-mb",
        type=positive(float),
        default=16.0,
        help="largest request body, MiB (413 beyond; default: 16)",
    )
    p.add_argument(
        "--max-decoded-mb",
        type=positive(float),
        default=256.0,
        help="most that one request's body may decode to, MiB, as its headers declare (413 beyond, "
        "before decoding; default: 256)",
    )
    p.add_argument(
        "--max-json-values",
        type=positive(int),
        default=MAX_JSON_VALUES,
        help="most values a JSON request body (counted from its separators, before parsing: lists "
        "and keys count too), a JSON answer or a gRPC request's typed contents may hold, 413 beyond: "
        "parsing or building them holds Python's GIL, stalling every other request meanwhile "
        "(~0.45 us a value); send large tensors as .npy/.npz (/v1), binary tensor data (/v2) or "
        "gRPC raw_input_contents (default: %(default)s)",
    )
    p.add_argument(
        "--max-megapixels",
        type=positive(float),
        default=40.0,
        help="largest image that /v1/predict decodes, megapixels, as its header declares (413 beyond; "
        "default: 40)",
    )
    p.add_argument(
        "--body-timeout",
        type=positive(float),
        default=30.0,
        help="seconds for a request body to arrive in full (408 beyond; default: 30)",
    )
    p.add_argument(
        "--header-timeout",
        type=positive(float),
        default=10.0,
        help="seconds for a request's headers to arrive in full, from the connection's start or a "
        "later request's first byte; a client slower than that is disconnected (default: 10)",
    )
    p.add_argument(
        "--max-connections",
        type=positive(int),
        default=1000,
        help="connections open at once; one more is answered 503 and closed (default: 1000)",
    )
    p.add_argument(
        "--sequence-idle-timeout",
        type=positive(float),
        default=60.0,
        help="seconds after which an idle sequence of a stateful model is ended (default: 60)",
    )
    p.add_argument(
        "--drain-timeout",
        type=positive(float, zero=True),
        default=30.0,
        help="seconds to finish requests in flight at shutdown (default: 30)",
    )
    p.add_argument(
        "--loop-slow-ms",
        type=positive(float),
        default=100.0,
        help="log a warning, with the stack it is stuck in, when the event loop is blocked this long, "
        "milliseconds (default: 100)",
    )
    p.add_argument(
        "--no-loop-monitor",
        action="store_true",
        help="do not measure the event loop's lag (by default: a heartbeat every 50 ms, its lag in "
        "/metrics and /v1/info, and printed at exit)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's and aioinfer's log level (default: info)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._app import create_app

    task = task_options(args)  # usage errors before anything loads
    paths = model_paths([args.model, *args.more] if args.model else [])
    if args.task and len(paths) > 1:
        raise UsageError(f"--task serves one model; got {len(paths)}: {', '.join(paths)}")
    if not paths:
        _install.require("ocr")  # the bundled PP-OCR models: said before the server starts, not after
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(message)s")
    sources = {name: _open(args, task, path) for name, path in paths.items()} or {
        "ocr": _open(args, task, None)
    }
    app = create_app(
        sources,
        max_batch_size=args.max_batch_size,
        max_delay=args.max_delay_ms / 1e3,
        batching=args.batching,
        max_queue=args.max_queue,
        timeout=args.timeout,
        max_body_bytes=_count(args.max_body_mb, 2**20),
        max_decoded_bytes=_count(args.max_decoded_mb, 2**20),
        max_json_values=args.max_json_values,
        max_pixels=_count(args.max_megapixels, 1e6),
        body_timeout=args.body_timeout,
        monitor_loop=not args.no_loop_monitor,
        sequence_idle_timeout=args.sequence_idle_timeout,
    )
    return _event_loop_runner()(
        _serve(
            args,
            app,
            host=args.host,
            port=args.port,
            drain_timeout=args.drain_timeout,
            log_level=args.log_level,
            grpc_port=args.grpc_port,
            header_timeout=args.header_timeout,
            max_connections=args.max_connections,
        )
    )


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, int]], int]:
    """How the server's event loop runs: on uvloop when it is installed (``uvicorn[standard]``
    brings it; uvicorn would choose it too), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return getattr(uvloop, "run", asyncio.run)  # uvloop.run: uvloop >= 0.18


async def _serve(args: argparse.Namespace, app: Starlette, **options: Any) -> int:
    """Serve ``app`` with ``options`` (see :func:`aioinfer._server.serve`), the event loop's lag
    measured meanwhile (unless ``--no-loop-monitor``) and printed at the end."""
    from .._server import serve

    loop = type(asyncio.get_running_loop())
    log.info("event loop: %s", "uvloop" if loop.__module__.startswith("uvloop") else "asyncio")
    if args.no_loop_monitor:
        return await serve(app, **options)
    async with monitor_loop(slow_threshold=args.loop_slow_ms / 1e3) as monitor:
        code = await serve(app, **options)
    print(monitor.stats().summary(), file=sys.stderr)
    return code


@contextlib.asynccontextmanager
async def _open(
    args: argparse.Namespace, task_opts: dict[str, Any], path: str | None = None
) -> AsyncIterator[Any]:
    """Load the task, or the model at ``path`` (default: ``args.model``), reshaped to a dynamic
    batch when batching needs it."""
    options = model_options(args)
    path = path if path is not None else args.model
    if args.task:
        from .. import tasks

        async with tasks.load(path, task=args.task, **task_opts, **options) as task:
            yield task
    else:
        from .._model import load

        assert path is not None
        batching = args.max_batch_size > 1 and args.batching != "off"
        source = await anyio.to_thread.run_sync(_batch_model, path, batching)
        # share_inputs: a request's decoded arrays are never written after they are submitted
        async with load(source, share_inputs=True, **options) as model:
            yield model


def _batch_model(path: str, batching: bool) -> str | ov.Model:
    """The model read once, with its inputs' static batch of 1 made dynamic when batching is wanted
    and OpenVINO can do it (else as it is): the app's probe then decides whether it is batched.
    Just ``path`` when batching is off (``load`` reads it)."""
    if not batching:
        return path
    model = _loading.read_model(path)
    shapes = [port.get_partial_shape() for port in model.inputs]
    if not all(s.rank.is_static and len(s) > 0 and s[0].is_static and s[0].get_length() == 1 for s in shapes):
        return model
    spec: dict[str | int, str] = {
        i: "[?," + ",".join(str(d) for d in list(s)[1:]) + "]" for i, s in enumerate(shapes)
    }
    try:
        _loading.reshape(model, spec)
    except Exception as exc:
        log.warning("cannot make the batch dimension dynamic (%s): dynamic batching is off", exc)
        return path  # a failed reshape may leave the model half changed: load it afresh
    log.info("batch dimension reshaped from 1 to dynamic: batched if the model proves batch-separable")
    return model


def model_paths(specs: list[str]) -> dict[str, str]:
    """The models to serve by name, from ``PATH`` (named by its file stem), ``NAME=PATH`` and
    folders (each model file in it, by stem, sorted); :class:`UsageError` for a name given twice,
    a folder without models, or a name with ``/``."""
    paths: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or os.path.exists(spec):  # a path (that may hold "=")
            entries = _found(spec) if os.path.isdir(spec) else [(Path(spec).stem, spec)]
        else:
            entries = [(name, path)]
        for key, value in entries:
            if not key or "/" in key:
                raise UsageError(f"{spec}: a model name must be non-empty, without '/'")
            if key in paths:
                raise UsageError(f"two models named {key!r} ({paths[key]} and {value}): name one NAME=PATH")
            paths[key] = value
    return paths


def _found(folder: str) -> list[tuple[str, str]]:
    """Every model file in ``folder`` by stem, sorted; :class:`UsageError` if there is none."""
    found = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in _loading.SUPPORTED_SUFFIXES)
    if not found:
        raise UsageError(f"{folder}: no model files ({', '.join(_loading.SUPPORTED_SUFFIXES)})")
    return [(p.stem, str(p)) for p in found]


def _port(text: str) -> int:
    """A TCP port number: 0 (any free port) to 65535."""
    if not (text.isdigit() and int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return int(text)


def _count(value: float, unit: float) -> int:
    """``value`` x ``unit`` (MB to bytes, megapixels to pixels) as a whole number, at least 1 and at
    most 2**62: a limit as large as 1e300 MB means "none", not an overflow."""
    return max(1, int(min(value * unit, 2**62)))
