"""``aioinfer bench``: aioinfer vs OpenVINO's AsyncInferQueue (and sync, to_thread) on one model."""

from __future__ import annotations

import argparse
import asyncio

from .._bench import bench_model, format_table, idle_overheads
from .._bundled import bundled_model
from . import positive


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure inferences/s of aioinfer against AsyncInferQueue, sync and to_thread",
        description="Side-by-side throughput on one compiled model (default: the PP-OCR classifier "
        "bundled in the rapidocr wheel), plus loop lag and idle overhead.",
    )
    p.add_argument("model", nargs="?", help="model path (default: bundled PP-OCR classifier)")
    p.add_argument("--shape", type=_shape, default=None, help="fixed input shape, e.g. 1,3,48,192")
    p.add_argument("--device", default="CPU")
    p.add_argument("--rounds", type=positive(int), default=5)
    p.add_argument("--seconds", type=positive(float), default=1.5, help="target duration of one method's run")
    p.set_defaults(func=run)


def _shape(text: str) -> list[int]:
    try:
        return [int(d) for d in text.replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape like 1,3,224,224, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    model = args.model or bundled_model("cls")
    shape = args.shape or ([1, 3, 48, 192] if args.model is None else None)
    if shape is None:
        raise SystemExit(
            "aioinfer bench: --shape is required with a model of your own (e.g. --shape 1,3,224,224)"
        )
    label = None if args.model else "PP-OCR cls 48x192"
    idle = idle_overheads(args.device)
    result = asyncio.run(
        bench_model(model, shape, device=args.device, rounds=args.rounds, seconds=args.seconds, label=label)
    )
    print(format_table([result], idle))
    return 0
