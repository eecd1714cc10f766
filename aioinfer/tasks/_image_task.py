"""Single-model image tasks: loading the model with its normalization built in, and its input size."""

from __future__ import annotations

import os
from typing import Any, ClassVar, TypeVar

import anyio
import numpy as np
import openvino as ov

from .. import _loading
from .._errors import SettingsError
from .._model import load as load_model
from ._base import Task
from ._labels import LabelsSource, resolve_labels
from ._preprocess import Normalization, as_batch, embed_normalization, stretch
from ._settings import SettingsSource, check_settings

P = TypeVar("P")  # the prediction
T = TypeVar("T", bound="ImageTask[Any]")


class ImageTask(Task[P]):
    """A task on one model whose first input is an image batch [N, 3, H, W].

    The model is changed at load to take BGR ``uint8`` NHWC images and normalize them in its graph.
    By default an image is stretched to the model's input size (see :meth:`pre_process`).
    """

    default_input_size: ClassVar[int] = 640

    @classmethod
    def default_normalization(cls, model: ov.Model) -> Normalization:
        """The normalization used when none is given: the model's own (OpenVINO Model API
        ``model_info`` mean_values/scale_values/reverse_input_channels) or raw BGR pixels."""
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
        return as_batch(resized), image.shape[:2]

    @classmethod
    def adapt_model(cls, ov_model: ov.Model) -> ov.Model:
        """The model to compile, from the one read with its normalization built in: a hook for a
        task to check the model or change its outputs (runs at load, on a worker thread).
        Unchanged by default."""
        return ov_model

    @classmethod
    async def create(
        cls: type[T],
        model: str | os.PathLike[str] | bytes | ov.Model,
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
        first."""

        def prepare() -> tuple[ov.Model, tuple[str, ...], SettingsSource | None]:
            checked = check_settings(cls.settings_spec, settings)  # fail before the slow part
            ov_model = _loading.read_model(model)
            _loading.reshape(ov_model, reshape)
            names = resolve_labels(labels, ov_model)
            ov_model = embed_normalization(ov_model, normalization or cls.default_normalization(ov_model))
            return cls.adapt_model(ov_model), names, checked

        ov_model, names, checked = await anyio.to_thread.run_sync(prepare)
        size = _input_size(ov_model, input_size, cls.default_input_size)
        compiled = await load_model(ov_model, device=device, **load_kwargs)
        return await cls.wrap(
            compiled, labels=names, settings=checked, input_size=size, max_threads=max_threads
        )


def _floats(text: str | None, default: float) -> tuple[float, float, float]:
    if not text:
        return (default,) * 3
    values = [float(v) for v in text.replace(",", " ").split()]
    return tuple(values * 3)[:3] if len(values) == 1 else tuple(values[:3])  # type: ignore[return-value]


def _input_size(model: ov.Model, given: int | tuple[int, int] | None, default: int) -> tuple[int, int]:
    """The (height, width) images are fitted to: the model's static size, else ``given``, else ``default``."""
    shape = model.input(0).get_partial_shape()  # NHWC after embed_normalization
    static = shape.rank.is_static and shape[1].is_static and shape[2].is_static
    wanted = (given, given) if isinstance(given, int) else given
    if static:
        size = (shape[1].get_length(), shape[2].get_length())
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
