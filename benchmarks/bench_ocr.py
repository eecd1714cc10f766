"""OCR benchmark: aioinfer's OCR task vs rapidocr's own pipeline on its OpenVINO engine, with the
same PP-OCR model files (the ones the ``rapidocr`` wheel ships), the same detector input size and
the same thresholds, on the same generated pages, in the same run.

- aioinfer: ``tasks.load(None, task="ocr")``, the pages through ``task.map`` (its default window:
  twice the requests of its three models, so several images are in flight at once: the detector of
  one overlaps the recognizer of another), as a user of an async library runs it;
- rapidocr: ``RapidOCR`` with ``engine_type: openvino`` for det, cls and rec, each pointed at the
  bundled file (``model_path``; nothing is downloaded), ``limit_side_len``/``limit_type`` and
  ``cls_thresh`` set to aioinfer's, its engine config left at its defaults; pages one after the
  other, as it runs (it is synchronous);
- rapidocr_2threads: the same, in 2 threads, each with its own ``RapidOCR`` (one instance cannot be
  shared: each of its models has one infer request), taking the next page in turn: the fairest
  parallel use of it on 2 cores.

The pages come from :func:`aioinfer.tasks._ocr_samples.sample_pages` (seeded): Hershey faces in
several sizes, strokes and colours, flat, gradient and noisy backgrounds, small tilts and some lines
upside down; sides are multiples of 32 so that both pipelines give the detector the same input
(checked, and reported). Each first reads every page once, untimed, so that each has prepared every
input shape (OpenVINO prepares a new shape once, at ~2x an inference), and aioinfer reads them again
until its models' shape lanes stop growing (see ``aioinfer.load``'s ``shape_lanes``): what is timed
is the steady state. Line accuracy is the share of true lines read exactly (text equal, matched once each per
page). Each round takes the pages ``--chunk`` at a time, every pipeline in turn on each chunk
(alternating the order), so that all see the same load on the machine; images/s is the median
over rounds, a speedup the median of the per-chunk time ratios (the rival's / aioinfer's). CPU
ms / image is the process's CPU time (all threads) per page: what a pipeline costs when the cores
are shared; cores busy (CPU ms / image x images/s) is how much of the machine it got. On a machine
others load too, both get about the same share, and the speedup falls towards the ratio of CPU ms
/ image; with both cores free, aioinfer keeps both busy and rapidocr about one. ``stage_cpu_ms``
splits aioinfer's CPU ms / image by stage (each run alone, one after the other: see
:func:`aioinfer_stage_cpu`).

    python benchmarks/bench_ocr.py
    python benchmarks/bench_ocr.py --pages 60 --rounds 5 --json bench_ocr.json
    python benchmarks/bench_ocr.py --norm-runs 15   # also: normalization in the graph vs NumPy
    python benchmarks/bench_ocr.py --shape-lanes 16  # a long run's set-up: see aioinfer.load
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aioinfer import _loading
from aioinfer._bundled import bundled_model
from aioinfer.tasks import OCRTask, _ocr, load
from aioinfer.tasks._ocr import PPOCR_NORMALIZATION, Batch, ctc_decode, det_input_size
from aioinfer.tasks._ocr_samples import Page, sample_pages
from aioinfer.tasks._preprocess import as_batch, embed_normalization


def rapidocr_engine(ocr: OCRTask) -> Any:
    """rapidocr's ``RapidOCR`` on its OpenVINO engine, on the bundled model files, with ``ocr``'s
    detector size, thresholds and ``text_score``."""
    from rapidocr import EngineType, RapidOCR

    cfg = ocr.settings
    params: dict[str, Any] = {
        "Global.log_level": "critical",
        "Global.text_score": cfg["text_score"],
        "Global.use_cls": cfg["use_cls"],
        "Det.limit_side_len": cfg["det_limit_side"],
        "Det.limit_type": cfg["det_limit_type"],
        "Det.thresh": cfg["det_thresh"],
        "Det.box_thresh": cfg["box_thresh"],
        "Det.unclip_ratio": cfg["unclip_ratio"],
        "Det.max_candidates": cfg["max_candidates"],
        "Cls.cls_thresh": cfg["cls_thresh"],
    }
    for section, role in (("Det", "det"), ("Cls", "cls"), ("Rec", "rec")):
        params[f"{section}.engine_type"] = EngineType.OPENVINO
        params[f"{section}.model_path"] = str(bundled_model(role))
    return RapidOCR(params=params)


def rapidocr_precision(engine: Any) -> dict[str, str]:
    """The inference precision each of rapidocr's OpenVINO models runs in, by role."""
    sessions = {"det": engine.text_det, "cls": engine.text_cls, "rec": engine.text_rec}
    return {
        role: s.session.session.get_compiled_model().get_property("INFERENCE_PRECISION_HINT").get_type_name()
        for role, s in sessions.items()
        if s is not None
    }


