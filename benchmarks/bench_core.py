"""Core benchmark (issues 2 and 11): aioinfer's request pool vs OpenVINO's own ways to run a compiled
model, on asyncio, uvloop and trio.

Two real pretrained models from the rapidocr wheel at fixed shapes: the PP-OCR orientation classifier
(~2 ms) and the PP-OCR recognizer on a short text line (~10 ms). For each, in one process, alternating
the methods (aioinfer in a run of each backend) and repeating: inferences/s of a sync loop,
openvino.AsyncInferQueue, a worker thread per request and aioinfer; the ratio aioinfer /
AsyncInferQueue on each backend (median of per-round pairs); the event-loop lag p99 while saturated.
Then the idle cost of one await on a tiny model on each backend, beside a bare bridge measured in the
same run (start_async + a callback + the backend's thread-safe wake-up, no aioinfer code).

    python benchmarks/bench_core.py
    python benchmarks/bench_core.py --rounds 9 --seconds 2 --json bench_core.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from aioinfer._bench import bench_model, format_table, idle_overheads
from aioinfer._bundled import bundled_model

CASES = {  # name: (label, bundled model, fixed input shape)
    "cls": ("PP-OCR cls 48x192", "cls", [1, 3, 48, 192]),
    "rec": ("PP-OCR rec 48x64", "rec", [1, 3, 48, 64]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.5, help="target duration of one method's run")
    parser.add_argument("--idle-calls", type=int, default=5000, help="calls of each way for the idle cost")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)

    results = [
        bench_model(
            bundled_model(kind),
            shape,
            device=args.device,
            rounds=args.rounds,
            seconds=args.seconds,
            label=label,
        )
        for label, kind, shape in (CASES[name] for name in args.models)
    ]
    idle = idle_overheads(args.device, n=args.idle_calls)
    print(format_table(results, idle))
    if args.json:
        report = {
            "idle": {loop: {**asdict(c), "ratio": round(c.ratio, 3)} for loop, c in idle.items()},
            "models": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
