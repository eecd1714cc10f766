"""aioinfer: asyncio-native inference on OpenVINO.

``await model.infer(x)`` from any number of tasks, ``async for`` over frames, tasks with
pre/post-processing, and serving from async web apps.
"""

from . import tasks
from ._batcher import Batcher
from ._bundled import bundled_model
from ._errors import (
    AioInferError,
    ClosedError,
    DeviceNotAvailableError,
    InferenceError,
    InferTimeout,
    InputCountError,
    InputDtypeError,
    InputError,
    InputNameError,
    InputShapeError,
    ModelLoadError,
    ModelNotFoundError,
    QueueFull,
    SettingsError,
    SourceError,
    UnsupportedModelFormatError,
    WeightsNotFoundError,
)
from ._inputs import TensorInfo
from ._map import MapIterator, MapResult, MapStats, amap
from ._model import AsyncModel, ModelInfo, load
from ._outputs import Outputs
from ._sinks import JsonlSink, VideoSink
from ._sources import Frame, FrameSource, SourceStats, open_source
from ._stats import Latency, Stats

__version__ = "0.1.0"

__all__ = [
    "AioInferError",
    "AsyncModel",
    "Batcher",
    "ClosedError",
    "DeviceNotAvailableError",
    "Frame",
    "FrameSource",
    "InferTimeout",
    "InferenceError",
    "InputCountError",
    "InputDtypeError",
    "InputError",
    "InputNameError",
    "InputShapeError",
    "JsonlSink",
    "Latency",
    "MapIterator",
    "MapResult",
    "MapStats",
    "ModelInfo",
    "ModelLoadError",
    "ModelNotFoundError",
    "Outputs",
    "QueueFull",
    "SettingsError",
    "SourceError",
    "SourceStats",
    "Stats",
    "TensorInfo",
    "UnsupportedModelFormatError",
    "VideoSink",
    "WeightsNotFoundError",
    "__version__",
    "amap",
    "bundled_model",
    "load",
    "open_source",
    "tasks",
]
