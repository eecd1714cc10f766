"""``aioinfer run``: a model (or a task) over a video, camera, stream or image folder."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .._monitor import LoopStats, monitor_loop
from .._pipeline import PipelineStats, open_step, run_pipeline
from .._sources import SourceStats, is_live, open_source
from . import add_model_options, add_task_options, model_options, parse_source, positive, task_options


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a model over a video, camera, stream or image folder",
        description="Infer every frame of SOURCE with MODEL; write the frames (annotated with --task) "
        "to a video and the outputs (or predictions) to JSON Lines.",
    )
    add_task_options(p, what="wrap the model in this task: predictions and annotated frames")
    p.add_argument("source", help="video file, camera index (0), stream URL, image folder or glob")
    p.add_argument("--output", "-o", help="write the frames to this video (.avi, .mp4, .mkv)")
    p.add_argument("--jsonl", help="write one JSON object per frame to this file")
    add_model_options(p)
    p.add_argument(
        "--max-in-flight",
        type=positive(int),
        help="frames in flight (default: twice the requests of the model, or of all a task's models)",
    )
    p.add_argument(
        "--start", type=positive(int, zero=True), help="first frame (default: first in the direction)"
    )
    p.add_argument("--count", type=positive(int, zero=True), help="number of frames (default: all)")
    p.add_argument("--step", type=positive(int), default=1, help="take every STEP-th frame (default: 1)")
    p.add_argument("--backward", action="store_true", help="read from START down to the first frame")
    p.add_argument(
        "--drop",
        choices=("none", "oldest"),
        help="when inference is slower than the source: wait (none) or drop the oldest frames "
        "(default: oldest for cameras and URLs, none otherwise)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    task = task_options(args)  # usage errors before anything loads
    _summary(*asyncio.run(_run(args, task)))
    return 0


async def _run(
    args: argparse.Namespace, task_opts: dict[str, object]
) -> tuple[PipelineStats, SourceStats, LoopStats]:
    source_arg = parse_source(args.source)
    drop = args.drop or ("oldest" if is_live(source_arg) else "none")
    frames = open_source(
        source_arg,
        start=args.start,
        count=args.count,
        step=args.step,
        direction="backward" if args.backward else "forward",
        drop=None if drop == "none" else "oldest",
    )
    step = open_step(args.model, task=args.task, task_options=task_opts, **model_options(args))
    async with monitor_loop() as monitor, frames as source, step as opened:
        stats = await run_pipeline(
            opened,
            source,
            video=args.output,
            jsonl=args.jsonl,
            max_in_flight=args.max_in_flight,
            progress=not args.no_progress,
        )
        return stats, source.stats(), monitor.stats()


def _summary(stats: PipelineStats, source: SourceStats, loop: LoopStats) -> None:
    """The closing lines: frames, time, fps; frames dropped, outages survived and reconnection
    attempts of a live source when there were any; the event loop's lag."""
    dropped = f", {stats.dropped} dropped" if stats.dropped else ""
    attempts = source.reconnect_attempts
    reconnects = f", {source.reconnects} reconnects ({attempts} attempts)" if attempts else ""
    print(
        f"{stats.frames} frames in {stats.seconds:.2f} s ({stats.fps:.1f} fps){dropped}{reconnects}",
        file=sys.stderr,
    )
    print(loop.summary(), file=sys.stderr)
