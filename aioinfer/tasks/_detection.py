"""Object detection: decoding YOLOv8/YOLO11-style and SSD-style heads into boxes in image pixels."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import openvino as ov

from .._errors import ModelLoadError, SettingsError
from .._inputs import TensorInfo
from .._model import AsyncModel
from .._outputs import Outputs
from ._image_task import ImageTask
from ._nms import nms
from ._predictions import Box, DetectedObject, Detections, label_of
from ._preprocess import PAD_ALIGNS, PAD_ORDERS, Normalization, Transform, letterbox, stretch
from ._settings import Setting

Head = Literal["yolo", "ssd"]


def head_of(shape: tuple[int, ...] | list[int]) -> Head:
    """Which head layout an output of this shape is: ``ssd`` for [1, 1, N, 7], ``yolo`` for [N, 4+C, A]."""
    if len(shape) == 4 and shape[-1] == 7:
        return "ssd"
    if len(shape) == 3:
        return "yolo"
    raise ModelLoadError(
        f"unsupported detection output shape {list(shape)}: expected YOLOv8-style [N, 4+classes, anchors] "
        "or SSD-style [1, 1, N, 7]"
    )


def yolo_channels_first(shape: tuple[int, ...], num_classes: int | None = None) -> bool | None:
    """Whether a YOLO head of one image of ``shape`` (``-1`` for a dynamic dimension) is [4+C, A]
    rather than [A, 4+C]: the axis of 4 + ``num_classes`` when known, else the shorter one (anchors
    outnumber classes). ``None`` when the dimensions needed are dynamic."""
    rows, cols = shape[-2:]
    if num_classes and 4 + num_classes in (rows, cols):
        return rows == 4 + num_classes
    if rows < 0 or cols < 0:
        return None
    return False if num_classes else rows <= cols


def decode_yolo(
    raw: np.ndarray,
    conf_threshold: float,
    num_classes: int | None = None,
    *,
    channels_first: bool | None = None,
) -> tuple[np.ndarray, ...]:
    """A YOLOv8/YOLO11 head of one image, [4+C, A] (or [A, 4+C]) of (cx, cy, w, h, class scores...)
    in input pixels → (boxes [K, 4] x1y1x2y2, scores [K], class ids [K]) scoring above ``conf_threshold``.

    ``channels_first``: the layout, when known (e.g. decided once at load); else decided from
    ``raw``'s shape by :func:`yolo_channels_first`."""
    if channels_first is None:
        channels_first = bool(yolo_channels_first(raw.shape, num_classes))
    pred = raw.T if channels_first else raw  # [A, 4+C]
    class_scores = pred[:, 4:]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(pred)), class_ids]
    keep = scores > conf_threshold
    cx, cy, w, h = pred[keep, :4].T
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes, scores[keep], class_ids[keep]


def decode_ssd(raw: np.ndarray, input_size: tuple[int, int], conf_threshold: float) -> tuple[np.ndarray, ...]:
    """An SSD DetectionOutput [1, 1, N, 7] of (image_id, label, conf, x1, y1, x2, y2 normalized to
    [0, 1]) → (boxes in input pixels, scores, class ids) above ``conf_threshold``; rows after the
    first with ``image_id < 0`` are padding."""
    rows = raw.reshape(-1, 7)
    ends = np.flatnonzero(rows[:, 0] < 0)
    rows = rows[: ends[0]] if len(ends) else rows
    rows = rows[rows[:, 2] > conf_threshold]
    height, width = input_size
    boxes = rows[:, 3:7] * np.array([width, height, width, height], np.float32)
    return boxes, rows[:, 2], rows[:, 1].astype(np.int64)


