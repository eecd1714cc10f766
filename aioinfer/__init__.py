"""aioinfer: asyncio-native inference on OpenVINO.

``await model.infer(x)`` from any number of tasks, ``async for`` over frames, tasks with
pre/post-processing, and serving from async web apps.
"""

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
from ._model import AsyncModel, ModelInfo, load
from ._outputs import Outputs
from ._stats import Latency, Stats
from . import tasks  # noqa: E402  (the subpackage needs the names above)

__version__ = "0.1.0"

__all__ = [
    "AioInferError",
    "AsyncModel",
    "ClosedError",
    "DeviceNotAvailableError",
    "InferTimeout",
    "InferenceError",
    "InputCountError",
    "InputDtypeError",
    "InputError",
    "InputNameError",
    "InputShapeError",
    "Latency",
    "ModelInfo",
    "ModelLoadError",
    "ModelNotFoundError",
    "Outputs",
    "QueueFull",
    "SettingsError",
    "SourceError",
    "Stats",
    "TensorInfo",
    "UnsupportedModelFormatError",
    "WeightsNotFoundError",
    "__version__",
    "load",
    "tasks",
]