def same_detector_sizes(engine: Any, ocr: OCRTask, pages: Sequence[Page]) -> int:
    """How many ``pages`` both pipelines give the detector at the same input size."""
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    det = engine.cfg.Det
    cfg = ocr.settings
    same = 0
    for page in pages:
        h, w = page.image.shape[:2]
        theirs = DetPreProcess(det.limit_side_len, det.limit_type).resize(page.image).shape[:2]
        ours = det_input_size(h, w, cfg["det_limit_side"], cfg["det_limit_type"], cfg["det_max_side"])
        same += tuple(theirs) == ours
    return same


def line_accuracy(pages: Sequence[Page], texts: Sequence[Sequence[str]]) -> tuple[int, int, int]:
    """(true lines read exactly, true lines, lines read that match no true line)."""
    exact = extra = 0
    for page, read in zip(pages, texts, strict=True):
        left = Counter(page.lines)
        for text in read:
            if left[text] > 0:
                left[text] -= 1
                exact += 1
            else:
                extra += 1
    return exact, sum(len(p.lines) for p in pages), extra


async def run_aioinfer(ocr: OCRTask, images: list[np.ndarray]) -> tuple[float, float, list[list[str]]]:
    """Wall-clock and CPU seconds (all threads of the process) for ``images``, and their lines."""
    start, cpu = time.perf_counter(), time.process_time()
    texts = [list(r.output.texts) async for r in ocr.map(images)]
    return time.perf_counter() - start, time.process_time() - cpu, texts


def run_rapidocr(engine: Any, images: list[np.ndarray]) -> tuple[float, float, list[list[str]]]:
    """Wall-clock and CPU seconds (all threads of the process) for ``images``, and their lines."""
    start, cpu = time.perf_counter(), time.process_time()
    texts = [list(engine(image).txts or ()) for image in images]
    return time.perf_counter() - start, time.process_time() - cpu, texts


def run_rapidocr_threads(
    engines: Sequence[Any], images: list[np.ndarray]
) -> tuple[float, float, list[list[str]]]:
    """Like :func:`run_rapidocr`, one thread per engine, each taking the next image in turn."""
    texts: list[list[str]] = [[] for _ in images]
    pending = iter(enumerate(images))
    lock = threading.Lock()

    def work(engine: Any) -> None:
        while True:
            with lock:
                item = next(pending, None)
            if item is None:
                return
            texts[item[0]] = list(engine(item[1]).txts or ())

    start, cpu = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=work, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, time.process_time() - cpu, texts


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

    ways: dict[str, Callable[[], Any]] = {
        "numpy_ms": lambda: plain(normalize()),
        "in_graph_ms": lambda: graph(batch),
        "numpy_normalize_only_ms": normalize,
    }
    timings: dict[str, list[float]] = {key: [] for key in ways}
    for _ in range(runs):
        for key, way in ways.items():
            start = time.perf_counter()
            way()
            timings[key].append((time.perf_counter() - start) * 1000)
    return {k: round(statistics.median(v), 2) for k, v in timings.items()}


