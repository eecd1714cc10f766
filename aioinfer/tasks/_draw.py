"""Drawing predictions on a copy of the image with OpenCV."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from ._predictions import Classification, Detections, Segmentation, TextResult

FONT = cv2.FONT_HERSHEY_SIMPLEX
MASK_ALPHA = 0.5  # weight of the class colours over the image
HUES = 180  # OpenCV's hue range: colours repeat every 180 class ids


def color(index: int) -> tuple[int, int, int]:
    """A distinct, stable BGR colour for a class id (the same for ids that differ by ``HUES``)."""
    hue = (index * 47) % HUES
    bgr = cv2.cvtColor(np.array([[[hue, 220, 255]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return (int(bgr[0]), int(bgr[1]), int(bgr[2]))


@functools.cache
def _palette() -> np.ndarray:
    """``color(i)`` for every ``i`` in ``range(HUES)``: [HUES, 3] uint8, whatever ids a map holds."""
    return np.array([color(i) for i in range(HUES)], np.uint8)


def draw(image: np.ndarray, prediction: object) -> np.ndarray:
    """An annotated copy of ``image``; ``image`` is not modified."""
    return _draw(prediction, image)


@functools.singledispatch
def _draw(prediction: object, image: np.ndarray) -> np.ndarray:
    raise TypeError(f"cannot draw a {type(prediction).__name__}")


@_draw.register
def _(prediction: Detections, image: np.ndarray) -> np.ndarray:
    out = image.copy()
    for obj in prediction.objects:
        x1, y1, x2, y2 = (round(v) for v in obj.box)
        c = color(obj.label_id)
        cv2.rectangle(out, (x1, y1), (x2, y2), c, 2)
        _caption(out, f"{obj.label} {obj.score:.2f}", (x1, y1), c)
    return out


@_draw.register
def _(prediction: Classification, image: np.ndarray) -> np.ndarray:
    out = image.copy()
    for row, cls in enumerate(prediction.classes[:5]):
        _caption(out, f"{cls.label} {cls.score:.2f}", (4, 24 + 22 * row), color(cls.label_id))
    return out


@_draw.register
def _(prediction: Segmentation, image: np.ndarray) -> np.ndarray:
    colours = _palette()[prediction.class_map % HUES]  # image-sized, however large the ids
    return cv2.addWeighted(image, 1 - MASK_ALPHA, colours, MASK_ALPHA, 0)


@_draw.register
def _(prediction: TextResult, image: np.ndarray) -> np.ndarray:
    out = image.copy()
    for line in prediction.lines:
        quad = np.round(np.array(line.polygon)).astype(np.int32)
        cv2.polylines(out, [quad], True, (0, 200, 0), 2)
        _caption(
            out,
            line.text.encode("ascii", "replace").decode(),
            (int(quad[0, 0]), int(quad[0, 1])),
            (0, 160, 0),
        )
    return out


def _caption(image: np.ndarray, text: str, corner: tuple[int, int], bg: tuple[int, int, int]) -> None:
    (w, h), base = cv2.getTextSize(text, FONT, 0.5, 1)
    x, y = corner[0], max(corner[1], h + base)
    cv2.rectangle(image, (x, y - h - base), (x + w, y), bg, -1)
    cv2.putText(image, text, (x, y - base), FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
