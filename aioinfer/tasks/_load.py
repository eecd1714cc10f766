"""``aioinfer.tasks.load``: a task by name around its model(s)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import openvino as ov

from .._errors import SettingsError
from .._model import _Loading
from ._base import Task
from ._classification import ClassificationTask
from ._detection import DetectionTask
from ._labels import LabelsSource
from ._ocr import OCRTask
from ._segmentation import SegmentationTask
from ._settings import SettingsSource

TASKS: dict[str, Any] = {
    "classification": ClassificationTask,
    "detection": DetectionTask,
    "segmentation": SegmentationTask,
    "ocr": OCRTask,
}


def load(
    model: str | os.PathLike[str] | bytes | ov.Model | Mapping[str, Any] | None,
    *,
    task: str,
    labels: LabelsSource = None,
    settings: SettingsSource | None = None,
    device: str = "AUTO",
    **load_kwargs: Any,
) -> _Loading[Task]:
    """Load ``model`` and wrap it in the built-in ``task``: ``"classification"``, ``"detection"``,
    ``"segmentation"`` or ``"ocr"`` (whose ``model`` may be ``None`` for the bundled PP-OCR models,
    or a mapping with ``det``, ``rec`` and optionally ``cls``).

    ``labels``: a list, a ``{id: name}`` mapping or a file (else the model's runtime info).
    ``settings``: initial settings (a mapping or a YAML file's path), validated before loading.
    Image tasks also take ``normalization=`` (:class:`Normalization`) and ``input_size=`` for
    models with a dynamic input; every task takes ``max_threads=`` (worker threads for pre/post-
    processing); the rest goes to :func:`aioinfer.load` (``num_requests``, ``config``, ...).

    Use as ``task = await load(...)`` or ``async with load(...) as task``.
    """
    try:
        cls: type[Task] = TASKS[task]
    except KeyError:
        raise SettingsError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}") from None

    async def make() -> Task:
        checked = await cls.check_settings(settings)  # once, off the loop, before the slow part
        return await cls.create(model, labels=labels, settings=checked, device=device, **load_kwargs)  # type: ignore[attr-defined]

    return _Loading(make)
