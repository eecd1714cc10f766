"""Tasks: a model with the pre- and post-processing that turn an image into a typed prediction.

``task = await aioinfer.tasks.load("detector.xml", task="detection", labels="labels.txt")``, then
``pred = await task.predict(image_bgr)``, ``pred.to_dict()``, ``task.draw(image_bgr, pred)``,
``async for r in task.map(frames)``. Subclass :class:`Task` for your own.
"""

from ._base import Task, TaskInfo, TaskStats
from ._classification import ClassificationTask
from ._detection import DetectionTask
from ._image_task import ImageTask
from ._load import TASKS, load
from ._ocr import OCRTask
from ._ocr_models import ocr_characters
from ._predictions import (
    Classification,
    DetectedObject,
    Detections,
    LabelScore,
    Prediction,
    Segmentation,
    TextLine,
    TextResult,
)
from ._preprocess import Normalization
from ._segmentation import SegmentationTask
from ._settings import Setting

__all__ = [
    "TASKS",
    "Classification",
    "ClassificationTask",
    "DetectedObject",
    "DetectionTask",
    "Detections",
    "ImageTask",
    "LabelScore",
    "Normalization",
    "OCRTask",
    "Prediction",
    "SegmentationTask",
    "Segmentation",
    "Setting",
    "Task",
    "TaskInfo",
    "TaskStats",
    "TextLine",
    "TextResult",
    "load",
    "ocr_characters",
]
