"""Exact tiny models built with OpenVINO's opset API, whose answers numpy can compute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from aioinfer._bundled import bundled_model

EXACT = {"INFERENCE_PRECISION_HINT": "f32"}  # the CPU may default to bf16 otherwise


def _named(node: ov.Node, name: str) -> ov.Output:
    out = node.output(0)
    out.get_tensor().set_names({name})
    return out


def linear(shape: list[int] | None = None) -> ov.Model:
    """``y = 2x + 1`` on f32 input ``x`` of ``shape`` (default ``[-1, 4]``: dynamic batch)."""
    x = ops.parameter(shape or [-1, 4], np.float32, name="x")
    y = ops.add(ops.multiply(x, ops.constant(np.float32(2))), ops.constant(np.float32(1)))
    return ov.Model([_named(y, "y")], [x], "linear")


def linear_expected(x: np.ndarray) -> np.ndarray:
    return 2 * x.astype(np.float32) + 1


def two_in_two_out() -> ov.Model:
    """Inputs ``a`` [2,3] f32 and ``b`` [2,3] i32; outputs ``sum = a + b`` and ``prod = a * b`` (f32)."""
    a = ops.parameter([2, 3], np.float32, name="a")
    b = ops.parameter([2, 3], np.int32, name="b")
    bf = ops.convert(b, np.float32)
    return ov.Model([_named(ops.add(a, bf), "sum"), _named(ops.multiply(a, bf), "prod")], [a, b], "two_by_two")


def dynamic_sum() -> ov.Model:
    """Input ``x`` of any shape [?, ?] f32; output ``s`` = row sums, shape [?]."""
    x = ops.parameter([-1, -1], np.float32, name="x")
    s = ops.reduce_sum(x, ops.constant(np.array([1], np.int64)), keep_dims=False)
    return ov.Model([_named(s, "s")], [x], "dynamic_sum")


def reshape_fails_at_runtime() -> ov.Model:
    """Input ``x`` [?] f32 reshaped to [3, -1]: lengths not divisible by 3 fail on the device."""
    x = ops.parameter([-1], np.float32, name="x")
    y = ops.reshape(x, ops.constant(np.array([3, -1], np.int64)), False)
    return ov.Model([_named(y, "y")], [x], "reshape3")


def slow_conv(size: int = 96, layers: int = 4, channels: int = 32) -> ov.Model:
    """A convolution stack slow enough (milliseconds) to cancel while it runs.

    Output ``y`` depends on every input pixel's value through a final global mean, and the input's
    per-sample constant ``k`` comes back as ``y[:, 0] = k`` exactly via a bypass, so results stay
    checkable: ``y`` has shape [N, 2]; ``y[:, 0]`` is ``x[:, 0, 0, 0]``.
    """
    rng = np.random.default_rng(0)
    x = ops.parameter([-1, 3, size, size], np.float32, name="x")
    h = x
    c_in = 3
    for _ in range(layers):
        w = ops.constant(rng.standard_normal((channels, c_in, 3, 3)).astype(np.float32) * 0.1)
        h = ops.relu(ops.convolution(h, w, [1, 1], [1, 1], [1, 1], [1, 1]))
        c_in = channels
    mean = ops.reduce_mean(h, ops.constant(np.array([1, 2, 3], np.int64)), keep_dims=False)
    corner = ops.strided_slice(
        x, ops.constant(np.array([0, 0, 0, 0], np.int64)), ops.constant(np.array([0, 1, 1, 1], np.int64)),
        ops.constant(np.array([1, 1, 1, 1], np.int64)), begin_mask=[1, 0, 0, 0], end_mask=[1, 0, 0, 0],
    )
    k = ops.reshape(corner, ops.constant(np.array([-1, 1], np.int64)), False)
    y = ops.concat([k, ops.reshape(mean, ops.constant(np.array([-1, 1], np.int64)), False)], 1)
    return ov.Model([_named(y, "y")], [x], "slow_conv")


def rapidocr_model(name: str) -> Path:
    """Path of a model shipped inside the rapidocr wheel: ``cls``, ``det`` or ``rec``."""
    return bundled_model(name)
