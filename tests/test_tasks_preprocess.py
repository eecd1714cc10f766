"""Letterbox/stretch geometry and normalization built into the graph, checked with a real model."""

from __future__ import annotations

import cv2
import models
import numpy as np
import pytest

import aioinfer
from aioinfer.tasks._preprocess import (
    PAD_ALIGNS,
    PAD_ORDERS,
    Normalization,
    Transform,
    as_batch,
    embed_normalization,
    letterbox,
    stretch,
)


def test_letterbox_centres_and_maps_back():
    image = np.full((480, 640, 3), 7, np.uint8)
    canvas, t = letterbox(image, (320, 320))
    assert canvas.shape == (320, 320, 3)
    assert t == Transform(0.5, 0.5, 0, 40)
    assert (canvas[:40] == 114).all() and (canvas[280:] == 114).all() and (canvas[40:280] == 7).all()
    assert t.to_image(np.array([[0, 40, 320, 280]])).tolist() == [[0, 0, 640, 480]]


def reference_letterbox(
    image: np.ndarray, size: tuple[int, int], pad_value: int, align: str, order: str
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """An independent letterbox (Ultralytics' rounding, OpenCV's borders): the model input, and
    where the whole image lies in it (x1, y1, x2, y2 in input pixels)."""
    height, width = size
    h, w = image.shape[:2]

    def border(img: np.ndarray, to_h: int, to_w: int) -> tuple[np.ndarray, int, int]:
        dh, dw = to_h - img.shape[0], to_w - img.shape[1]
        top, left = (round(dh / 2 - 0.1), round(dw / 2 - 0.1)) if align == "center" else (0, 0)
        out = cv2.copyMakeBorder(
            img, top, dh - top, left, dw - left, cv2.BORDER_CONSTANT, value=[pad_value] * 3
        )
        return out, top, left

    if order == "resize-then-pad":
        r = min(height / h, width / w)
        new_w, new_h = round(w * r), round(h * r)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        out, top, left = border(resized, height, width)
        return out, (left, top, left + new_w, top + new_h)
    if w * height > h * width:  # wider than the input: pad the height
        padded_w, padded_h = w, round(w * height / width)
    else:
        padded_w, padded_h = round(h * width / height), h
    padded, top, left = border(image, padded_h, padded_w)
    out = cv2.resize(padded, (width, height), interpolation=cv2.INTER_LINEAR)
    sx, sy = width / padded_w, height / padded_h
    return out, (left * sx, top * sy, (left + w) * sx, (top + h) * sy)


LETTERBOX_MODES = [(align, order, pad) for align in PAD_ALIGNS for order in PAD_ORDERS for pad in (0, 114)]


@pytest.mark.parametrize(("align", "order", "pad_value"), LETTERBOX_MODES)
@pytest.mark.parametrize("image_size", [(200, 500), (500, 200), (101, 333)])
@pytest.mark.parametrize("input_size", [(64, 64), (48, 80)])
def test_letterbox_matches_the_reference_in_every_mode(align, order, pad_value, image_size, input_size):
    image = np.random.default_rng(sum(image_size)).integers(0, 256, (*image_size, 3), np.uint8)
    canvas, t = letterbox(image, input_size, pad_value, align=align, order=order)
    expected, placed = reference_letterbox(image, input_size, pad_value, align, order)
    np.testing.assert_array_equal(canvas, expected)
    # where the image lies in the input maps back to the whole image
    h, w = image_size
    np.testing.assert_allclose(t.to_image(np.array([placed])), [[0, 0, w, h]], atol=1e-3)


def test_top_left_pads_only_the_bottom_and_right_with_the_pad_value():
    image = np.full((200, 500, 3), 7, np.uint8)
    canvas, t = letterbox(image, (64, 64), 0, align="top-left", order="pad-then-resize")
    assert t == Transform(0.128, 0.128, 0.0, 0.0)
    assert (canvas[:25] == 7).all() and (canvas[26:] == 0).all()


def test_stretch_maps_back():
    resized, t = stretch(np.zeros((100, 200, 3), np.uint8), (50, 50))
    assert resized.shape == (50, 50, 3)
    assert t.to_image(np.array([25.0, 25.0])).tolist() == [100.0, 50.0]


async def test_embedded_normalization_is_exact():
    model = embed_normalization(
        models.identity_image(4), Normalization(mean=(1, 2, 3), scale=(2, 4, 8), rgb=True)
    )
    async with aioinfer.load(model, config=models.EXACT) as m:
        assert m.info.inputs[0].shape == (1, 4, 4, 3) and m.info.inputs[0].element_type == "u8"
        image = np.zeros((4, 4, 3), np.uint8)
        image[:] = (10, 20, 30)  # BGR
        out = (await m.infer(as_batch(image)))[0]
        assert out.shape == (1, 3, 4, 4)
        assert out[0, :, 0, 0].tolist() == pytest.approx([(30 - 1) / 2, (20 - 2) / 4, (10 - 3) / 8])
