"""The one exception hierarchy of aioinfer: everything raised on purpose derives from AioInferError."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AioInferError",
    "ModelLoadError",
    "ModelNotFoundError",
    "WeightsNotFoundError",
    "UnsupportedModelFormatError",
    "DeviceNotAvailableError",
    "InputError",
    "InputCountError",
    "InputNameError",
    "InputShapeError",
    "InputDtypeError",
    "InferenceError",
    "QueueFull",
    "InferTimeout",
    "ClosedError",
    "SourceError",
    "SettingsError",
]


class AioInferError(Exception):
    """Base class of every error aioinfer raises on purpose."""


# -- loading -----------------------------------------------------------------------------------


class ModelLoadError(AioInferError):
    """The model could not be read, reshaped or compiled."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """The model path does not exist."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(f"model not found: {str(path)!r}")


class WeightsNotFoundError(ModelLoadError, FileNotFoundError):
    """An OpenVINO IR ``.xml`` was given but its ``.bin`` weights are missing."""

    def __init__(self, xml: str | Path, weights: str | Path) -> None:
        self.path = Path(xml)
        self.weights = Path(weights)
        super().__init__(
            f"weights file {str(weights)!r} not found beside {str(xml)!r}: an OpenVINO IR needs "
            "its .bin next to the .xml (same stem)"
        )


class UnsupportedModelFormatError(ModelLoadError, ValueError):
    """The model's format is not one OpenVINO can read."""


class DeviceNotAvailableError(AioInferError):
    """The requested device is not present on this machine."""

    def __init__(self, device: str, missing: str, available: list[str]) -> None:
        self.device = device
        self.available = list(available)
        super().__init__(
            f"device {missing!r} (from {device!r}) is not available; available devices: "
            f"{', '.join(available) or 'none'}"
        )


# -- inputs --------------------------------------------------------------------------------------


class InputError(AioInferError, ValueError):
    """An input given to ``infer`` does not match the model. Fails only that call."""


class InputCountError(InputError):
    """Wrong number of inputs."""


class InputNameError(InputError, KeyError):
    """An input name or index the model does not have."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InputShapeError(InputError):
    """An input's shape is not compatible with the model's (expected vs got)."""


class InputDtypeError(InputError, TypeError):
    """An input's dtype cannot be converted to the model's element type without losing its kind."""


# -- running -------------------------------------------------------------------------------------


class InferenceError(AioInferError, RuntimeError):
    """The device failed to run a job; the message carries OpenVINO's."""


class QueueFull(AioInferError):
    """``max_queue`` callers are already waiting for a request: rejected at once (back-pressure)."""


class InferTimeout(AioInferError, TimeoutError):
    """A job did not finish within its timeout; it was dropped or cancelled on the device."""


class ClosedError(AioInferError, RuntimeError):
    """The model (or stream) was closed: it takes no more work."""


class SourceError(AioInferError, OSError):
    """A frame source could not be opened or read; the message names the source."""


class SettingsError(AioInferError, ValueError):
    """A task setting is unknown or out of range; the message names the key and what is accepted."""


def ov_message(exc: BaseException) -> str:
    """OpenVINO's message without its stack of 'Exception from file:line' lines."""
    lines = [ln.strip().removeprefix("Caught exception:").strip() for ln in str(exc).splitlines()]
    meaningful = [ln for ln in lines if ln and not ln.startswith("Exception from ")]
    return " ".join(meaningful) or str(exc).strip() or type(exc).__name__
