"""What the two web examples share: PP-OCR's text-orientation classifier, from image bytes to a verdict.

The model ships in the ``rapidocr`` wheel (``aioinfer.bundled_model("cls")``); ``$MODEL`` may name
another with the same [N, 3, 48, 192] input.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

import aioinfer

LABELS = ("0", "180")  # the text's rotation in degrees


def model_path() -> str:
    return os.environ.get("MODEL") or str(aioinfer.bundled_model("cls"))


def preprocess(data: bytes) -> np.ndarray:
    """Encoded image bytes to the classifier's [1,3,48,192] input; raises ValueError if not an image."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise ValueError("the body is not an image OpenCV can decode (send PNG or JPEG bytes)")
    resized = cv2.resize(image, (192, 48)).astype(np.float32)
    return ((resized / 127.5 - 1.0).transpose(2, 0, 1))[None]


def verdict(scores: np.ndarray) -> dict[str, object]:
    """The JSON answer for one image's two scores."""
    best = int(np.argmax(scores))
    return {"rotation": LABELS[best], "score": float(scores[best])}
