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
    LoopMonitorError,
    MissingExtraError,
    ModelLoadError,
    ModelNotFoundError,
    NotBatchableError,
    QueueFull,
    ServerConnectionError,
    SessionError,
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
from ._monitor import LoopMonitor, LoopStats, loop_stats, monitor_loop
from ._outputs import Outputs
from ._session import Session
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
    "LoopMonitor",
    "LoopMonitorError",
    "LoopStats",
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
    "ServerConnectionError",
    "Session",
    "SessionError",
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
    "loop_stats",
    "monitor_loop",
    "open_source",
    "tasks",
]
