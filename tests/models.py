"""Exact tiny models built with OpenVINO's opset API, whose answers numpy can compute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    return ov.Model(
        [_named(ops.add(a, bf), "sum"), _named(ops.multiply(a, bf), "prod")], [a, b], "two_by_two"
    )


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
        x,
        ops.constant(np.array([0, 0, 0, 0], np.int64)),
        ops.constant(np.array([0, 1, 1, 1], np.int64)),
        ops.constant(np.array([1, 1, 1, 1], np.int64)),
        begin_mask=[1, 0, 0, 0],
        end_mask=[1, 0, 0, 0],
    )
    k = ops.reshape(corner, ops.constant(np.array([-1, 1], np.int64)), False)
    y = ops.concat([k, ops.reshape(mean, ops.constant(np.array([-1, 1], np.int64)), False)], 1)
    return ov.Model([_named(y, "y")], [x], "slow_conv")


def rapidocr_model(name: str) -> Path:
    """Path of a model shipped inside the rapidocr wheel: ``cls``, ``det`` or ``rec``."""
    return bundled_model(name)


def neg_and_square() -> ov.Model:
    """Input ``x`` [?] f32; outputs ``neg = -x`` and ``x * x`` known by two names, ``square`` and ``sq``."""
    x = ops.parameter([-1], np.float32, name="x")
    square = ops.multiply(x, x).output(0)
    square.get_tensor().set_names({"square", "sq"})
    return ov.Model([_named(ops.negative(x), "neg"), square], [x], "neg_and_square")


def frame_probe(layers: int = 0, channels: int = 16) -> ov.Model:
    """Input ``x``: one BGR frame [H, W, 3] u8 (any size). Output ``means`` [W]: the exact mean of
    each pixel column (so a result can be traced back to its frame, see :func:`write_indexed_video`).
    ``layers`` > 0 adds a convolution stack on the frame (output ``work``) to make it slow."""
    x = ops.parameter([-1, -1, 3], np.uint8, name="x")
    xf = ops.convert(x, np.float32)
    axes = ops.constant(np.array([0, 2], np.int64))
    outputs = [_named(ops.reduce_mean(xf, axes, keep_dims=False), "means")]
    if layers:
        rng = np.random.default_rng(0)
        chw = ops.transpose(xf, ops.constant(np.array([2, 0, 1], np.int64)))
        h = ops.unsqueeze(chw, ops.constant(np.int64(0)))
        c_in = 3
        for _ in range(layers):
            w = ops.constant(rng.standard_normal((channels, c_in, 3, 3)).astype(np.float32) * 0.1)
            h = ops.relu(ops.convolution(h, w, [1, 1], [1, 1], [1, 1], [1, 1]))
            c_in = channels
        everything = ops.constant(np.array([0, 1, 2, 3], np.int64))
        outputs.append(_named(ops.reduce_mean(h, everything, keep_dims=False), "work"))
    return ov.Model(outputs, [x], "frame_probe")


INDEX_BLOCK = 16  # gray-level spacing of the two halves of an indexed frame: survives JPEG


def indexed_frame(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A BGR frame whose index (0..255) is written as two uniform gray halves: high and low nibble."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[:, : width // 2] = (index // 16) * INDEX_BLOCK + INDEX_BLOCK // 2
    frame[:, width // 2 :] = (index % 16) * INDEX_BLOCK + INDEX_BLOCK // 2
    return frame


def decode_index(column_means: np.ndarray) -> int:
    """The index of an :func:`indexed_frame` from its column means (``frame.mean(axis=(0, 2))``)."""
    left, right = column_means[len(column_means) // 4], column_means[3 * len(column_means) // 4]
    high, low = (round((v - INDEX_BLOCK // 2) / INDEX_BLOCK) for v in (left, right))
    return high * 16 + low


def frame_index(image: np.ndarray) -> int:
    """The index encoded in a (decoded) :func:`indexed_frame`."""
    return decode_index(image.astype(np.float32).mean(axis=(0, 2)))


def write_indexed_video(path: Path, frames: int, fps: float = 25.0, fourcc: str = "MJPG") -> Path:
    """A real video file (MJPG .avi by default) of :func:`indexed_frame` 0..frames-1."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (64, 48))
    assert writer.isOpened(), f"cannot write {path}"
    for i in range(frames):
        writer.write(indexed_frame(i))
    writer.release()
    return path


