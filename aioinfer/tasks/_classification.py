"""Image classification: the top-k classes with their probabilities."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .._outputs import Outputs
from ._image_task import ImageTask
from ._predictions import Classification, LabelScore, label_of
from ._settings import Setting


def probabilities(logits: np.ndarray) -> np.ndarray:
    """``logits`` as probabilities: unchanged when they already are (non-negative, sum 1), else softmax."""
    values: np.ndarray = logits.astype(np.float64).reshape(-1)
    if values.min() >= 0 and abs(values.sum() - 1) < 1e-3:
        return values
    exp: np.ndarray = np.exp(values - values.max())
    return np.asarray(exp / exp.sum())


class ClassificationTask(ImageTask[Classification]):
    """The most likely classes of an image from a model with one [1, C] (or [1, C, 1, 1]) output of
    logits or probabilities; the image is resized to the model's input."""

    name = "classification"
    default_input_size = 224
    settings_spec: ClassVar[dict[str, Setting]] = {
        "top_k": Setting(5, 1, 100_000, doc="how many classes to return"),
        "min_score": Setting(0.0, 0.0, 1.0, doc="drop classes less likely than this"),
    }

    def post_process(self, outputs: Outputs, meta: tuple[int, int]) -> Classification:
        cfg = self.settings_now
        probs = probabilities(outputs[0][0])
        best = np.argsort(-probs, kind="stable")[: cfg["top_k"]]
        classes = tuple(
            LabelScore(label_of(self.labels, int(i)), int(i), float(probs[i]))
            for i in best
            if probs[i] >= cfg["min_score"]
        )
        return Classification(classes, meta)
