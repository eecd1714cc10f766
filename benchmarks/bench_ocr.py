"""OCR benchmark (issue 4): the async OCR pipeline's concurrent fan-out vs the same models run
sequentially, on the same images, in one run.

- concurrent: ``aioinfer.tasks`` OCR, all images in flight (``task.map``), every crop of an image
  classified and recognized concurrently over the models' request pools;
- sequential: the same compiled models and the same pre/post-processing code, one infer request
  per model, images one after the other and crops one by one.

Rounds alternate the two; the speedup is the median of the per-round ratios.

Also: event-loop lag during the concurrent run, and the cost of normalization inside the graph
(OpenVINO PrePostProcessor on uint8 NHWC) vs in NumPy before a float model.

    python benchmarks/bench_ocr.py
    python benchmarks/bench_ocr.py --images 16 --json bench_ocr.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from aioinfer import _loading
from aioinfer._bundled import bundled_model
from aioinfer._demo import demo_lines, render_frame
from aioinfer.tasks import OCRTask, load
from aioinfer.tasks._ocr import PPOCR_NORMALIZATION, _cls_inputs, _rec_inputs, _upright
from aioinfer.tasks._preprocess import as_batch, embed_normalization


def sequential(ocr: OCRTask, images: list[np.ndarray]) -> tuple[float, list[list[str]]]:
    """Images one by one, crops one by one, one infer request per model (blocking)."""
    requests = {role: m.compiled.create_infer_request() for role, m in ocr.models.items()}

    def infer(role: str, x: np.ndarray) -> Any:
        return requests[role].infer({0: x})

    texts = []
    start = time.perf_counter()
    for image in images:
        inputs, meta = ocr.pre_process(image)
        lines = ocr._lines(infer("det", inputs)[0], meta)
        probs = [infer("cls", b)[0][0] for b in _cls_inputs(lines.crops)]
        crops = _upright(lines.crops, probs, meta.cfg["cls_thresh"])
        rec = [infer("rec", b) for b in _rec_inputs(crops)]
        texts.append(ocr.post_process((type(lines)(lines.quads, crops), rec), meta).texts)
    return time.perf_counter() - start, texts


async def concurrent(ocr: OCRTask, images: list[np.ndarray]) -> tuple[float, list[list[str]], float]:
    """All images through ``task.map``; also the worst event-loop lag (ms) seen meanwhile."""
    lag = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal lag
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lag = max(lag, (time.perf_counter() - t - 0.01) * 1000)

    tick = asyncio.create_task(ticker())
    start = time.perf_counter()
    texts = [r.output.texts async for r in ocr.map(images, max_in_flight=len(images))]
    seconds = time.perf_counter() - start
    done.set()
    await tick
    return seconds, texts, lag


def normalization_cost(image: np.ndarray, runs: int) -> dict[str, float]:
    """Median ms per detector call (single request, LATENCY hint) with normalization in the graph vs
    in NumPy before the call, and the NumPy normalization alone (Python-side work held per frame)."""
    core = _loading.core()
    plain = core.compile_model(
        _loading.read_model(bundled_model("det")), "CPU", {"PERFORMANCE_HINT": "LATENCY"}
    )
    graph = core.compile_model(
        embed_normalization(_loading.read_model(bundled_model("det")), PPOCR_NORMALIZATION),
        "CPU",
        {"PERFORMANCE_HINT": "LATENCY"},
    )
    batch = as_batch(image)

    def normalize() -> np.ndarray:
        x = (image.astype(np.float32) - 127.5) / 127.5
        return np.ascontiguousarray(x.transpose(2, 0, 1)[np.newaxis])

    def numpy_way() -> Any:
        return plain(normalize())

    def graph_way() -> Any:
        return graph(batch)

    timings: dict[str, list[float]] = {"numpy_ms": [], "in_graph_ms": [], "numpy_normalize_only_ms": []}
    for _ in range(runs):
        for key, fn in (
            ("numpy_ms", numpy_way),
            ("in_graph_ms", graph_way),
            ("numpy_normalize_only_ms", normalize),
        ):
            t = time.perf_counter()
            fn()
            timings[key].append((time.perf_counter() - t) * 1000)
    return {k: round(statistics.median(v), 2) for k, v in timings.items()}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    images = [render_frame(i) for i in range(args.images)]
    truth = [demo_lines(i) for i in range(args.images)]
    seq_times, con_times, lags = [], [], []
    correct = True
    async with load(None, task="ocr", device=args.device) as ocr:
        await ocr.predict(images[0])  # warm up
        sequential(ocr, images[:1])
        for _ in range(args.rounds):  # alternate, so both see the same machine load
            seq_s, seq_texts = await asyncio.to_thread(sequential, ocr, images)
            con_s, con_texts, lag_ms = await concurrent(ocr, images)
            seq_times.append(seq_s)
            con_times.append(con_s)
            lags.append(lag_ms)
            correct = correct and seq_texts == truth and con_texts == truth
        requests = {role: m.info.num_requests for role, m in ocr.models.items()}
    return {
        "images": len(images),
        "lines_per_image": len(truth[0]),
        "rounds": args.rounds,
        "num_requests": requests,
        "sequential_images_per_s": round(len(images) / statistics.median(seq_times), 3),
        "concurrent_images_per_s": round(len(images) / statistics.median(con_times), 3),
        "speedup_median": round(
            statistics.median(s / c for s, c in zip(seq_times, con_times, strict=True)), 2
        ),
        "all_text_read_exactly": correct,
        "max_loop_lag_ms": round(max(lags), 1),
        "det_normalization": normalization_cost(images[0][:352], args.norm_runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3, help="sequential/concurrent pairs, alternated")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--norm-runs", type=int, default=15, help="runs of the normalization comparison")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    for key, value in result.items():
        print(f"{key:>26}: {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
