"""Drawing returns an annotated copy of the same size and leaves the input untouched."""

from __future__ import annotations

import numpy as np
import pytest

from aioinfer.tasks import (
    Classification,
    DetectedObject,
    Detections,
    LabelScore,
    Segmentation,
    TextLine,
    TextResult,
)
from aioinfer.tasks._draw import HUES, MASK_ALPHA, color, draw


@pytest.mark.parametrize(
    "pred",
    [
        Detections((DetectedObject("cat", 0, 0.9, (10, 10, 50, 40)),), (60, 80)),
        Classification((LabelScore("dog", 1, 0.8),), (60, 80)),
        TextResult((TextLine("hi", 0.9, ((5, 5), (40, 5), (40, 20), (5, 20))),), (60, 80)),
        Segmentation(np.ones((60, 80), np.int32), ("background", "cat")),
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


def test_segmentation_colours_do_not_grow_with_the_class_ids():
    # a model that outputs raw ids can give any int32: the palette must not be sized by them
    ids = np.array([[0, 1, HUES - 1, HUES, -1, -HUES - 7, 100_000]], np.int32)
    out = draw(np.zeros((1, ids.shape[1], 3), np.uint8), Segmentation(ids, ()))
    expected = [np.round(np.array(color(int(i) % HUES)) * MASK_ALPHA) for i in ids[0]]
    np.testing.assert_allclose(out[0], expected, atol=1)


def test_segmentation_blends_each_pixel_with_its_class_colour():
    image = np.full((4, 6, 3), 200, np.uint8)
    image[0, 0] = (10, 20, 30)
    ids = np.zeros((4, 6), np.int32)
    ids[:, 3:] = 2  # left half class 0, right half class 2
    out = draw(image, Segmentation(ids, ("sky", "road", "car")))
    expected = image * (1 - MASK_ALPHA) + np.array([[color(int(i)) for i in row] for row in ids]) * MASK_ALPHA
    np.testing.assert_allclose(out, expected, atol=1)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (image[1:, :] == 200).all() and tuple(image[0, 0]) == (10, 20, 30)  # the input untouched
    assert color(0) != color(2) and (out[:, :3] != out[:, 3:]).any()
