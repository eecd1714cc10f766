"""Predictions are JSON-ready with stable field names."""

from __future__ import annotations

import json

import numpy as np

from aioinfer.tasks import (
    Classification,
    DetectedObject,
    Detections,
    LabelScore,
    Segmentation,
    TextLine,
    TextResult,
)


def roundtrip(pred):
    return json.loads(json.dumps(pred.to_dict()))


def test_every_prediction_serializes_with_stable_fields():
    det = Detections((DetectedObject("cat", 0, np.float32(0.5), (1.0, 2.0, 3.0, 4.0)),), (10, 20))
    assert roundtrip(det) == {
        "task": "detection",
        "image_size": {"width": 20, "height": 10},
        "objects": [{"label": "cat", "label_id": 0, "score": 0.5, "box": [1.0, 2.0, 3.0, 4.0]}],
    }
    cls = Classification((LabelScore("dog", 3, 0.75),), (10, 20))
    assert roundtrip(cls)["classes"] == [{"label": "dog", "label_id": 3, "score": 0.75}]
    seg = Segmentation(np.array([[0, 1], [1, 5]], np.int32), ("bg", "road"))
    assert roundtrip(seg)["classes"] == [
        {"label": "bg", "label_id": 0, "pixels": 1},
        {"label": "road", "label_id": 1, "pixels": 2},
        {"label": "5", "label_id": 5, "pixels": 1},
    ]
    line = TextLine("héllo", 0.9, ((0, 0), (10, 0), (10, 5), (0, 5)))
    ocr = TextResult((line,), (5, 10))
    assert roundtrip(ocr)["lines"] == [
        {"text": "héllo", "score": 0.9, "polygon": [[0, 0], [10, 0], [10, 5], [0, 5]]}
    ]
    assert line.box == (0, 0, 10, 5) and ocr.texts == ["héllo"]