class DetectionTask(ImageTask[Detections]):
    """Boxes, classes and scores of the objects in an image, for YOLOv8/YOLO11-style heads
    [N, 4+C, A] (letterboxed RGB input scaled to [0, 1]; the letterbox as the exporter made it:
    settings ``pad_align``, ``pad_value``, ``pad_order``) and SSD-style [1, 1, N, 7] outputs
    (stretched raw BGR input), the layout detected from the model's output shape."""

    name = "detection"
    settings_spec: ClassVar[dict[str, Setting]] = {
        "conf_threshold": Setting(0.25, 0.0, 1.0, doc="minimum class score of a box"),
        "iou_threshold": Setting(
            0.45, 0.0, 1.0, doc="boxes of a class overlapping more than this are merged"
        ),
        "max_detections": Setting(300, 1, 100_000, doc="at most this many boxes per image"),
        "class_agnostic": Setting(False, doc="suppress overlaps across classes too"),
        # how a YOLO model's input was letterboxed at export (SSD inputs are stretched)
        "pad_align": Setting(
            "center", choices=PAD_ALIGNS, doc="letterbox: image centred in the padding, or at the top-left"
        ),
        "pad_value": Setting(114, 0, 255, doc="letterbox: the padding's value in every channel"),
        "pad_order": Setting(
            "resize-then-pad",
            choices=PAD_ORDERS,
            doc="letterbox: resize to fit then pad (Ultralytics), or pad to the input's shape then resize",
        ),
    }

    @classmethod
    def default_normalization(cls, model: ov.Model | AsyncModel) -> Normalization:
        if _model_head(model) == "yolo":
            return Normalization(scale=(255.0, 255.0, 255.0), rgb=True)
        return super().default_normalization(model)

    @classmethod
    def adapt_model(cls, ov_model: ov.Model) -> ov.Model:
        _model_head(ov_model)  # an unsupported head fails here, before compiling
        return ov_model

    def __init__(self, model: AsyncModel, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        shape = model.info.outputs[0].shape
        self.head: Head = _head(shape)
        if (
            self.head == "yolo"
            and self.labels
            and shape is not None
            and 4 + len(self.labels) not in shape[1:]
        ):
            raise SettingsError(
                f"labels: {len(self.labels)} names, but the model's output {list(shape)} has no axis of "
                f"4 + {len(self.labels)} = {4 + len(self.labels)} (box + class scores)"
            )
        # the YOLO layout, once (None: dynamic, decided per output)
        self._channels_first = (
            yolo_channels_first(shape, len(self.labels) or None)
            if self.head == "yolo" and shape is not None
            else None
        )

    def pre_process(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        assert self.input_size is not None
        if self.head == "yolo":
            cfg = self.settings_now
            resized, transform = letterbox(
                image, self.input_size, cfg["pad_value"], align=cfg["pad_align"], order=cfg["pad_order"]
            )
        else:
            resized, transform = stretch(image, self.input_size)
        return self.to_input(resized), (transform, image.shape[:2])

    def post_process(self, outputs: Outputs, meta: tuple[Transform, tuple[int, int]]) -> Detections:
        transform, image_size = meta
        cfg = self.settings_now
        raw = outputs[0]
        if self.head == "yolo":
            boxes, scores, class_ids = decode_yolo(
                raw[0], cfg["conf_threshold"], len(self.labels) or None, channels_first=self._channels_first
            )
        else:
            assert self.input_size is not None
            boxes, scores, class_ids = decode_ssd(raw, self.input_size, cfg["conf_threshold"])
        boxes = transform.to_image(boxes).reshape(-1, 4)
        height, width = image_size
        boxes = np.clip(boxes, 0, [width, height, width, height])
        keep = nms(
            boxes,
            scores,
            cfg["iou_threshold"],
            class_ids=None if cfg["class_agnostic"] else class_ids,
            max_keep=cfg["max_detections"],
        )
        objects = tuple(
            DetectedObject(
                label_of(self.labels, int(class_ids[i])),
                int(class_ids[i]),
                float(scores[i]),
                _box(boxes[i]),
            )
            for i in keep
        )
        return Detections(objects, image_size)


def _box(row: np.ndarray) -> Box:
    x1, y1, x2, y2 = (float(v) for v in row)
    return (x1, y1, x2, y2)


def _head(shape: tuple[int, ...] | None) -> Head:
    """The head of an output of ``shape`` (``-1`` for a dynamic dimension, ``None`` for a dynamic
    rank, taken as YOLO): :func:`head_of`, which rejects an unsupported one."""
    return "yolo" if shape is None else head_of(shape)


def _model_head(model: ov.Model | AsyncModel) -> Head:
    """The head of ``model``'s first output, by the same rule for a model read and one loaded."""
    if isinstance(model, AsyncModel):
        return _head(model.info.outputs[0].shape)
    return _head(TensorInfo.of(model.output(0)).shape)
