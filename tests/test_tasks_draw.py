"""Drawing returns an annotated copy of the same size and leaves the input untouched."""

from __future__ import annotations

import numpy as np
import pytest

from aioinfer.tasks import Classification, DetectedObject, Detections, LabelScore, TextLine, TextResult
from aioinfer.tasks._draw import draw


@pytest.mark.parametrize(
    "pred",
    [
        Detections((DetectedObject("cat", 0, 0.9, (10, 10, 50, 40)),), (60, 80)),
        Classification((LabelScore("dog", 1, 0.8),), (60, 80)),
        TextResult((TextLine("hi", 0.9, ((5, 5), (40, 5), (40, 20), (5, 20))),), (60, 80)),
    ],
)
def test_draw_makes_an_annotated_copy(pred):
    image = np.zeros((60, 80, 3), np.uint8)
    out = draw(image, pred)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not image.any() and out.any()


def test_unknown_prediction_is_rejected():
    with pytest.raises(TypeError, match="cannot draw a dict"):
        draw(np.zeros((2, 2, 3), np.uint8), {})
