"""How should a job's outputs become the caller's: copy them out, or swap in fresh output tensors?

For outputs from 4 KiB to 64 MiB (a model computing ``y = x + 1`` on a float32 input of that size), it
measures the median time of one inference plus obtaining an array the caller owns, both ways:
  copy  run, then ``np.array(request.get_output_tensor().data)`` (what aioinfer does)
  swap  before each run, ``set_output_tensor(ov.Tensor(np.empty(shape)))``; the fresh array is the result
Both are measured alternately on the same request; the script prints the medians and swap/copy.

    python benchmarks/bench_outputs.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from aioinfer._loading import core

SIZES_KIB = (4, 64, 1024, 16 * 1024, 64 * 1024)


def plus_one(n: int) -> ov.CompiledModel:
    x = ops.parameter([n], np.float32, name="x")
    model = ov.Model([ops.add(x, ops.constant(np.float32(1)))], [x], "plus_one")
    return core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def owned_by_copy(request: ov.InferRequest, x: np.ndarray) -> np.ndarray:
    request.infer({0: x})
    return np.array(request.get_output_tensor(0).data)


def owned_by_swap(request: ov.InferRequest, x: np.ndarray) -> np.ndarray:
    fresh = np.empty(x.shape, np.float32)
    request.set_output_tensor(0, ov.Tensor(fresh, shared_memory=True))
    request.infer({0: x})
    return fresh


def main() -> int:
    print(f"{'output':>10} {'copy ms':>9} {'swap ms':>9} {'swap/copy':>10}")
    for kib in SIZES_KIB:
        n = kib * 1024 // 4
        request = plus_one(n).create_infer_request()
        x = np.arange(n, dtype=np.float32)
        reps = max(15, min(400, 200_000 // kib))
        times: dict[str, list[float]] = {"copy": [], "swap": []}
        for _ in range(reps):
            for name, fn in (("copy", owned_by_copy), ("swap", owned_by_swap)):
                t = time.perf_counter()
                out = fn(request, x)
                times[name].append(time.perf_counter() - t)
                assert out[-1] == x[-1] + 1
        copy, swap = (statistics.median(times[k]) * 1e3 for k in ("copy", "swap"))
        print(f"{kib:>7} KiB {copy:>9.3f} {swap:>9.3f} {swap / copy:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
