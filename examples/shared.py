"""What the two web examples share: PP-OCR's text-orientation classifier, from image bytes to a
verdict, and the HTTP answer to each aioinfer error a request can meet.

The model ships in the ``rapidocr`` wheel (``aioinfer.bundled_model("cls")``, the ``ocr`` extra);
``$MODEL`` may name another with the same [N, 3, 48, 192] input.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

import aioinfer

LABELS = ("0", "180")  # the text's rotation in degrees
TIMEOUT = 10.0  # seconds a request may wait for its batch's answer

# what a route answers for each aioinfer error (the first class the error is an instance of)
HTTP_STATUS: dict[type[aioinfer.AioInferError], int] = {
    aioinfer.DecodeError: 400,  # not an image
    aioinfer.InputError: 422,  # an image the model cannot take
    aioinfer.QueueFull: 503,  # back-pressure: max_queue requests already wait
    aioinfer.ClosedError: 503,  # shutting down
    aioinfer.InferTimeout: 504,
}


def model_path() -> str:
    """``$MODEL``, or the orientation classifier of the ``rapidocr`` wheel."""
    return os.environ.get("MODEL") or str(aioinfer.bundled_model("cls"))


def max_queue() -> int:
    """Requests that may wait for a batch before the next one is answered 503: ``$MAX_QUEUE`` (64)."""
    return int(os.environ.get("MAX_QUEUE", "64"))


def preprocess(data: bytes) -> np.ndarray:
    """Encoded image bytes to the classifier's [1,3,48,192] input; raises ``aioinfer.DecodeError`` if
    they are not an image."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise aioinfer.DecodeError("the body is not an image OpenCV can decode (send PNG or JPEG bytes)")
    resized = cv2.resize(image, (192, 48)).astype(np.float32)
    return ((resized / 127.5 - 1.0).transpose(2, 0, 1))[None]


def verdict(scores: np.ndarray) -> dict[str, object]:
    """The JSON answer for one image's two scores."""
    best = int(np.argmax(scores))
    return {"rotation": LABELS[best], "score": float(scores[best])}


def error_answer(exc: aioinfer.AioInferError) -> tuple[int, dict[str, str], dict[str, str]]:
    """Status, JSON body and headers for ``exc``: ``Retry-After`` with a 503, and 500 for an error
    not in ``HTTP_STATUS``."""
    status = next((code for cls, code in HTTP_STATUS.items() if isinstance(exc, cls)), 500)
    headers = {"Retry-After": "1"} if status == 503 else {}
    return status, {"error": type(exc).__name__, "message": str(exc)}, headers
