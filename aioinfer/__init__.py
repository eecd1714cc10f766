"""aioinfer: asyncio-native inference on OpenVINO.

``await model.infer(x)`` from any number of tasks, ``async for`` over frames, tasks with
pre/post-processing, and serving from async web apps.
"""

from . import _install, tasks
from ._batcher import Batcher
from ._bundled import bundled_model
from ._errors import (
    AioInferError,
    ClosedError,
    DecodeError,
    DeviceNotAvailableError,
    EventLoopError,
    FrameError,
    ImageTooLarge,
    InferenceError,
    InferTimeout,
    InputCountError,
    InputDtypeError,
    InputError,
    InputNameError,
    InputShapeError,
    ItemCancelledError,
    MissingExtraError,
    ModelLoadError,
    ModelNotFoundError,
    NotBatchableError,
    QueueFull,
    SettingsError,
    SourceError,
    TooLargeError,
    UnsupportedFormatError,
    UnsupportedModelFormatError,
    WeightsNotFoundError,
)
from ._inputs import TensorInfo
from ._install import OpenCVFlavourWarning
from ._map import MapIterator, MapResult, MapStats, amap
from ._model import AsyncModel, ModelInfo, load
from ._outputs import Outputs
from ._sinks import JsonlSink, VideoSink
from ._sources import Frame, FrameSource, SourceStats, open_source
from ._stats import Latency, Stats

__version__ = _install.version()  # defined once, in pyproject.toml
_install.warn_opencv_flavours()

__all__ = [
    "AioInferError",
    "AsyncModel",
    "Batcher",
    "ClosedError",
    "DecodeError",
    "DeviceNotAvailableError",
    "EventLoopError",
    "Frame",
    "FrameError",
    "FrameSource",
    "ImageTooLarge",
    "InferTimeout",
    "InferenceError",
    "InputCountError",
    "InputDtypeError",
    "InputError",
    "InputNameError",
    "InputShapeError",
    "ItemCancelledError",
    "JsonlSink",
    "Latency",
    "MapIterator",
    "MapResult",
    "MapStats",
    "MissingExtraError",
    "ModelInfo",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotBatchableError",
    "OpenCVFlavourWarning",
    "Outputs",
    "QueueFull",
    "SettingsError",
    "SourceError",
    "SourceStats",
    "Stats",
    "TensorInfo",
    "TooLargeError",
    "UnsupportedFormatError",
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
