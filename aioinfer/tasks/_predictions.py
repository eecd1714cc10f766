"""What tasks return: typed, immutable predictions whose ``to_dict()`` is ready for ``json.dumps``.

Coordinates are always in the pixels of the image given to ``predict`` (x right, y down).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

Box = tuple[float, float, float, float]  # x1, y1, x2, y2
Polygon = tuple[tuple[float, float], ...]


def _size(image_size: tuple[int, int]) -> dict[str, int]:
    height, width = image_size
    return {"width": int(width), "height": int(height)}


@dataclass(frozen=True)
class LabelScore:
    """A class and its score."""

    label: str
    label_id: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "label_id": int(self.label_id), "score": round(float(self.score), 6)}


@dataclass(frozen=True)
class Classification:
    """The ``top_k`` best classes of an image, best first."""

    classes: tuple[LabelScore, ...]
    image_size: tuple[int, int]  # height, width
    task: str = field(default="classification", init=False)

    @property
    def top(self) -> LabelScore | None:
        return self.classes[0] if self.classes else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "image_size": _size(self.image_size),
            "classes": [c.to_dict() for c in self.classes],
        }


@dataclass(frozen=True)
class DetectedObject:
    """One detected object: its class, score and box ``(x1, y1, x2, y2)`` in image pixels."""

    label: str
    label_id: int
    score: float
    box: Box

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "label_id": int(self.label_id),
            "score": round(float(self.score), 6),
            "box": [round(float(v), 2) for v in self.box],
        }


@dataclass(frozen=True)
class Detections:
    """The objects found in an image, highest score first."""

    objects: tuple[DetectedObject, ...]
    image_size: tuple[int, int]
    task: str = field(default="detection", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "image_size": _size(self.image_size),
            "objects": [o.to_dict() for o in self.objects],
        }


@dataclass(frozen=True, eq=False)
class Segmentation:
    """A class id per pixel of the image (``class_map``: int32 [height, width]) and the class names."""

    class_map: np.ndarray
    labels: tuple[str, ...]
    task: str = field(default="segmentation", init=False)

    @property
    def image_size(self) -> tuple[int, int]:
        return (int(self.class_map.shape[0]), int(self.class_map.shape[1]))

    def to_dict(self, *, include_map: bool = False) -> dict[str, Any]:
        """Per-class pixel counts; ``include_map=True`` adds the class map as rows of ids."""
        ids, counts = np.unique(self.class_map, return_counts=True)
        out: dict[str, Any] = {
            "task": self.task,
            "image_size": _size(self.image_size),
            "classes": [
                {"label": label_of(self.labels, int(i)), "label_id": int(i), "pixels": int(n)}
                for i, n in zip(ids, counts, strict=True)
            ],
        }
        if include_map:
            out["class_map"] = self.class_map.tolist()
        return out


@dataclass(frozen=True)
class TextLine:
    """One line of text: what it says, the recognizer's confidence, and its quadrilateral
    (top-left, top-right, bottom-right, bottom-left) in image pixels."""

    text: str
    score: float
    polygon: Polygon

    @property
    def box(self) -> Box:
        """The axis-aligned box around the polygon."""
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        return (min(xs), min(ys), max(xs), max(ys))

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": str(self.text),
            "score": round(float(self.score), 6),
            "polygon": [[round(float(x), 2), round(float(y), 2)] for x, y in self.polygon],
        }


@dataclass(frozen=True)
class TextResult:
    """The text lines read in an image, top to bottom then left to right."""

    lines: tuple[TextLine, ...]
    image_size: tuple[int, int]
    task: str = field(default="ocr", init=False)

    @property
    def texts(self) -> list[str]:
        return [line.text for line in self.lines]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "image_size": _size(self.image_size),
            "lines": [ln.to_dict() for ln in self.lines],
        }


Prediction = Union[Classification, Detections, Segmentation, TextResult]  # noqa: UP007 (a runtime alias on 3.10)


def label_of(labels: tuple[str, ...], label_id: int) -> str:
    """The name of class ``label_id``, or its number as text when ``labels`` does not name it."""
    return labels[label_id] if 0 <= label_id < len(labels) else str(label_id)
