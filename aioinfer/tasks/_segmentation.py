"""Semantic segmentation: a class id for every pixel of the image."""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np
import openvino as ov

from .._outputs import Outputs
from ._image_task import ImageTask
from ._predictions import Segmentation
from ._preprocess import best_class_head
from ._settings import Setting


def class_map(raw: np.ndarray) -> np.ndarray:
    """One image's output → class ids [H, W]: argmax of [C, H, W] scores, or [H, W] / [1, H, W] ids."""
    if raw.ndim == 3 and raw.shape[0] > 1:
        ids: np.ndarray = raw.argmax(axis=0).astype(np.int32)
        return ids
    return np.asarray(raw.reshape(raw.shape[-2:]), np.int32)


class SegmentationTask(ImageTask[Segmentation]):
    """A class per pixel from a model with a [1, C, H, W] scores (or [1, H, W] ids) output; the map is
    resized back to the image with nearest-neighbour sampling.

    With C > 1 classes (or C unknown at load), the arg-max over C is built into the model's graph
    at load (its one output becomes ``ids`` [1, H, W] int32), so only the ids come back to Python."""

    name = "segmentation"
    default_input_size = 512
    settings_spec: ClassVar[dict[str, Setting]] = {}

    @classmethod
    def adapt_model(cls, ov_model: ov.Model) -> ov.Model:
        shape = ov_model.output(0).get_partial_shape()
        if shape.rank.is_dynamic or len(shape) != 4 or shape[1] == ov.Dimension(1):
            return ov_model  # class ids already: [1, H, W] or [1, 1, H, W]
        return best_class_head(ov_model, axis=1, with_scores=False)  # [1, C, H, W] scores, C > 1 or unknown

    def post_process(self, outputs: Outputs, meta: tuple[int, int]) -> Segmentation:
        height, width = meta
        ids = class_map(outputs[0][0])  # [H, W] int32 ids when the arg-max is in the graph: no copy
        full = cv2.resize(ids, (width, height), interpolation=cv2.INTER_NEAREST)
        return Segmentation(full.astype(np.int32, copy=False), self.labels)
