"""Pretrained models that ship inside installed wheels (nothing is downloaded at run time)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from ._errors import ModelNotFoundError

# PP-OCR models in the rapidocr wheel, by role: file name prefix
_RAPIDOCR = {"cls": "ch_ppocr_mobile_v2.0_cls", "det": "PP-OCRv6_det", "rec": "PP-OCRv6_rec"}


def bundled_model(kind: str) -> Path:
    """Path of the PP-OCR ``"det"``, ``"rec"`` or ``"cls"`` ONNX model shipped in the ``rapidocr`` wheel."""
    if kind not in _RAPIDOCR:
        raise ValueError(f"unknown bundled model {kind!r}; expected one of {sorted(_RAPIDOCR)}")
    folder = importlib.resources.files("rapidocr") / "models"
    matches = sorted(
        Path(str(p))
        for p in folder.iterdir()
        if p.name.startswith(_RAPIDOCR[kind]) and p.name.endswith(".onnx")
    )
    if not matches:
        raise ModelNotFoundError(f"{folder}/{_RAPIDOCR[kind]}*.onnx")
    return matches[0]
