"""``aioinfer demo``: the async OCR pipeline on a generated video (or yours), end to end."""

from __future__ import annotations

import argparse
import asyncio

from . import add_model_options, model_options, parse_source, positive


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="read the text in a video with the async OCR pipeline (no arguments needed)",
        description="Generate a short video of moving text (or use --source), read it with the async "
        "PP-OCR pipeline (that of `aioinfer run --task ocr`), write an annotated video and JSON Lines "
        "of predictions, and print frames/s, per-stage latency and, for the generated video, how many "
        "lines were read exactly.",
    )
    parser.add_argument("--source", help="a video file or a camera index (default: a generated video)")
    parser.add_argument(
        "--output-dir", default="aioinfer-demo", help="where outputs go (default: %(default)s)"
    )
    parser.add_argument(
        "--frames",
        type=positive(int),
        help="frames to generate or read (default: 36 generated; all of --source)",
    )
    parser.add_argument(
        "--max-in-flight", type=positive(int), help="frames predicted at once (default: 2 x --num-requests)"
    )
    add_model_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._demo import run_demo

    source = parse_source(args.source) if args.source else None
    report = asyncio.run(
        run_demo(
            source,
            output_dir=args.output_dir,
            frames=args.frames,
            max_in_flight=args.max_in_flight,
            progress=not args.no_progress,
            **model_options(args),
        )
    )
    report.print()
    return 0
