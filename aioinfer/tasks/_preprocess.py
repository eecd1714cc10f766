"""Fitting an image to a model's input: resize or letterbox (on a worker thread), normalization
built into the model graph with OpenVINO's PrePostProcessor, and an arg-max built into its output
(so both run on the device, not in Python); and learned upsampling rewritten into the form the
CPU plugin runs fastest (:func:`upsampling_as_conv`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import openvino as ov
import openvino.opset13 as ops
from openvino.preprocess import ColorFormat, PrePostProcessor

from .._errors import InputCountError, InputShapeError
from .._inputs import TensorInfo


@dataclass(frozen=True)
class Normalization:
    """What the model expects of its pixels: ``(pixel - mean) / scale`` per channel, in RGB or BGR order.

    Inputs are always given to tasks as BGR ``uint8`` images (OpenCV's order).
    """

    mean: Sequence[float] = (0.0, 0.0, 0.0)
    scale: Sequence[float] = (1.0, 1.0, 1.0)
    rgb: bool = False


@dataclass(frozen=True)
class Transform:
    """How image pixels map to model-input pixels: ``input = image * scale + pad``."""

    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        """Model-input coordinates ``[..., 2k]`` (x, y pairs) back to image pixels."""
        out = np.asarray(xy, np.float32).copy()
        out[..., 0::2] = (out[..., 0::2] - self.pad_x) / self.scale_x
        out[..., 1::2] = (out[..., 1::2] - self.pad_y) / self.scale_y
        return out


PadAlign = Literal["center", "top-left"]
PadOrder = Literal["resize-then-pad", "pad-then-resize"]
PAD_ALIGNS: tuple[PadAlign, ...] = ("center", "top-left")
PAD_ORDERS: tuple[PadOrder, ...] = ("resize-then-pad", "pad-then-resize")


def letterbox(
    image: np.ndarray,
    size: tuple[int, int],
    pad_value: int = 114,
    *,
    align: PadAlign = "center",
    order: PadOrder = "resize-then-pad",
) -> tuple[np.ndarray, Transform]:
    """``image`` fitted to ``size`` (height, width) keeping its aspect ratio, the rest filled with
    ``pad_value``; and the exact transform from image to canvas pixels.

    ``order="resize-then-pad"`` (Ultralytics): the image is resized to fit, then padded to ``size``.
    ``order="pad-then-resize"``: the image is padded to ``size``'s aspect ratio (a square for a
    square input) at full resolution, then resized. ``align``: the image centred in the padding
    (odd padding: one pixel more at the bottom/right) or at the top-left (padding at the bottom/right).
    """
    if order == "pad-then-resize":
        return _pad_then_resize(image, size, pad_value, align)
    height, width = size
    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas, pad_x, pad_y = _pad(resized, (height, width), pad_value, align)
    return canvas, Transform(new_w / w, new_h / h, pad_x, pad_y)


def _pad_then_resize(
    image: np.ndarray, size: tuple[int, int], pad_value: int, align: PadAlign
) -> tuple[np.ndarray, Transform]:
    height, width = size
    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    padded_size = (max(h, round(height / scale)), max(w, round(width / scale)))
    padded, pad_x, pad_y = _pad(image, padded_size, pad_value, align)
    canvas = cv2.resize(padded, (width, height), interpolation=cv2.INTER_LINEAR)
    scale_x, scale_y = width / padded_size[1], height / padded_size[0]
    return canvas, Transform(scale_x, scale_y, pad_x * scale_x, pad_y * scale_y)


def _pad(
    image: np.ndarray, size: tuple[int, int], pad_value: int, align: PadAlign
) -> tuple[np.ndarray, int, int]:
    """``image`` on a ``size`` (height, width) canvas of ``pad_value``, and its left and top offsets."""
    height, width = size
    h, w = image.shape[:2]
    pad_x, pad_y = ((width - w) // 2, (height - h) // 2) if align == "center" else (0, 0)
    canvas = np.full((height, width, *image.shape[2:]), pad_value, dtype=image.dtype)
    canvas[pad_y : pad_y + h, pad_x : pad_x + w] = image
    return canvas, pad_x, pad_y


def stretch(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Transform]:
    """``image`` resized to exactly ``size`` (height, width), and the transform."""
    height, width = size
    h, w = image.shape[:2]
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return resized, Transform(width / w, height / h)


def embed_normalization(model: ov.Model, norm: Normalization) -> ov.Model:
    """``model`` changed to take a batch of BGR ``uint8`` NHWC images on its first input and do the
    conversion to float, the channel order, ``norm`` and the NCHW layout inside its graph."""
    ppp = PrePostProcessor(model)
    inp = ppp.input(0)
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    inp.model().set_layout(ov.Layout("NCHW"))
    steps = inp.preprocess().convert_element_type(ov.Type.f32)
    if norm.rgb:
        steps.convert_color(ColorFormat.RGB)
    if any(m != 0 for m in norm.mean):
        steps.mean([float(m) for m in norm.mean])
    if any(s != 1 for s in norm.scale):
        steps.scale([float(s) for s in norm.scale])
    return ppp.build()


def as_batch(image: np.ndarray) -> np.ndarray:
    """One HWC image as a contiguous NHWC batch of one."""
    return np.ascontiguousarray(image[np.newaxis])


def best_class_head(model: ov.Model, axis: int = -1, *, with_scores: bool = True) -> ov.Model:
    """``model`` (first output: class scores along ``axis``, e.g. [N, T, K] with ``axis=-1`` or
    [N, C, H, W] with ``axis=1``) ending in the best class instead, so the device does the arg-max,
    not Python: outputs ``scores`` (unless not ``with_scores``) and ``ids`` (int32), both of the
    first output's shape without ``axis``. Ties go to the lowest class id, as in ``numpy.argmax``.

    The arg-max is the lowest id whose score equals the maximum (ReduceMax, Equal, ReduceMin): on
    PP-OCR's recognizer (18710 classes) a stable TopK took 20% of the whole model's time, this 1%."""
    scores_in = model.get_results()[0].input_value(0)
    rank = scores_in.get_partial_shape().rank.get_length()
    axis %= rank
    axes = ops.constant(np.array([axis], np.int64))
    best = ops.reduce_max(scores_in, axes, keep_dims=True)
    shape = ops.shape_of(scores_in, "i32")
    classes = ops.gather(shape, ops.constant(np.int32(axis)), ops.constant(np.int32(0)))
    ids = ops.range(ops.constant(np.int32(0)), classes, ops.constant(np.int32(1)), "i32")
    ids = ops.unsqueeze(ids, ops.constant(np.array([d for d in range(rank) if d != axis], np.int64)))
    ids = ops.reduce_min(ops.select(ops.equal(scores_in, best), ids, classes), axes, keep_dims=False)
    ids = ops.minimum(ids, ops.subtract(classes, ops.constant(np.int32(1))))  # NaN scores: still a class
    named = [(ops.squeeze(best, axes), "scores"), (ids, "ids")] if with_scores else [(ids, "ids")]
    outputs = []
    for node, name in named:
        out = node.output(0)
        out.get_tensor().set_names({name})
        outputs.append(out)
    return ov.Model(outputs, model.get_parameters(), model.get_friendly_name())


FOLDED_AFTER_UPSAMPLING = ("Identity", "Relu", "Sigmoid")  # per element: commute with DepthToSpace


def upsampling_as_conv(model: ov.Model) -> ov.Model:
    """``model`` with every transposed convolution whose kernel equals its stride (``k`` x ``k``,
    no padding: a learned upsampling, as in DB's detection head) computed as a 1x1 convolution to
    ``k * k`` times the channels and a DepthToSpace: the same function (the same sums of the
    same products: identical in f32), in place. A per-channel bias, ReLU or sigmoid right after
    it moves before the DepthToSpace, where OpenVINO fuses it into the convolution.

    OpenVINO's CPU plugin runs a transposed convolution in f32 even where it runs the rest in
    bf16 (on AVX-512 without AMX) and keeps the bias, ReLU and sigmoid after it as separate
    passes over the largest maps; PP-OCR's detector spent ~12% of its time there."""
    for node in model.get_ordered_ops():
        weights = _upsampling_weights(node)
        if weights is not None:
            _replace_upsampling(node, weights)
    model.validate_nodes_and_infer_types()
    return model


def _upsampling_weights(node: ov.Node) -> np.ndarray | None:
    """The constant weights [Cin, Cout, k, k] of ``node`` when it is a transposed convolution whose
    kernel equals its stride (no padding, no dilation, no given output shape), else ``None``."""
    if node.get_type_name() != "ConvolutionBackpropData" or node.get_input_size() != 2:
        return None
    weights = _constant(node.input_value(1))
    if weights is None or weights.ndim != 4 or weights.shape[2] != weights.shape[3]:
        return None
    attrs, k = node.get_attributes(), weights.shape[2]
    plain = not any([*attrs["pads_begin"], *attrs["pads_end"], *attrs["output_padding"]])
    same = list(attrs["strides"]) == [k, k] and list(attrs["dilations"]) == [1, 1]
    return weights if plain and same and attrs["auto_pad"] in ("explicit", "notset", "valid") else None


def _replace_upsampling(node: ov.Node, weights: np.ndarray) -> None:
    """``node`` (weights [Cin, Cout, k, k]) replaced by a 1x1 convolution to channels (c, dy, dx)
    and a depth-first DepthToSpace, the element-wise layers after it moved in between."""
    cin, cout, k = weights.shape[0], weights.shape[1], weights.shape[2]
    kernel = np.ascontiguousarray(weights.transpose(1, 2, 3, 0).reshape(cout * k * k, cin, 1, 1))
    out = ops.convolution(node.input_value(0), ops.constant(kernel), [1, 1], [0, 0], [0, 0], [1, 1]).output(0)
    last = node.output(0)
    while (step := _next_elementwise(last, cout)) is not None:
        layer, bias = step
        kind = layer.get_type_name()
        if bias is not None:
            out = ops.add(out, ops.constant(np.repeat(bias, k * k).reshape(1, -1, 1, 1))).output(0)
        elif kind != "Identity":
            out = (ops.relu(out) if kind == "Relu" else ops.sigmoid(out)).output(0)
        last = layer.output(0)
    upsampled = ops.depth_to_space(out, "depth_first", k).output(0)
    upsampled.get_tensor().set_names(last.get_tensor().get_names())
    last.replace(upsampled)


def _next_elementwise(port: ov.Output, channels: int) -> tuple[ov.Node, np.ndarray | None] | None:
    """The only layer fed by ``port`` when it is an identity, ReLU or sigmoid (with ``None``), or
    the addition of a constant per-channel bias [1, ``channels``, 1, 1] (with the bias)."""
    users = list(port.get_target_inputs())
    if len(users) != 1:
        return None
    layer = users[0].get_node()
    if layer.get_type_name() in FOLDED_AFTER_UPSAMPLING:
        return layer, None
    if layer.get_type_name() != "Add" or users[0].get_index() != 0:
        return None
    bias = _constant(layer.input_value(1))
    if bias is None or bias.shape != (1, channels, 1, 1):
        return None
    return layer, bias.reshape(channels)


def _constant(port: ov.Output) -> np.ndarray | None:
    node = port.get_node()
    return node.get_data() if node.get_type_name() == "Constant" else None


def frame_adapter(inputs: Sequence[TensorInfo]) -> Callable[[np.ndarray], np.ndarray]:
    """How a BGR HxWx3 ``uint8`` image becomes the single image input of a bare model (no task):
    resized to the input's static height and width if it has them, laid out as the input is
    ([N,3,H,W], [N,H,W,3] or [H,W,3]) and converted to its dtype, with no normalization. Raises
    :class:`InputCountError` for a model with several inputs and :class:`InputShapeError` for an
    input of another shape (wrap such a model in a task)."""
    if len(inputs) != 1:
        raise InputCountError(f"the model takes {len(inputs)} inputs; images go to one image input")
    info = inputs[0]
    shape, dtype = info.shape, info.dtype or np.float32
    if shape is not None and len(shape) == 4 and shape[1] == 3:
        height, width, layout = shape[2], shape[3], "NCHW"
    elif shape is not None and len(shape) == 4 and shape[3] == 3:
        height, width, layout = shape[1], shape[2], "NHWC"
    elif shape is not None and len(shape) == 3 and shape[2] == 3:
        height, width, layout = shape[0], shape[1], "HWC"
    else:
        raise InputShapeError(
            f"cannot feed images to input {info.name!r} of shape {list(shape or [])}: expected "
            "[N,3,H,W], [N,H,W,3] or [H,W,3] (or wrap the model in a task)"
        )

    def prepare(image: np.ndarray) -> np.ndarray:
        if height > 0 and width > 0 and image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        if layout == "NCHW":
            image = image.transpose(2, 0, 1)
        if layout != "HWC":
            image = image[None]
        return np.ascontiguousarray(image, dtype=dtype)

    return prepare
