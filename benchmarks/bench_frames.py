"""Frames per second over a real video file: decode + preprocess + infer + collect.

A sequential loop (``cap.read()``, preprocess, a synchronous infer, repeat) against
``aioinfer.open_source`` + ``amap`` (decoding on the source's thread, preprocessing on worker
threads, inferences overlapping on several requests): same model, same file, same work, one run of
each per repeat, alternating. Also the event loop's lag during the aioinfer runs: how late a 1 ms
heartbeat task wakes (p99).

The model is one of PP-OCR's from the rapidocr wheel at a fixed shape: the recogniser at
[1, 3, 48, 320] (``--model rec``) or the detector at [1, 3, 160, 160] (``--model det``). Frames are
resized and normalised with OpenCV/NumPy (``--preprocess python``) or by the graph itself
(``--preprocess graph``: OpenVINO's PrePostProcessor; both loops then feed the raw BGR frame).

    python benchmarks/bench_frames.py [--model rec] [--preprocess python] [--frames 200]
                                      [--repeats 3] [--size 640x480] [--device CPU]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import cv2
import numpy as np
import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor, ResizeAlgorithm

import aioinfer
from aioinfer._bench import lag_while
from aioinfer._bundled import bundled_model

MODEL_SHAPES = {"rec": [1, 3, 48, 320], "det": [1, 3, 160, 160]}
Prepare = Callable[[np.ndarray], np.ndarray]


def fixed_model(kind: str, preprocess: str, frame_hw: tuple[int, int]) -> tuple[ov.Model, Prepare]:
    """The model at its fixed shape, and what turns a decoded BGR frame into its input."""
    model = ov.Core().read_model(bundled_model(kind))
    shape = MODEL_SHAPES[kind]
    model.reshape({model.input(0).any_name: shape})
    if preprocess == "python":
        height, width = shape[2], shape[3]

        def prepare(frame: np.ndarray) -> np.ndarray:
            resized = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
            return (resized.transpose(2, 0, 1)[None].astype(np.float32) - 127.5) / 127.5

        return model, prepare
    ppp = PrePostProcessor(model)
    tensor = ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    tensor.set_shape([1, *frame_hw, 3]).set_color_format(ColorFormat.BGR)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    steps = ppp.input().preprocess().convert_element_type(ov.Type.f32)
    steps.resize(ResizeAlgorithm.RESIZE_LINEAR).mean(127.5).scale(127.5)
    return ppp.build(), lambda frame: frame[None]


def write_video(path: Path, frames: int, size: tuple[int, int]) -> None:
    width, height = size
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height, width, 3), np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (width, height))
    for i in range(frames):
        frame = base.copy()
        cv2.putText(frame, f"frame {i}", (10, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
        writer.write(frame)
    writer.release()


def sequential(compiled: ov.CompiledModel, prepare: Prepare, video: Path) -> tuple[float, int]:
    """Frames/s of read, preprocess, infer synchronously, collect, repeat."""
    request = compiled.create_infer_request()
    cap = cv2.VideoCapture(str(video))
    outputs = []
    start = time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        outputs.append(request.infer([prepare(frame)])[0].copy())
    elapsed = time.perf_counter() - start
    cap.release()
    return len(outputs) / elapsed, len(outputs)


async def with_aioinfer(
    model: aioinfer.AsyncModel, prepare: Prepare, video: Path, max_in_flight: int
) -> tuple[float, int, list[float]]:
    """Frames/s of ``open_source`` + ``amap``, and the heartbeat's lateness in ms."""
    limiter = anyio.CapacityLimiter(2)

    async def infer(image: np.ndarray) -> aioinfer.Outputs:
        return await model.infer(await anyio.to_thread.run_sync(prepare, image, limiter=limiter))

    async def run() -> list[np.ndarray]:
        async with aioinfer.open_source(video) as frames:
            return [r.output[0] async for r in aioinfer.amap(infer, frames, max_in_flight=max_in_flight)]

    start = time.perf_counter()
    outputs, lags = await lag_while(run())
    elapsed = time.perf_counter() - start
    return len(outputs) / elapsed, len(outputs), lags


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODEL_SHAPES), default="rec")
    parser.add_argument("--preprocess", choices=("python", "graph"), default="python")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", default="640x480", help="video frame size WxH")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--num-requests", type=int, default=None, help="aioinfer requests (default: optimal)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.avi"
        write_video(video, args.frames, (width, height))
        ov_model, prepare = fixed_model(args.model, args.preprocess, (height, width))
        compiled = ov.Core().compile_model(ov_model, args.device)  # what a plain loop would use
        hint = compiled.get_property("PERFORMANCE_HINT")
        async with aioinfer.load(ov_model, device=args.device, num_requests=args.num_requests) as model:
            max_in_flight = 2 * model.info.num_requests
            seq_fps: list[float] = []
            same_fps: list[float] = []  # the sequential loop on aioinfer's own compiled model
            aio_fps: list[float] = []
            lags: list[float] = []
            sequential(compiled, prepare, video)  # warm-up (first inferences, file cache)
            await with_aioinfer(model, prepare, video, max_in_flight)
            for _ in range(args.repeats):
                fps, n = sequential(compiled, prepare, video)
                seq_fps.append(fps)
                same_fps.append(sequential(model.compiled, prepare, video)[0])
                fps, m, lag = await with_aioinfer(model, prepare, video, max_in_flight)
                assert n == m == args.frames, (n, m)
                aio_fps.append(fps)
                lags += lag
            requests = model.info.num_requests

    seq, same, aio = (statistics.median(v) for v in (seq_fps, same_fps, aio_fps))
    p50, p99 = np.percentile(lags, [50, 99])
    shape = MODEL_SHAPES[args.model]
    print(
        f"video: {args.frames} frames {width}x{height} MJPG; model: PP-OCR {args.model} {shape}, "
        f"preprocessing: {args.preprocess}"
    )
    print(f"sequential (read, prepare, infer sync; hint {hint}): {seq:8.1f} fps   runs: {_runs(seq_fps)}")
    print(f"sequential on aioinfer's compiled model (THROUGHPUT): {same:8.1f} fps   runs: {_runs(same_fps)}")
    print(
        f"aioinfer amap ({requests} requests, max_in_flight={max_in_flight}): {aio:8.1f} fps   "
        f"runs: {_runs(aio_fps)}"
    )
    print(
        f"ratio vs {hint} loop: {aio / seq:.2f}x   vs same compiled model: {aio / same:.2f}x   "
        f"loop lag p99: {p99:.2f} ms (p50 {p50:.2f} ms)"
    )


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    asyncio.run(main())
