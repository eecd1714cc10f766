"""``aioinfer run``: a model (or a task) over a video, camera, stream or image folder."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import cv2
import numpy as np

from .._errors import AioInferError
from .._map import Mappable, MapResult
from .._model import AsyncModel, load
from .._outputs import Outputs
from .._sinks import JsonlSink, VideoSink
from .._sources import FrameSource, is_live, open_source
from . import parse_source, positive

SMALL_OUTPUT = 64  # raw outputs with at most this many values are written in full to the JSONL


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a model over a video, camera, stream or image folder",
        description="Infer every frame of SOURCE with MODEL; write the frames (annotated with --task) "
        "to a video and the outputs (or predictions) to JSON Lines.",
    )
    p.add_argument(
        "model", nargs="?", help="model path (.xml, .onnx, ...); leave out with --task ocr (bundled PP-OCR)"
    )
    p.add_argument("source", help="video file, camera index (0), stream URL, image folder or glob")
    p.add_argument("--output", "-o", help="write the frames to this video (.avi, .mp4, .mkv)")
    p.add_argument("--jsonl", help="write one JSON object per frame to this file")
    p.add_argument("--task", help="wrap the model in a task (classification, detection, segmentation, ocr)")
    p.add_argument("--labels", help="labels file for --task")
    p.add_argument("--device", default="AUTO", help="OpenVINO device (default: AUTO)")
    p.add_argument("--requests", type=positive(int), help="infer requests (default: the device's optimum)")
    p.add_argument("--max-in-flight", type=positive(int), help="frames in flight (default: 2 x requests)")
    p.add_argument(
        "--start", type=positive(int, zero=True), help="first frame (default: first in the direction)"
    )
    p.add_argument("--count", type=positive(int, zero=True), help="number of frames (default: all)")
    p.add_argument("--step", type=positive(int), default=1, help="take every STEP-th frame")
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
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130
    except (AioInferError, OSError, ValueError) as exc:
        print(f"aioinfer run: error: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace) -> int:
    source_arg = parse_source(args.source)
    drop = args.drop or ("oldest" if is_live(source_arg) else "none")
    async with AsyncExitStack() as stack:
        source = await stack.enter_async_context(
            open_source(
                source_arg,
                start=args.start,
                count=args.count,
                step=args.step,
                direction="backward" if args.backward else "forward",
                drop=None if drop == "none" else "oldest",
            )
        )
        runner = await stack.enter_async_context(_open_runner(args))
        video = (
            await stack.enter_async_context(VideoSink(args.output, fps=source.fps)) if args.output else None
        )
        jsonl = await stack.enter_async_context(JsonlSink(args.jsonl)) if args.jsonl else None
        results = runner.map(source, max_in_flight=args.max_in_flight, progress=not args.no_progress)
        started = time.perf_counter()
        async with results:
            async for r in results:
                if jsonl is not None:
                    await jsonl.write(runner.record(r))
                if video is not None:
                    await video.write(await runner.draw(r))
        _summary(results.stats().inferred, time.perf_counter() - started, source)
    return 0


def _summary(frames: int, seconds: float, source: FrameSource) -> None:
    stats = source.stats()
    dropped = f", {stats.dropped} dropped" if stats.dropped else ""
    fps = frames / seconds if seconds > 0 else 0.0
    print(f"{frames} frames in {seconds:.2f} s ({fps:.1f} fps){dropped}", file=sys.stderr)


class _Runner(Mappable):
    """What runs on each frame: a task (predict, draw, to_dict) or a raw model (adapt, infer, outputs)."""

    def __init__(
        self, model: AsyncModel, predict: Callable[[np.ndarray], Awaitable[Any]], task: Any = None
    ) -> None:
        self.model = model
        self.predict = predict
        self.task = task

    def _map_target(self) -> tuple[Callable[[np.ndarray], Awaitable[Any]], int]:
        return self.predict, self.model.info.num_requests

    def record(self, r: MapResult) -> dict[str, Any]:
        head = {"index": r.index, "timestamp_ms": r.timestamp_ms}
        if self.task is not None:
            return {**head, "prediction": r.output}  # the sink calls to_dict() on its own thread
        return {**head, "outputs": {name: _describe(a) for name, a in r.output.to_dict().items()}}

    async def draw(self, r: MapResult) -> np.ndarray:
        if self.task is None:
            return r.frame
        return await anyio.to_thread.run_sync(self.task.draw, r.frame, r.output)


@asynccontextmanager
async def _open_runner(args: argparse.Namespace) -> AsyncIterator[_Runner]:
    options: dict[str, Any] = {"device": args.device, "num_requests": args.requests}
    if args.model is None and args.task != "ocr":
        raise SystemExit("aioinfer run: MODEL is required (only --task ocr has bundled models)")
    if args.task:
        from .. import tasks

        task: Any
        async with tasks.load(args.model, task=args.task, labels=args.labels, **options) as task:
            yield _Runner(task.model, task.predict, task)
        return
    async with load(args.model, **options) as model:
        prepare = _frame_adapter(model)
        limiter = anyio.CapacityLimiter(2)

        async def predict(image: np.ndarray) -> Outputs:
            return await model.infer(await anyio.to_thread.run_sync(prepare, image, limiter=limiter))

        yield _Runner(model, predict)


def _frame_adapter(model: AsyncModel) -> Callable[[np.ndarray], np.ndarray]:
    """How a BGR HxWx3 frame becomes the model's single image input (NCHW, NHWC or HWC)."""
    if len(model.info.inputs) != 1:
        raise ValueError(
            f"the model takes {len(model.info.inputs)} inputs; without --task it needs one image input"
        )
    info = model.info.inputs[0]
    shape, dtype = info.shape, info.dtype or np.float32
    if shape is not None and len(shape) == 4 and shape[1] == 3:
        height, width, layout = shape[2], shape[3], "NCHW"
    elif shape is not None and len(shape) == 4 and shape[3] == 3:
        height, width, layout = shape[1], shape[2], "NHWC"
    elif shape is not None and len(shape) == 3 and shape[2] == 3:
        height, width, layout = shape[0], shape[1], "HWC"
    else:
        raise ValueError(
            f"cannot feed video frames to input {info.name!r} of shape {list(shape or [])}: expected "
            "[N,3,H,W], [N,H,W,3] or [H,W,3] (or use --task)"
        )

    def prepare(image: np.ndarray) -> np.ndarray:
        if height > 0 and width > 0 and image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        if layout == "NCHW":
            image = image.transpose(2, 0, 1)
        if layout != "HWC":
            image = image[None]
        return np.ascontiguousarray(image, dtype=dtype)

    return prepare


def _describe(array: np.ndarray) -> dict[str, Any]:
    described: dict[str, Any] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    if array.size <= SMALL_OUTPUT:
        described["values"] = array.tolist()
    return described
