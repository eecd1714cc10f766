"""``aioinfer demo``: read the text of a video with the async OCR pipeline and report how it went.

With no source it first renders a short video of moving text lines whose content is known, so it
can also say how many lines were read exactly.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
import cv2
import numpy as np

from ._map import MapResult
from ._monitor import LoopStats, monitored
from ._pipeline import Step, run_pipeline
from ._sources import open_source
from ._stats import Latency
from .tasks import TextResult
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
    """What a demo run did: frames, time, throughput, per-stage latency, accuracy on known text,
    the event loop's lag."""

    source: str
    frames: int
    seconds: float
    stages: dict[str, Latency]
    lines_expected: int | None
    lines_correct: int | None
    outputs: dict[str, Path] = field(default_factory=dict)
    loop: LoopStats | None = None

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
        for stage, lat in self.stages.items():
            print(f"  {stage:<13} {lat.p50:9.1f} / {lat.p95:9.1f}", file=file)
        if self.loop is not None:
            print(self.loop.summary(), file=file)
        if self.lines_expected:
            share = 100 * (self.lines_correct or 0) / self.lines_expected
            print(f"lines read exactly: {self.lines_correct}/{self.lines_expected} ({share:.1f}%)", file=file)
        for name, path in self.outputs.items():
            print(f"{name}: {path}", file=file)


class _Accuracy:
    """Counts the lines of the generated video read exactly, frame by frame."""

    def __init__(self) -> None:
        self.expected = self.correct = 0

    def __call__(self, result: MapResult[TextResult]) -> None:
        truth = demo_lines(result.index)
        self.expected += len(truth)
        self.correct += exact_matches(truth, result.output.texts)


async def run_demo(
    source: str | int | None = None,
    *,
    output_dir: str | os.PathLike[str] = "aioinfer-demo",
    frames: int | None = None,
    max_in_flight: int | None = None,
    progress: bool = True,
    **load_options: Any,
) -> DemoReport:
    """OCR every frame of ``source`` (a video path or camera index; ``None``: a generated video of
    ``frames`` frames with known text) through the pipeline of ``aioinfer run --task ocr``, writing
    an annotated video and one JSON line per frame into ``output_dir``. ``frames`` caps how many
    frames are read from a given source; ``load_options`` (``device``, ``num_requests``,
    ``config``) go to :func:`aioinfer.tasks.load`. The event loop's lag is measured meanwhile (by
    the monitor already watching it, else by one of its own)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    generated = source is None
    if source is None:
        path = await anyio.to_thread.run_sync(write_demo_video, out / INPUT_NAME, frames or DEMO_FRAMES)
        source = str(path)
    outputs = {"annotated video": out / VIDEO_NAME, "predictions": out / JSONL_NAME}
    accuracy = _Accuracy() if generated else None
    if progress:
        device = load_options.get("device", "AUTO")
        print(f"aioinfer demo: loading the PP-OCR models on {device}, reading {source}", file=sys.stderr)
    async with (
        monitored() as monitor,
        open_source(source, count=frames) as frames_in,
        load_task(None, task="ocr", **load_options) as ocr,
    ):
        done = await run_pipeline(
            Step.of_task(ocr),
            frames_in,
            video=outputs["annotated video"],
            jsonl=outputs["predictions"],
            max_in_flight=max_in_flight,
            progress=progress,
            each=accuracy,
        )
        stages = ocr.stats().stages
        loop = monitor.stats()
    return DemoReport(
        source=f"the generated video {source}" if generated else str(source),
        frames=done.frames,
        seconds=done.seconds,
        stages=stages,
        lines_expected=accuracy.expected if accuracy else None,
        lines_correct=accuracy.correct if accuracy else None,
        outputs=outputs,
        loop=loop,
    )


def exact_matches(truth: Sequence[str], read: Sequence[str]) -> int:
    """How many of the ``truth`` lines were read exactly (each read line counts once)."""
    return sum((Counter(truth) & Counter(read)).values())
