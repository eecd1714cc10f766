"""``aioinfer demo``: read the text of a video with the async OCR pipeline and report how it went.

With no source it first renders a short video of moving text lines whose content is known, so it
can also say how many lines were read exactly.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import anyio
import cv2
import numpy as np

from ._sinks import JsonlSink, VideoSink
from ._sources import open_source
from ._stats import Latency
from .tasks import Task
from .tasks import load as load_task

DEMO_SIZE = (360, 640)  # height, width
DEMO_FPS = 12.0
DEMO_FRAMES = 36
PHRASES = ("Hello from aioinfer", "OpenVINO async OCR", "Total: 42.50 EUR")
FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SIMPLEX,
)
INPUT_NAME, VIDEO_NAME, JSONL_NAME = "demo-input.mp4", "annotated.mp4", "predictions.jsonl"


def demo_lines(index: int) -> list[str]:
    """The text of frame ``index`` of the demo video, top to bottom."""
    return [*PHRASES, f"frame {index:04d}"]


def render_frame(index: int, size: tuple[int, int] = DEMO_SIZE) -> np.ndarray:
    """Frame ``index`` of the demo video: its lines drift sideways, each at its own pace and font,
    always wholly inside the frame."""
    height, width = size
    image = np.full((height, width, 3), (245, 240, 235), np.uint8)
    lines = demo_lines(index)
    pitch = height // (len(lines) + 1)
    for row, text in enumerate(lines):
        font = FONTS[row % len(FONTS)]
        (w, h), _ = cv2.getTextSize(text, font, 1.0, 2)
        room = max(1, width - w - 40)
        travel = (index * (7 + 5 * row) + 60 * row) % (2 * room)
        x = 20 + (travel if travel < room else 2 * room - travel)  # back and forth
        cv2.putText(image, text, (x, pitch * (row + 1) + h // 2), font, 1.0, (40, 30, 20), 2, cv2.LINE_AA)
    return image


def write_demo_video(path: str | os.PathLike[str], frames: int = DEMO_FRAMES, fps: float = DEMO_FPS) -> Path:
    """Render the demo video (``frames`` frames) to ``path`` (blocking)."""
    path = Path(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (DEMO_SIZE[1], DEMO_SIZE[0]))
    if not writer.isOpened():
        raise OSError(f"cannot write the demo video {str(path)!r}")
    try:
        for index in range(frames):
            writer.write(render_frame(index))
    finally:
        writer.release()
    return path


@dataclass
class DemoReport:
    """What a demo run did: frames, time, throughput, per-stage latency, accuracy on known text."""

    source: str
    frames: int
    seconds: float
    stage_ms: dict[str, Latency]
    lines_expected: int | None
    lines_correct: int | None
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def print(self, file: TextIO | None = None) -> None:
        """A short human-readable summary (to stdout by default)."""
        print(
            f"read {self.frames} frames of {self.source} in {self.seconds:.1f} s: {self.fps:.2f} frames/s",
            file=file,
        )
        print("per-stage latency, ms (p50 / p95):", file=file)
        for stage, lat in self.stage_ms.items():
            print(f"  {stage:<13} {lat.p50:9.1f} / {lat.p95:9.1f}", file=file)
        if self.lines_expected:
            share = 100 * (self.lines_correct or 0) / self.lines_expected
            print(f"lines read exactly: {self.lines_correct}/{self.lines_expected} ({share:.1f}%)", file=file)
        for name, path in self.outputs.items():
            print(f"{name}: {path}", file=file)


async def run_demo(
    source: str | int | None = None,
    *,
    output_dir: str | os.PathLike[str] = "aioinfer-demo",
    frames: int | None = None,
    max_in_flight: int | None = None,
    device: str = "AUTO",
    progress: bool = True,
) -> DemoReport:
    """OCR every frame of ``source`` (a video path or camera index; ``None``: a generated video of
    ``frames`` frames with known text), writing an annotated video and one JSON line per frame into
    ``output_dir``. ``frames`` caps how many frames are read from a given source."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    generated = source is None
    if source is None:
        path = await anyio.to_thread.run_sync(write_demo_video, out / INPUT_NAME, frames or DEMO_FRAMES)
        source = str(path)
    outputs = {"annotated video": out / VIDEO_NAME, "predictions": out / JSONL_NAME}
    if progress:
        print(f"aioinfer demo: loading the PP-OCR models on {device}, reading {source}", file=sys.stderr)
    async with load_task(None, task="ocr", device=device) as ocr:
        count, expected, correct, seconds = await _read_video(
            ocr,
            source,
            outputs,
            frames=frames,
            max_in_flight=max_in_flight,
            known=generated,
            progress=progress,
        )
        stages = ocr.stage_ms()
    return DemoReport(
        source=f"the generated video {source}" if generated else str(source),
        frames=count,
        seconds=seconds,
        stage_ms=stages,
        lines_expected=expected if generated else None,
        lines_correct=correct if generated else None,
        outputs=outputs,
    )


async def _read_video(
    ocr: Task,
    source: str | int,
    outputs: dict[str, Path],
    *,
    frames: int | None,
    max_in_flight: int | None,
    known: bool,
    progress: bool,
) -> tuple[int, int, int, float]:
    """OCR the frames into the sinks; (frames, known lines, lines read exactly, seconds)."""
    count = expected = correct = 0
    async with (
        open_source(source, count=frames) as frames_in,
        VideoSink(outputs["annotated video"], fps=frames_in.fps or DEMO_FPS) as video,
        JsonlSink(outputs["predictions"]) as jsonl,
    ):
        start = time.perf_counter()
        async for result in ocr.map(frames_in, max_in_flight=max_in_flight, progress=progress):
            pred = result.output
            await video.write(await anyio.to_thread.run_sync(ocr.draw, result.frame, pred))
            await jsonl.write({"frame": result.index, "timestamp_ms": result.timestamp_ms, **pred.to_dict()})
            count += 1
            if known:
                truth = demo_lines(result.index)
                expected += len(truth)
                correct += exact_matches(truth, pred.texts)
        seconds = time.perf_counter() - start
    return count, expected, correct, seconds


def exact_matches(truth: Sequence[str], read: Sequence[str]) -> int:
    """How many of the ``truth`` lines were read exactly (each read line counts once)."""
    return sum((Counter(truth) & Counter(read)).values())
