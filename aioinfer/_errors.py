"""The one exception hierarchy of aioinfer: everything raised on purpose derives from AioInferError.

Names: a failure (something went wrong and the call cannot succeed as asked) ends in ``Error``.
:class:`QueueFull` and :class:`InferTimeout` do not, on purpose: they are flow-control conditions
that a caller expects under load and answers by retrying or shedding work, and they mirror the
standard library's own names for the same conditions (``asyncio.QueueFull``; ``TimeoutError``,
which :class:`InferTimeout` also derives from)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    "NotBatchableError",
    "QueueFull",
    "InferTimeout",
    "ClosedError",
    "ServerConnectionError",
    "EventLoopError",
    "SessionError",
    "SourceError",
    "FrameError",
    "ItemCancelledError",
    "SettingsError",
    "DecodeError",
    "UnsupportedFormatError",
    "TooLargeError",
    "ImageTooLarge",
    "MissingExtraError",
]


class AioInferError(Exception):
    """Base class of every error aioinfer raises on purpose.

    Every one pickles (to cross a process pool, say) by its class, ``args`` and attributes, without
    calling ``__init__`` again: a subclass whose ``__init__`` takes other arguments than its
    message round-trips too."""

    def __reduce__(self) -> tuple[Any, ...]:
        state = dict(vars(self))
        if isinstance(self, ImportError):  # its name and path are not in __dict__
            state.update(name=self.name, path=self.path)
        return _rebuild, (type(self), self.args, state)


def _rebuild(cls: type[AioInferError], args: tuple[Any, ...], state: dict[str, Any]) -> AioInferError:
    """Unpickle an aioinfer error: ``cls`` with ``args`` and attributes ``state``."""
    exc = cls.__new__(cls, *args)
    exc.args = args  # OSError's __new__ leaves them to an __init__ that a subclass overrides
    for key, value in state.items():
        setattr(exc, key, value)
    return exc


# -- loading -----------------------------------------------------------------------------------


class ModelLoadError(AioInferError):
    """The model could not be read, reshaped or compiled."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """The model path does not exist, or the server of a model's URL does not serve that model
    (it answered 404 or NOT_FOUND; ``detail`` is its message)."""

    def __init__(self, path: str | Path, detail: str = "") -> None:
        self.path = Path(path)
        super().__init__(f"model not found: {str(path)!r}" + (f" ({detail})" if detail else ""))


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


class NotBatchableError(AioInferError, ValueError):
    """Batching would change the model's answers, so a ``Batcher`` refuses it: an input or output
    without a leading batch dimension, outputs that do not keep one row per input row, or rows of a
    batch that change each other's results. The message says which."""


class QueueFull(AioInferError):
    """``max_queue`` calls already wait, accepted and not yet running: this one is refused at once
    (back-pressure; a server answers 503). Named like ``asyncio.QueueFull``: a condition to answer
    by retrying later, not a failure."""


class InferTimeout(AioInferError, TimeoutError):
    """A job did not finish within its timeout; it was dropped, or given up on the device. A
    ``TimeoutError``, named like it: a condition under load, not a failure of the model."""


class ClosedError(AioInferError, RuntimeError):
    """The model (or stream) was closed: it takes no more work."""


class ServerConnectionError(AioInferError, ConnectionError):
    """The server of a remote model (``aioinfer.load("http://...")``) cannot be reached: the
    connection was refused, the host name does not resolve, or the server went away during a call.
    The message names the URL and the transport's own error."""


class EventLoopError(AioInferError, RuntimeError):
    """A model was used from an event loop other than the one it was loaded in; it is left intact."""


class LoopMonitorError(AioInferError, RuntimeError):
    """``aioinfer.monitor_loop()`` was started in an event loop another monitor already watches (one
    per loop: ``aioinfer.loop_stats()`` reads its figures), or one monitor was started twice."""


class SessionError(AioInferError, RuntimeError):
    """A model with state (ReadValue/Assign) was called outside a session, or a session was used
    wrongly: after it ended, or after a call was given up mid-flight (its state is then unknown
    until ``reset()``)."""


class SourceError(AioInferError, OSError):
    """A frame source could not be opened or read; the message names the source."""


class FrameError(SourceError):
    """One frame of a source could not be read (an empty or corrupt image file of a folder, a glob or
    a list of paths): only that frame fails, at its position, and the frames after it keep coming.
    ``index`` is the frame's index; the message names the file."""

    def __init__(self, message: str, index: int) -> None:
        self.index = index
        super().__init__(message)


class ItemCancelledError(AioInferError, RuntimeError):
    """The function ``map``/``amap`` awaited for one item raised ``CancelledError`` although nothing
    cancelled the map: that item failed (it is not a cancellation of the consumer). Chained to the
    ``CancelledError``."""


class SettingsError(AioInferError, ValueError):
    """A task setting is unknown or out of range; the message names the key and what is accepted."""


# -- decoding bytes: request bodies, encoded images ----------------------------------------------


class DecodeError(AioInferError, ValueError):
    """Bytes that cannot be decoded as what was expected (a corrupt or truncated ``.npy``, ``.npz``,
    JSON body or image); the message says what was wrong and what is accepted. A server answers 400."""


class UnsupportedFormatError(DecodeError):
    """Bytes in a format that is not accepted (a content type, an image format whose size cannot be
    read from its header); the message lists the accepted ones. A server answers 415."""


class TooLargeError(DecodeError):
    """Data that would decode to more than a configured limit (``max_decoded_bytes``, ``max_json_values``,
    a zip's member count), refused before it is decoded; the message gives the size and the limit. A server
    answers 413."""


class ImageTooLarge(TooLargeError):
    """An image whose header declares more pixels than ``max_pixels``: refused before any pixel is
    decoded. A server answers 413."""


# -- installation --------------------------------------------------------------------------------


class MissingExtraError(AioInferError, ModuleNotFoundError):
    """A feature needs an optional extra of aioinfer that is not installed. The message names the
    module that is missing and the command that installs it (``pip install "aioinfer[serve]"``);
    ``extra`` is the extra's name and ``name`` the missing module's."""

    def __init__(self, extra: str, module: str, feature: str) -> None:
        self.extra = extra
        super().__init__(
            f'{module} is not installed: pip install "aioinfer[{extra}]" for {feature}',
            name=module,
        )


def ov_message(exc: BaseException) -> str:
    """OpenVINO's message without its stack of 'Exception from file:line' lines."""
    lines = [ln.strip().removeprefix("Caught exception:").strip() for ln in str(exc).splitlines()]
    meaningful = [ln for ln in lines if ln and not ln.startswith("Exception from ")]
    return " ".join(meaningful) or str(exc).strip() or type(exc).__name__


# shown as aioinfer.QueueFull, not aioinfer._errors.QueueFull, in tracebacks and reprs; pickled by
# that name too (each is exported by the aioinfer package)
for _name in __all__:
    globals()[_name].__module__ = "aioinfer"
del _name
