"""Letterbox/stretch geometry and normalization built into the graph, checked with a real model."""

from __future__ import annotations

import models
import numpy as np
import pytest

import aioinfer
from aioinfer.tasks._preprocess import (
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
