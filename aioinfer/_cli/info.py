"""``aioinfer info``: what a model takes and gives, and how it was compiled, as a table or JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import Any

import anyio

from .. import _loading
from .._model import AsyncModel, load
from . import add_model_options, model_options

PRECISION_HINT = "INFERENCE_PRECISION_HINT"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "info",
        help="show a model's inputs, outputs, precision, devices and requests",
        description="Compile MODEL as the other commands would and print its inputs and outputs "
        "(names, shapes with -1 for dynamic dimensions, element types), its precision (the one it "
        "really computes in, the compiled model's INFERENCE_PRECISION_HINT, and the precisions its "
        "nodes run in), the devices it runs "
        "on and its number of infer requests.",
    )
    p.add_argument("model", help="model path (.xml, .onnx, .tflite, .pdmodel, .pb)")
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    described = asyncio.run(_describe(args.model, model_options(args)))
    print(json.dumps(described, indent=2) if args.json else format_info(described))
    return 0


async def _describe(path: str, options: dict[str, Any]) -> dict[str, Any]:
    async with load(path, **options) as model:
        return await describe(model)


async def describe(model: AsyncModel) -> dict[str, Any]:
    """``model.info`` as a JSON-ready mapping, with ``precision``: the one the model really computes
    in (``model.info.precision``), the compiled model's inference precision hint (``None`` where the
    device does not report one, as on AUTO) and the precisions its nodes run in (``None`` where the
    device does not tell)."""
    runtime = await anyio.to_thread.run_sync(_loading.runtime_precisions, model.compiled)
    info = model.info.to_dict()
    hint = info["config"].get(PRECISION_HINT)
    info["precision"] = {
        "used": model.info.precision,
        "hint": hint,
        "runtime": sorted(runtime) if runtime is not None else None,
    }
    return info


def format_info(info: dict[str, Any]) -> str:
    """:func:`describe`'s mapping as plain aligned text."""
    precision = info["precision"]
    runtime = ", ".join(precision["runtime"]) if precision["runtime"] is not None else "not reported"
    lines = _align(
        [
            ("model", info["name"]),
            ("device", info["device"]),
            ("execution devices", ", ".join(info["execution_devices"])),
            ("num_requests", str(info["num_requests"])),
            ("precision", precision["used"] or "not reported"),
            ("precision hint", precision["hint"] or "not reported"),
            ("nodes run in", runtime),
        ]
    )
    for kind in ("inputs", "outputs"):
        lines += ["", kind, *_align([("name", "shape", "element type"), *_rows(info[kind])], indent="  ")]
    return "\n".join(lines)


def _rows(tensors: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [(t["name"] or "(unnamed)", _shape(t["shape"]), t["element_type"]) for t in tensors]


def _shape(shape: Sequence[int] | None) -> str:
    return "dynamic rank" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def _align(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Rows of cells as lines whose columns line up (two spaces apart)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