def aioinfer_stage_cpu(ocr: OCRTask, images: list[np.ndarray]) -> dict[str, float]:
    """aioinfer's CPU ms per image in each stage, the stages of each image run one after the other
    on this thread with one OpenVINO request per model: the process's CPU time (all threads, a
    model's own included) while each ran. Where a page's CPU time goes; the sum is near the
    pipeline's CPU ms / image (which also holds the thread hops and the event loop)."""
    requests = {role: model.compiled.create_infer_request() for role, model in ocr.models.items()}
    spent: Counter[str] = Counter()

    def timed(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.process_time()
        result = fn(*args)
        spent[stage] += time.process_time() - start
        return result

    def rows(role: str, batches: list[Batch], count: int) -> list[list[np.ndarray]]:
        """Each line's rows of every output of ``role``, batch by batch."""
        found: list[list[np.ndarray]] = [[] for _ in range(count)]
        for batch in batches:
            out = requests[role].infer({0: batch.pixels})
            arrays = [out[port].copy() for port in requests[role].model_outputs]
            for row, line in enumerate(batch.lines):
                found[line] = [array[row] for array in arrays]
        return found

    names = [port.get_any_name() for port in requests["rec"].model_outputs]
    ids, scores = names.index("ids"), names.index("scores")
    for image in images:
        inputs, meta = timed("pre_process", ocr.pre_process, image)
        prob = timed("det", lambda: requests["det"].infer({0: inputs})[0].copy())  # noqa: B023
        quads = timed("boxes", ocr._quads, prob, meta)
        crops, cls_inputs = timed("crops", _ocr._prepare, meta.image, quads, meta.cfg, True)
        probs = [r[0] for r in timed("cls", rows, "cls", cls_inputs, len(crops))]
        rec_inputs = timed("rec_pre", _ocr._upright_rec_inputs, crops, probs, meta.cfg)
        read = timed("rec", rows, "rec", rec_inputs, len(crops))
        timed("post_process", lambda: [ctc_decode(r[ids], r[scores], ocr.characters) for r in read])  # noqa: B023
    return {stage: round(seconds / len(images) * 1000, 1) for stage, seconds in spent.items()}


async def grow_lanes(ocr: OCRTask, images: list[np.ndarray], passes: int = 5) -> dict[str, int]:
    """Read ``images`` again until a pass adds no shape lane to any model (at most ``passes``): the
    steady state of a long run, each recurring shape on a compiled copy of its own. The lanes each
    model then has."""

    def lanes() -> dict[str, int]:
        return {role: model.stats().lanes for role, model in ocr.models.items()}

    for _ in range(passes):
        before = lanes()
        await run_aioinfer(ocr, images)
        if lanes() == before:
            break
    return lanes()


def rapidocr_stages(engine: Any, images: list[np.ndarray]) -> dict[str, float]:
    """rapidocr's own per-stage time (its ``elapse_list``), mean ms per image."""
    elapsed = np.array([engine(image).elapse_list or [0.0, 0.0, 0.0] for image in images], float)
    return dict(zip(("det", "cls", "rec"), np.round(elapsed.mean(axis=0) * 1000, 1).tolist(), strict=True))


Runner = Callable[[list[np.ndarray]], Awaitable[tuple[float, float, list[list[str]]]]]


RIVALS = ("rapidocr", "rapidocr_2threads")


async def run_round(
    runners: dict[str, Runner], chunks: list[list[Page]], flip: bool
) -> tuple[dict[str, float], dict[str, float], dict[str, list[float]], dict[str, list[list[str]]]]:
    """Every pipeline on every chunk of pages, chunk by chunk, alternating the order: wall and CPU
    seconds of each over all chunks, each rival's time / aioinfer's time on each chunk, and the
    lines each read."""
    wall, cpu = dict.fromkeys(runners, 0.0), dict.fromkeys(runners, 0.0)
    texts: dict[str, list[list[str]]] = {name: [] for name in runners}
    ratios: dict[str, list[float]] = {rival: [] for rival in RIVALS}
    for index, chunk in enumerate(chunks):
        seconds = {}
        for name in sorted(runners, reverse=(index % 2 == 1) != flip):
            seconds[name], cpu_seconds, read = await runners[name]([p.image for p in chunk])
            wall[name] += seconds[name]
            cpu[name] += cpu_seconds
            texts[name] += read
        for rival in RIVALS:
            ratios[rival].append(seconds[rival] / seconds["aioinfer"])
    return wall, cpu, ratios, texts


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pages = sample_pages(args.pages, seed=args.seed)
    chunks = [pages[i : i + args.chunk] for i in range(0, len(pages), args.chunk)]
    names = ("aioinfer", *RIVALS)
    walls: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {rival: [] for rival in RIVALS}
    lanes = {"rec": args.shape_lanes, "cls": args.shape_lanes}  # a page size seldom recurs: det keeps 1
    options = {"device": args.device, "settings": args.settings, "shape_lanes": lanes}
    async with load(None, task="ocr", **options) as ocr:
        engine = rapidocr_engine(ocr)
        engines = [rapidocr_engine(ocr) for _ in range(2)]
        runners: dict[str, Runner] = {
            "aioinfer": lambda images: run_aioinfer(ocr, images),
            "rapidocr": lambda images: asyncio.to_thread(run_rapidocr, engine, images),
            "rapidocr_2threads": lambda images: asyncio.to_thread(run_rapidocr_threads, engines, images),
        }
        for runner in runners.values():  # every input shape seen once by both: the steady state
            await runner([p.image for p in pages])
        lanes = await grow_lanes(ocr, [p.image for p in pages])
        for round_ in range(args.rounds):
            wall, cpu, round_ratios, texts = await run_round(runners, chunks, flip=round_ % 2 == 1)
            for name in runners:
                walls[name].append(wall[name])
                cpus[name].append(cpu[name])
            for rival in RIVALS:
                ratios[rival] += round_ratios[rival]
        images = [p.image for p in pages[: max(1, args.pages // 2)]]
        stages = {
            "aioinfer": {k: round(v.p50, 1) for k, v in ocr.stats().stages.items() if v.p50 is not None},
            "rapidocr": await asyncio.to_thread(rapidocr_stages, engine, images),
            "rapidocr_2threads": {},
        }
        stage_cpu = await asyncio.to_thread(aioinfer_stage_cpu, ocr, images)
        result: dict[str, Any] = {
            "pages": len(pages),
            "lines": sum(len(p.lines) for p in pages),
            "upside_down_lines": sum(sum(p.upside_down) for p in pages),
            "rounds": args.rounds,
            "chunk": args.chunk,
            "settings": ocr.settings,
            "same_detector_input": f"{same_detector_sizes(engine, ocr, pages)}/{len(pages)}",
            "aioinfer_in_flight": 2 * ocr.requests,  # task.map's default window
            "num_requests": {role: m.info.num_requests for role, m in ocr.models.items()},
            "shape_lanes": lanes,
            "precision": {
                "aioinfer": {role: m.info.precision for role, m in ocr.models.items()},
                "rapidocr": rapidocr_precision(engine),
            },
        }
    for name in runners:
        exact, total, extra = line_accuracy(pages, texts[name])
        result[name] = {
            "line_accuracy": round(exact / total, 4),
            "exact_lines": exact,
            "extra_lines": extra,
            "images_per_s": round(len(pages) / statistics.median(walls[name]), 3),
            "cpu_ms_per_image": round(statistics.median(cpus[name]) / len(pages) * 1000, 1),
            "stage_ms": stages[name],
        }
    result["aioinfer"]["stage_cpu_ms"] = stage_cpu
    for rival in RIVALS:
        result[f"speedup_vs_{rival}"] = round(statistics.median(ratios[rival]), 3)
        result[f"speedup_vs_{rival}_of_totals"] = round(sum(walls[rival]) / sum(walls["aioinfer"]), 3)
        result[f"speedup_vs_{rival}_per_chunk"] = [round(r, 2) for r in ratios[rival]]
    if args.norm_runs:
        result["det_normalization"] = normalization_cost(pages[0].image, args.norm_runs)
    return result


def table(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table."""
    how = {
        "aioinfer": f"task.map, {result['aioinfer_in_flight']} images in flight",
        "rapidocr": "RapidOCR, one image at a time (as it runs)",
        "rapidocr_2threads": "2 threads, a RapidOCR each",
    }
    rows = [
        "| pipeline | how | line accuracy (exact / lines) | extra lines | images/s | CPU ms / image "
        "| cores busy | aioinfer's speedup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, what in how.items():
        r = result[name]
        speedup = f"{result[f'speedup_vs_{name}']:.2f}x" if name in RIVALS else ""
        rows.append(
            f"| {name} | {what} | {r['line_accuracy']:.2%} ({r['exact_lines']}/{result['lines']}) "
            f"| {r['extra_lines']} | {r['images_per_s']:.2f} | {r['cpu_ms_per_image']:.0f} "
            f"| {r['images_per_s'] * r['cpu_ms_per_image'] / 1000:.2f} | {speedup} |"
        )
    rows.append("\nspeedup: median of the per-chunk time ratios, same pages, same run")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=60, help="generated pages")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated pages")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all pages")
    parser.add_argument(
        "--chunk", type=int, default=30, help="pages each pipeline reads in turn, alternating who goes first"
    )
    parser.add_argument("--device", default="CPU")
    parser.add_argument(
        "--shape-lanes",
        type=int,
        default=1,
        help="aioinfer's compiled copies of the recognizer and the classifier, one per recurring "
        "input shape (default 1, as loaded)",
    )
    parser.add_argument(
        "--settings",
        type=json.loads,
        default=None,
        help="aioinfer settings as JSON, e.g. '{\"cls_thresh\": 0.9}'",
    )
    parser.add_argument(
        "--norm-runs", type=int, default=0, help="also time normalization in the graph vs NumPy (runs)"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
