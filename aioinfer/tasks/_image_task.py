"""Single-model image tasks: loading the model with its normalization built in, and its input size."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import anyio
import numpy as np
import openvino as ov

from .. import _loading
from .._errors import ModelLoadError, SettingsError
from .._inputs import TensorInfo
from .._model import AsyncModel
from .._model import load as load_model
from ._base import Task, adopt
from ._labels import LabelsSource, resolve_labels
from ._preprocess import Normalization, as_batch, embed_normalization, stretch
from ._settings import SettingsSource, check_settings

P = TypeVar("P")  # the prediction
T = TypeVar("T", bound="ImageTask[Any]")


class ImageTask(Task[P]):
    """A task on one model whose first input is an image batch [N, 3, H, W].

    Loaded from a file, the model is changed to take BGR ``uint8`` NHWC images and normalize them in
    its graph. A model loaded already (local or remote) is fed as its first input is: BGR ``uint8``
    [N, H, W, 3] images as they are, or float pixels [N, 3, H, W] / [N, H, W, 3] normalized on the
    worker thread by ``normalization`` (default :meth:`default_normalization`).
    By default an image is stretched to the model's input size (see :meth:`pre_process`).
    """

    default_input_size: ClassVar[int] = 640

    def __init__(
        self,
        models: AsyncModel | Mapping[str, AsyncModel],
        *,
        labels: Iterable[str] = (),
        settings: SettingsSource | None = None,
        input_size: tuple[int, int] | None = None,
        max_threads: int | None = None,
        normalization: Normalization | None = None,
    ) -> None:
        super().__init__(
            models, labels=labels, settings=settings, input_size=input_size, max_threads=max_threads
        )
        # a resized BGR uint8 image -> the model's first input, a batch of one
        self.to_input = image_input(
            self.model.info.inputs[0], normalization, lambda: self.default_normalization(self.model)
        )

    @classmethod
    def default_normalization(cls, model: ov.Model | AsyncModel) -> Normalization:
        """The normalization used when none is given: the model's own (OpenVINO Model API
        ``model_info`` mean_values/scale_values/reverse_input_channels of a model read from a file)
        or raw BGR pixels."""
        if isinstance(model, AsyncModel):
            return Normalization()
        info = {
            k: model.get_rt_info(["model_info", k]).astype(str)
            for k in ("mean_values", "scale_values", "reverse_input_channels")
            if model.has_rt_info(["model_info", k])
        }
        return Normalization(
            mean=_floats(info.get("mean_values"), 0.0),
            scale=_floats(info.get("scale_values"), 1.0),
            rgb=info.get("reverse_input_channels", "").strip().lower() in ("true", "yes", "1"),
        )

    def pre_process(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        """``image`` resized to the model's input size (its aspect ratio not kept) as a batch of one;
        the metadata is the image's ``(height, width)``, to map the outputs back to it."""
        assert self.input_size is not None
        resized, _ = stretch(image, self.input_size)
        return self.to_input(resized), image.shape[:2]

    @classmethod
    def adapt_model(cls, ov_model: ov.Model) -> ov.Model:
        """The model to compile, from the one read with its normalization built in: a hook for a
        task to check the model or change its outputs (runs at load, on a worker thread).
        Unchanged by default."""
        return ov_model

    @classmethod
    async def create(
        cls: type[T],
        model: str | os.PathLike[str] | bytes | ov.Model | AsyncModel,
        *,
        labels: LabelsSource = None,
        settings: SettingsSource | None = None,
        device: str = "AUTO",
        normalization: Normalization | None = None,
        input_size: int | tuple[int, int] | None = None,
        max_threads: int | None = None,
        reshape: _loading.ReshapeSpec = None,
        **load_kwargs: Any,
    ) -> T:
        """Read ``model`` (reshaped by ``reshape``, given in the model's own input layout), build
        the normalization into it, compile it and wrap it in this task. ``settings`` are checked
        first. A model loaded already (an :class:`~aioinfer.AsyncModel`, local or remote) is
        wrapped as it is, with ``normalization`` applied in Python if its input takes float
        pixels (see :meth:`Task.create`)."""
        if isinstance(model, AsyncModel):
            info = model.info.inputs[0]

            def prepare_loaded() -> tuple[tuple[str, ...], SettingsSource | None, tuple[int, int]]:
                checked = check_settings(cls.settings_spec, settings)
                size = _input_size(_image_size(info), input_size, cls.default_input_size)
                return resolve_labels(labels), checked, size

            options = {"reshape": reshape, **load_kwargs}
            names, checked, size = await adopt(model, device, options, prepare_loaded)
            return await cls.wrap(
                model,
                labels=names,
                settings=checked,
                input_size=size,
                max_threads=max_threads,
                normalization=normalization,
            )

        def prepare() -> tuple[ov.Model, tuple[str, ...], SettingsSource | None]:
            checked = check_settings(cls.settings_spec, settings)  # fail before the slow part
            ov_model = _loading.read_model(model)
            _loading.reshape(ov_model, reshape)
            names = resolve_labels(labels, ov_model)
            ov_model = embed_normalization(ov_model, normalization or cls.default_normalization(ov_model))
            return cls.adapt_model(ov_model), names, checked

        ov_model, names, checked = await anyio.to_thread.run_sync(prepare)
        shape = ov_model.input(0).get_partial_shape()  # NHWC after embed_normalization
        static = shape.rank.is_static and shape[1].is_static and shape[2].is_static
        fixed = (shape[1].get_length(), shape[2].get_length()) if static else None
        size = _input_size(fixed, input_size, cls.default_input_size)
        compiled = await load_model(ov_model, device=device, **load_kwargs)
        return await cls.wrap(
            compiled, labels=names, settings=checked, input_size=size, max_threads=max_threads
        )


