"""How should a job's inputs reach its infer request? Time to start one job, by method and input size.

  dict    ``request.start_async({0: x})``: OpenVINO's own conversion (copies)
  shared  ``request.start_async({0: x}, share_inputs=True)``
  fill    ``t = request.get_input_tensor(0); t.shape = x.shape; t.data[...] = x; request.start_async()``
          (what aioinfer does by default)
  tensor  ``request.set_input_tensor(0, ov.Tensor(x, shared_memory=True)); request.start_async()``
          (what aioinfer does with ``share_inputs=True``)
Each start is followed by ``wait()`` (not timed); medians over alternating repetitions.

    python benchmarks/bench_inputs.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from aioinfer._loading import core

SIZES = {"1x4": (1, 4), "1x3x48x192": (1, 3, 48, 192), "1x3x640x640": (1, 3, 640, 640)}


def plus_one(shape: tuple[int, ...]) -> ov.InferRequest:
    x = ops.parameter([-1, *shape[1:]], np.float32, name="x")
    model = ov.Model([ops.add(x, ops.constant(np.float32(1)))], [x], "plus_one")
    return core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"}).create_infer_request()


def methods(request: ov.InferRequest, x: np.ndarray) -> dict[str, Callable[[], None]]:
    def fill() -> None:
        tensor = request.get_input_tensor(0)
        tensor.shape = x.shape
        tensor.data[...] = x
        request.start_async()

    def tensor() -> None:
        request.set_input_tensor(0, ov.Tensor(x, shared_memory=True))
        request.start_async()

    return {
        "dict": lambda: request.start_async({0: x}),
        "shared": lambda: request.start_async({0: x}, share_inputs=True),
        "fill": fill,
        "tensor": tensor,
    }


def main() -> int:
    print(
        f"{'input':>14}"
        + "".join(f"{m:>10}" for m in ("dict", "shared", "fill", "tensor"))
        + "   (us to start)"
    )
    for label, shape in SIZES.items():
        request = plus_one(shape)
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        starts = methods(request, x)
        times: dict[str, list[float]] = {name: [] for name in starts}
        for _ in range(max(20, 2000 // max(1, x.size // 30000))):
            for name, start in starts.items():
                t = time.perf_counter()
                start()
                times[name].append(time.perf_counter() - t)
                request.wait()
                assert request.get_output_tensor(0).data.flat[-1] == x.flat[-1] + 1
        print(f"{label:>14}" + "".join(f"{statistics.median(v) * 1e6:>10.1f}" for v in times.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