def constant_head(input_shape: list[int], head: np.ndarray, name: str = "head") -> ov.Model:
    """Input ``x`` of ``input_shape`` (f32 NCHW image); output ``head``: the constant ``head``
    exactly (x only joins in as ``0 * sum(x)``), e.g. a crafted detector head."""
    x = ops.parameter(input_shape, np.float32, name="x")
    zero = ops.multiply(
        ops.reduce_sum(x, ops.constant(np.arange(len(input_shape), dtype=np.int64)), False),
        ops.constant(np.float32(0)),
    )
    y = ops.add(ops.constant(np.asarray(head, np.float32)), zero)
    return ov.Model([_named(y, name)], [x], "constant_head")


def channel_means(size: int = 32) -> ov.Model:
    """Input ``x`` [1, 3, size, size] f32; output ``logits`` [1, 3]: the mean of each channel."""
    x = ops.parameter([1, 3, size, size], np.float32, name="x")
    y = ops.reduce_mean(x, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)
    return ov.Model([_named(y, "logits")], [x], "channel_means")


def channel_task() -> Any:
    """The classification task on :func:`channel_means` (labels b, g, r: the BGR channel with the
    highest mean wins), exact, on CPU: ``async with channel_task() as task``."""
    from aioinfer import tasks

    labels = ["b", "g", "r"]
    return tasks.load(channel_means(), task="classification", labels=labels, device="CPU", config=EXACT)


def identity_image(size: int = 32) -> ov.Model:
    """Input ``x`` [1, 3, size, size] f32; output ``scores`` = x (per-pixel "class scores" = channels)."""
    x = ops.parameter([1, 3, size, size], np.float32, name="x")
    y = ops.multiply(x, ops.constant(np.float32(1)))
    return ov.Model([_named(y, "scores")], [x], "identity_image")


def batch_dropped(how: str = "reshape", shape: list[int] | None = None) -> ov.Model:
    """Input ``x`` of ``shape`` (default [1, 4]) f32; output ``y`` = 2x + 1 without the batch
    dimension, as exported models often have it: ``reshape`` to [-1] (made dynamic, ``y`` is [?] and
    a batch of n rows gives 4n values) or ``squeeze`` of axis 0 (``y`` is [4])."""
    x = ops.parameter(shape or [1, 4], np.float32, name="x")
    y = ops.add(ops.multiply(x, ops.constant(np.float32(2))), ops.constant(np.float32(1)))
    if how == "reshape":
        y = ops.reshape(y, ops.constant(np.array([-1], np.int64)), False)
    else:
        y = ops.squeeze(y, ops.constant(np.array([0], np.int64)))
    return ov.Model([_named(y, "y")], [x], f"batch_dropped_{how}")


def rows_mixed(shape: list[int] | None = None) -> ov.Model:
    """Input ``x`` of ``shape`` (default [1, 4]) f32; output ``y = 2x - mean(x, axis=0)``: every row
    of a batch changes the others' answers (one row alone gets ``y = x``)."""
    x = ops.parameter(shape or [1, 4], np.float32, name="x")
    mean = ops.reduce_mean(x, ops.constant(np.array([0], np.int64)), keep_dims=True)
    y = ops.subtract(ops.multiply(x, ops.constant(np.float32(2))), mean)
    return ov.Model([_named(y, "y")], [x], "rows_mixed")


def rows_mixed_expected(x: np.ndarray) -> np.ndarray:
    return 2 * x - x.mean(axis=0, keepdims=True)


def needs_three_rows() -> ov.Model:
    """Input ``x`` [?, 4] f32; output ``y`` = x, through a reshape to [3, -1] and back: a batch of 3
    rows runs, one row alone fails on the device."""
    x = ops.parameter([-1, 4], np.float32, name="x")
    threes = ops.reshape(x, ops.constant(np.array([3, -1], np.int64)), False)
    y = ops.reshape(threes, ops.constant(np.array([-1, 4], np.int64)), False)
    return ov.Model([_named(y, "y")], [x], "needs_three_rows")


def accumulator(width: int = 4) -> ov.Model:
    """A stateful model: ``state += x; y = state`` (x and y: f32 [1, width]), its state a
    ReadValue/Assign variable ``acc`` that starts at zero: each stream sees its own running sum."""
    from openvino.op.util import Variable, VariableInfo

    info = VariableInfo()
    info.data_shape, info.data_type, info.variable_id = ov.PartialShape([1, width]), ov.Type.f32, "acc"
    variable = Variable(info)
    x = ops.parameter([1, width], np.float32, name="x")
    total = ops.add(ops.read_value(ops.constant(np.zeros((1, width), np.float32)), variable), x)
    y = _named(total, "y")
    return ov.Model(results=[ops.result(y)], sinks=[ops.assign(total, variable)], parameters=[x], name="acc")
