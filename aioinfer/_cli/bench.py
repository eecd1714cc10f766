"""``aioinfer bench``: aioinfer (on asyncio, uvloop, trio) vs OpenVINO's AsyncInferQueue (and sync,
to_thread) on one model, and the idle cost of one await beside a bare bridge."""

from __future__ import annotations

import argparse

from .._bench import bench_model, format_table, idle_overheads
from .._bundled import bundled_model
from . import add_model_options, model_options, positive


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure inferences/s of aioinfer against AsyncInferQueue, sync and to_thread",
        description="Side-by-side throughput on one compiled model (default: the PP-OCR classifier "
        "bundled in the rapidocr wheel), aioinfer on every installed backend (asyncio, uvloop, trio), plus "
        "loop lag and the idle cost of one await beside a bare bridge. Options are named as in "
        "OpenVINO's benchmark_app where they mean the same.",
    )
    p.add_argument("model", nargs="?", help="model path (default: the bundled PP-OCR classifier)")
    p.add_argument(
        "--shape",
        type=_shape,
        default=None,
        help="fixed input shape, e.g. 1,3,224,224 (default: the model's own, if static)",
    )
    add_model_options(p, shape_lanes=False)  # one fixed input shape
    p.add_argument("--rounds", type=positive(int), default=5, help="rounds of every method (default: 5)")
    p.add_argument(
        "--seconds",
        type=positive(float),
        default=1.5,
        help="target duration of one method's run in one round, seconds (default: 1.5)",
    )
    p.set_defaults(func=run)


def _shape(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.replace("x", ",").split(",")]
    except ValueError:
        dims = []
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected a shape like 1,3,224,224, got {text!r}")
    return dims


def run(args: argparse.Namespace) -> int:
    if args.model:
        model, shape, label = args.model, args.shape, None
    else:
        shape = args.shape or [1, 3, 48, 192]
        model, label = bundled_model("cls"), "PP-OCR cls " + "x".join(map(str, shape[2:]))
    result = bench_model(
        model, shape, rounds=args.rounds, seconds=args.seconds, label=label, **model_options(args)
    )
    print(format_table([result], idle_overheads(args.device)))
    return 0