def _floats(text: str | None, default: float) -> tuple[float, float, float]:
    if not text:
        return (default,) * 3
    values = [float(v) for v in text.replace(",", " ").split()]
    return tuple(values * 3)[:3] if len(values) == 1 else tuple(values[:3])  # type: ignore[return-value]


def _input_size(
    fixed: tuple[int, int] | None, given: int | tuple[int, int] | None, default: int
) -> tuple[int, int]:
    """The (height, width) images are fitted to: the model's ``fixed`` size, else ``given``, else
    ``default``."""
    wanted = (given, given) if isinstance(given, int) else given
    if fixed is not None:
        size = fixed
        if wanted is not None and tuple(wanted) != size:
            raise SettingsError(
                f"input_size {tuple(wanted)} does not match the model's fixed input size {size}"
            )
        return size
    if wanted is None:
        return (default, default)
    if len(wanted) != 2 or min(wanted) < 1:
        raise SettingsError(f"input_size must be a positive int or (height, width), got {given!r}")
    return (int(wanted[0]), int(wanted[1]))


def _layout(info: TensorInfo) -> str:
    """``"NCHW"`` or ``"NHWC"``: where the 3 channels of an image input are; else ModelLoadError."""
    shape = info.shape
    if shape is not None and len(shape) == 4 and shape[1] == 3:
        return "NCHW"
    if shape is not None and len(shape) == 4 and shape[3] == 3:
        return "NHWC"
    raise ModelLoadError(
        f"input {info.name!r} of shape {list(shape or [])} takes no images: expected a batch of "
        "images [N,3,H,W] or [N,H,W,3]"
    )


def _image_size(info: TensorInfo) -> tuple[int, int] | None:
    """The (height, width) of an image input, ``None`` when either is dynamic."""
    shape = info.shape
    assert shape is not None  # _layout refused a dynamic rank
    height, width = shape[2:] if _layout(info) == "NCHW" else shape[1:3]
    return (height, width) if height > 0 and width > 0 else None


def image_input(
    info: TensorInfo, normalization: Normalization | None, default: Callable[[], Normalization]
) -> Callable[[np.ndarray], np.ndarray]:
    """How a BGR ``uint8`` HxWx3 image (resized to the model's input size) becomes the image input
    ``info`` of a model, as a batch of one: as it is for BGR ``uint8`` [N,H,W,3] (the model
    normalizes it in its graph: a ``normalization`` given raises SettingsError); else normalized by
    ``normalization`` (``default()`` if None), laid out as the input is and converted to its dtype.
    Raises ModelLoadError for an input that takes no images."""
    layout = _layout(info)
    dtype = info.dtype or np.dtype(np.float32)
    if layout == "NHWC" and dtype == np.uint8:
        if normalization is not None:
            raise SettingsError(
                f"normalization={normalization}: input {info.name!r} takes uint8 BGR images, which "
                "the model normalizes itself"
            )
        return as_batch
    norm = normalization or default()
    mean, scale = np.asarray(norm.mean, np.float32), np.asarray(norm.scale, np.float32)
    if dtype.kind != "f" and (mean.any() or (scale != 1).any()):
        raise SettingsError(f"normalization={norm}: input {info.name!r} takes {dtype} pixels, not floats")

    def convert(image: np.ndarray) -> np.ndarray:
        pixels = (image[..., ::-1] if norm.rgb else image).astype(np.float32)
        pixels = (pixels - mean) / scale
        if layout == "NCHW":
            pixels = pixels.transpose(2, 0, 1)
        return np.ascontiguousarray(pixels[np.newaxis], dtype=dtype)

    return convert
