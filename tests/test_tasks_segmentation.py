"""Segmentation on a model whose per-pixel class scores are the input channels themselves."""

from __future__ import annotations

import json

import models
import numpy as np

from aioinfer import tasks


async def test_class_map_is_resized_back_to_the_image():
    async with tasks.load(
        models.identity_image(), task="segmentation", labels=["blue", "green", "red"], config=models.EXACT
    ) as seg:
        image = np.zeros((48, 64, 3), np.uint8)
        image[:, :32] = (255, 0, 0)  # left half blue (channel 0)
        image[:, 32:] = (0, 0, 255)  # right half red (channel 2)
        pred = await seg.predict(image)
        assert pred.class_map.shape == (48, 64) and pred.class_map.dtype == np.int32
        assert (pred.class_map[:, :30] == 0).all() and (pred.class_map[:, 34:] == 2).all()
        data = json.loads(json.dumps(pred.to_dict()))
        assert [c["label"] for c in data["classes"]] == ["blue", "red"]
        assert sum(c["pixels"] for c in data["classes"]) == 48 * 64
        assert len(pred.to_dict(include_map=True)["class_map"]) == 48
        drawn = seg.draw(image, pred)
        assert drawn.shape == image.shape and not np.array_equal(drawn, image)
