"""``aioinfer demo``: the async OCR pipeline on a generated video (or yours), end to end."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from .._errors import AioInferError
from . import parse_source, positive


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="read the text in a video with the async OCR pipeline (no arguments needed)",
        description="Generate a short video of moving text (or use --source), read it with the async "
        "PP-OCR pipeline, write an annotated video and JSON Lines of predictions, and print frames/s, "
        "per-stage latency and, for the generated video, how many lines were read exactly.",
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
        "--max-in-flight", type=positive(int), help="frames predicted at once (default: 2 x requests)"
    )
    parser.add_argument("--device", default="AUTO", help="OpenVINO device (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._demo import run_demo

    source = parse_source(args.source) if args.source else None
    try:
        report = asyncio.run(
            run_demo(
                source,
                output_dir=args.output_dir,
                frames=args.frames,
                max_in_flight=args.max_in_flight,
                device=args.device,
                progress=not args.no_progress,
            )
        )
    except AioInferError as exc:
        print(f"aioinfer demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    report.print()
    return 0
