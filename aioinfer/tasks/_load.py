"""``aioinfer.tasks.load``: a task, built in (by name) or your own (by class), around its model(s)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, overload

import openvino as ov

from .._errors import SettingsError
from .._model import AsyncModel, _Loading
from ._base import Task
from ._classification import ClassificationTask
from ._detection import DetectionTask
from ._labels import LabelsSource
from ._ocr import OCRTask
from ._segmentation import SegmentationTask
from ._settings import SettingsSource

TaskT = TypeVar("TaskT", bound="Task[Any]")
# a path, bytes, openvino.Model or a model loaded already (local or remote); for OCR also None
# (bundled) or a mapping of its models by role
TaskModel = Union[str, "os.PathLike[str]", bytes, ov.Model, AsyncModel, Mapping[str, Any], None]

TASKS: dict[str, type[Task[Any]]] = {
    "classification": ClassificationTask,
    "detection": DetectionTask,
    "segmentation": SegmentationTask,
    "ocr": OCRTask,
}


@overload
def load(
    model: TaskModel,
    *,
    task: Literal["classification"],
    labels: LabelsSource = ...,
    settings: SettingsSource | None = ...,
    device: str = ...,
    **load_kwargs: Any,
) -> _Loading[ClassificationTask]: ...
@overload
def load(
    model: TaskModel,
    *,
    task: Literal["detection"],
    labels: LabelsSource = ...,
    settings: SettingsSource | None = ...,
    device: str = ...,
    **load_kwargs: Any,
) -> _Loading[DetectionTask]: ...
@overload
def load(
    model: TaskModel,
    *,
    task: Literal["segmentation"],
    labels: LabelsSource = ...,
    settings: SettingsSource | None = ...,
    device: str = ...,
    **load_kwargs: Any,
) -> _Loading[SegmentationTask]: ...
@overload
def load(
    model: TaskModel,
    *,
    task: Literal["ocr"],
    labels: LabelsSource = ...,
    settings: SettingsSource | None = ...,
    device: str = ...,
    **load_kwargs: Any,
) -> _Loading[OCRTask]: ...
@overload
def load(
    model: TaskModel,
    *,
    task: type[TaskT],
    labels: LabelsSource = ...,
    settings: SettingsSource | None = ...,
    device: str = ...,
    **load_kwargs: Any,
) -> _Loading[TaskT]: ...
@overload
def load(
    model: TaskModel,
    *,
    task: str,
    labels: LabelsSource = ...,
    settings: SettingsSource | None = ...,
    device: str = ...,
    **load_kwargs: Any,
) -> _Loading[Task[Any]]: ...
def load(
    model: TaskModel,
    *,
    task: str | type[Task[Any]],
    labels: LabelsSource = None,
    settings: SettingsSource | None = None,
    device: str = "AUTO",
    **load_kwargs: Any,
) -> _Loading[Any]:
    """Load ``model`` and wrap it in ``task``: a built-in task's name (a key of :data:`TASKS`:
    ``"classification"``, ``"detection"``, ``"segmentation"`` or ``"ocr"``, whose ``model`` may be
    ``None`` for the bundled PP-OCR models, or a mapping with ``det``, ``rec`` and optionally
    ``cls``), or a :class:`Task` subclass of your own, made by its :meth:`Task.create`.
    The result is typed as that task (``tasks.load(m, task="detection")`` gives a
    :class:`DetectionTask`, whose ``predict`` returns :class:`Detections`).

    ``model``: a path, bytes or ``openvino.Model`` (what :func:`aioinfer.load` takes), or a model
    loaded already (an :class:`~aioinfer.AsyncModel`, local or remote:
    ``await aioinfer.load("http://host:8000/v2/models/NAME")``), used as it is and handed to the
    task (closing the task closes it); load options such as ``device`` then raise
    :class:`aioinfer.SettingsError`.
    ``labels``: a list, a ``{id: name}`` mapping or a file (else the model's runtime info).
    ``settings``: initial settings (a mapping or a YAML file's path), validated before loading;
    an unknown task, key or value raises :class:`aioinfer.SettingsError`.
    Image tasks also take ``normalization=`` (:class:`Normalization`) and ``input_size=`` for
    models with a dynamic input; every task takes ``max_threads=`` (worker threads for pre/post-
    processing); the rest goes to :func:`aioinfer.load` (``num_requests``, ``config``, ...).

    Use as ``task = await load(...)`` or ``async with load(...) as task``.
    """
    cls = task_class(task)

    async def make() -> Task[Any]:
        checked = await cls.check_settings(settings)  # once, off the loop, before the slow part
        return await cls.create(model, labels=labels, settings=checked, device=device, **load_kwargs)

    return _Loading(make)


def task_class(task: str | type[Task[Any]]) -> type[Task[Any]]:
    """The task class ``task`` names (a key of :data:`TASKS`), or ``task`` itself if it is a
    :class:`Task` subclass; else :class:`SettingsError` listing the built-in names."""
    if isinstance(task, type) and issubclass(task, Task):
        return task
    try:
        return TASKS[task]
    except (KeyError, TypeError):
        raise SettingsError(
            f"unknown task {task!r}; expected one of {', '.join(TASKS)} or a Task subclass"
        ) from None
