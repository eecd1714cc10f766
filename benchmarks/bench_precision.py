"""Precision benchmark (issue 12): the bundled PP-OCR pipeline at bf16 vs f32 on the same images.

Generated pages of known text (several Hershey fonts, sizes, stroke widths, ink colours, flat or
gradient backgrounds with noise), read by two OCR tasks loaded with ``precision="f32"`` and
``precision="bf16"`` (what each really runs in is printed, from ``task.info``). Reports:

- OCR line accuracy: lines read exactly / lines on the pages, at each precision;
- detection box agreement: the text detector's line boxes at bf16 matched one-to-one to those at
  f32 with IoU >= 0.5, / the f32 boxes (and the matched lines whose text is the same);
- speed: images/s of the whole pipeline, the two precisions alternating over rounds, median.

    python benchmarks/bench_precision.py
    python benchmarks/bench_precision.py --pages 60 --rounds 7 --json bench_precision.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aioinfer import tasks
from aioinfer._demo import exact_matches
from aioinfer.tasks import TextResult

FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
)
WORDS = "total order amount paid Date ship item price net model frame camera street Room Floor Gate seat exit"
PRECISIONS = ("f32", "bf16")


def page(index: int, seed: int = 12) -> tuple[np.ndarray, list[str]]:
    """Page ``index``: a 480x640 BGR image of five lines of words and numbers, and their text."""
    rng = np.random.default_rng([seed, index])
    if rng.integers(0, 2):  # light ink on a dark page
        paper, ink, slope = rng.integers(20, 70, 3), rng.integers(150, 250, 3), 1.0
    else:
        paper, ink, slope = rng.integers(170, 250, 3), rng.integers(0, 100, 3), -1.0
    ramp = np.linspace(0, slope * float(rng.integers(0, 40)), 640)[None, :, None]
    noise = rng.normal(0, float(rng.uniform(2, 10)), (480, 640, 3))
    image = np.clip(paper + ramp + noise, 0, 255).astype(np.uint8)
    words = WORDS.split()
    lines = []
    for row in range(5):
        text = " ".join([*rng.choice(words, int(rng.integers(1, 4))), str(int(rng.integers(0, 10_000)))])
        font, scale = FONTS[int(rng.integers(len(FONTS)))], float(rng.uniform(0.55, 1.4))
        thickness = int(rng.integers(1, 3))
        if font == cv2.FONT_HERSHEY_PLAIN:
            scale *= 1.6
        (w, _), _ = cv2.getTextSize(text, font, scale, thickness)
        x = int(rng.integers(10, max(11, 630 - w)))
        cv2.putText(
            image, text, (x, 70 + 85 * row), font, scale, tuple(int(c) for c in ink), thickness, cv2.LINE_AA
        )
        lines.append(text)
    return image, lines


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def agreement(reference: TextResult, other: TextResult, threshold: float = 0.5) -> tuple[int, int, float]:
    """(boxes of ``other`` matched one-to-one, best IoU first, to ``reference``'s at IoU >=
    ``threshold``; of those, how many read the same text; the sum of their IoUs)."""
    pairs = sorted(
        ((iou(r.box, o.box), i, j) for i, r in enumerate(reference.lines) for j, o in enumerate(other.lines)),
        reverse=True,
    )
    used_r, used_o, same, overlap = set(), set(), 0, 0.0
    for score, i, j in pairs:
        if score < threshold or i in used_r or j in used_o:
            continue
        used_r.add(i)
        used_o.add(j)
        same += reference.lines[i].text == other.lines[j].text
        overlap += score
    return len(used_r), same, overlap


async def read_all(task: Any, images: list[np.ndarray]) -> tuple[list[TextResult], float]:
    """Every image read concurrently; and images/s."""
    start = time.perf_counter()
    results = await asyncio.gather(*(task.predict(image) for image in images))
    return list(results), len(images) / (time.perf_counter() - start)


async def run(pages: int, rounds: int, device: str) -> dict[str, Any]:
    data = [page(i) for i in range(pages)]
    images, truth = [d[0] for d in data], [d[1] for d in data]
    loaded = {p: await tasks.load(None, task="ocr", device=device, precision=p) for p in PRECISIONS}
    try:
        used = {p: {role: info.precision for role, info in t.info.models.items()} for p, t in loaded.items()}
        results = {p: (await read_all(t, images))[0] for p, t in loaded.items()}  # also the warm-up
        rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        for r in range(rounds):
            for p in PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]:
                rates[p].append((await read_all(loaded[p], images))[1])
    finally:
        for t in loaded.values():
            await t.aclose()
    total = sum(len(t) for t in truth)
    correct = {
        p: sum(exact_matches(t, r.texts) for t, r in zip(truth, results[p], strict=True)) for p in PRECISIONS
    }
    matched = [agreement(f, b) for f, b in zip(results["f32"], results["bf16"], strict=True)]
    return {
        "pages": pages,
        "lines": total,
        "precision_used": used,
        "line_accuracy": {p: correct[p] / total for p in PRECISIONS},
        "lines_correct": correct,
        "boxes_f32": sum(len(r.lines) for r in results["f32"]),
        "boxes_bf16": sum(len(r.lines) for r in results["bf16"]),
        "boxes_matched": sum(m[0] for m in matched),
        "matched_same_text": sum(m[1] for m in matched),
        "matched_mean_iou": sum(m[2] for m in matched) / max(1, sum(m[0] for m in matched)),
        "images_per_s": {p: statistics.median(rates[p]) for p in PRECISIONS},
        "speedup_bf16": statistics.median(b / f for f, b in zip(rates["f32"], rates["bf16"], strict=True)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    out = asyncio.run(run(args.pages, args.rounds, args.device))
    print(f"precision really used: {out['precision_used']}")
    print(f"{'':24}{'f32':>10}{'bf16':>10}")
    acc, rate = out["line_accuracy"], out["images_per_s"]
    print(f"{'OCR line accuracy':24}{acc['f32']:>10.1%}{acc['bf16']:>10.1%}   of {out['lines']} lines")
    print(
        f"{'images/s (median)':24}{rate['f32']:>10.2f}{rate['bf16']:>10.2f}"
        f"   bf16/f32 {out['speedup_bf16']:.2f}x"
    )
    print(
        f"detector boxes: {out['boxes_matched']} of {out['boxes_f32']} f32 boxes matched by a bf16 box "
        f"at IoU >= 0.5 "
        f"({out['boxes_bf16']} bf16 boxes, mean IoU of the matched {out['matched_mean_iou']:.3f}); "
        f"{out['matched_same_text']} of the matched read the same text"
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
