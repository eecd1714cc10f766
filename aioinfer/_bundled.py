"""Pretrained models that ship inside installed wheels (nothing is downloaded at run time)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ._errors import ModelNotFoundError
from ._install import require

# PP-OCR models in the rapidocr wheel, by role: file name prefix
_RAPIDOCR = {"cls": "ch_ppocr_mobile_v2.0_cls", "det": "PP-OCRv6_det", "rec": "PP-OCRv6_rec"}


def bundled_model(kind: str) -> Path:
    """Path of the PP-OCR ``"det"``, ``"rec"`` or ``"cls"`` ONNX model shipped in the ``rapidocr`` wheel
    (the ``ocr`` extra: without it, :class:`MissingExtraError` names the ``pip install`` to run).
    Only the file is looked up: rapidocr is not imported."""
    if kind not in _RAPIDOCR:
        raise ValueError(f"unknown bundled model {kind!r}; expected one of {sorted(_RAPIDOCR)}")
    require("ocr")
    spec = importlib.util.find_spec("rapidocr")
    assert spec is not None and spec.origin is not None  # require() found its __init__.py
    folder = Path(spec.origin).parent / "models"
    matches = sorted(folder.glob(f"{_RAPIDOCR[kind]}*.onnx"))
    if not matches:
        raise ModelNotFoundError(f"{folder}/{_RAPIDOCR[kind]}*.onnx")
    return matches[0]
