"""The ocr task's models by role (``det``, ``rec``, ``cls``), from wherever they come: a file read
and prepared as the task runs it (PP-OCR's normalization in its graph, the recognizer answering its
best class per step), written so as OpenVINO IR for a server (:func:`export`), or a model on an
inference server (a URL) taken as it is served, prepared or raw (:func:`load_remote`).

A model is *prepared* when it takes BGR ``uint8`` images [N, H, W, 3] (its normalization inside)
and, as the recognizer, answers ``ids`` and ``scores`` [N, T]; *raw* as PP-OCR ships it (and as
Triton or OVMS would serve it): normalized float pixels [N, 3, H, W] in and, as the recognizer,
per-step class probabilities [N, T, K] out.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn

import anyio
import numpy as np
import openvino as ov

from .. import _loading
from .._bundled import bundled_model
from .._errors import InputShapeError, ModelLoadError, SessionError
from .._inputs import Inputs, TensorInfo
from .._model import AsyncModel
from .._model import load as load_model
from .._outputs import Outputs
from .._runner import Arrays
from .._stats import Stats
from ._ocr import PPOCR_NORMALIZATION, _check_alphabet, model_characters, streamlined
from ._preprocess import best_class_head, embed_normalization

Form = Literal["prepared", "raw"]
ROLES = ("det", "rec", "cls")
URL_SCHEMES = ("http", "https", "grpc", "grpcs")
CHARACTER_KEY = ["framework", "character"]  # PP-OCR's: one character a line, no blank, no space
EXPECTED = {
    "det": "a text detector: one image input, BGR uint8 [N,H,W,3] (prepared) or float [N,3,H,W] "
    "(raw), and a probability map [N,1,H,W] as its first output",
    "cls": "a line orientation classifier: one image input, BGR uint8 [N,H,W,3] (prepared) or float "
    "[N,3,H,W] (raw), and 2 class probabilities [N,2] as its first output",
    "rec": "a CTC recognizer: one BGR uint8 [N,H,W,3] image input and outputs 'ids' and 'scores' "
    "[N,T] (prepared), or one float [N,3,H,W] input and per-step class probabilities [N,T,K] as "
    "its first output (raw)",
}


def is_url(source: object) -> bool:
    """Whether ``source`` names a model on an inference server (``http(s)://``, ``grpc(s)://``)."""
    return isinstance(source, str) and source.partition("://")[0].lower() in URL_SCHEMES


def served_form(role: str, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo], where: str) -> Form:
    """Whether the model of ``role`` (its ``inputs`` and ``outputs``) is prepared or raw; else
    :class:`ModelLoadError` naming the role, ``where`` the model is, what it has and what the
    role takes."""
    image = _input_form(inputs)
    answer = _output_form(role, outputs)
    if image is not None and answer is not None and answer in (image, "either"):
        return image
    found = "; ".join(
        f"{kind} " + ", ".join(f"{t.name!r} {t.element_type}{list(t.shape or ['...'])}" for t in tensors)
        for kind, tensors in (("inputs", inputs), ("outputs", outputs))
    )
    raise ModelLoadError(f"the ocr task's {role!r} model {where} has {found}; expected {EXPECTED[role]}")


def _input_form(inputs: Sequence[TensorInfo]) -> Form | None:
    if len(inputs) != 1 or inputs[0].shape is None or len(inputs[0].shape) != 4:
        return None
    shape, dtype = inputs[0].shape, inputs[0].dtype
    if dtype == np.uint8 and shape[3] == 3:
        return "prepared"
    if dtype is not None and dtype.kind == "f" and shape[1] == 3:
        return "raw"
    return None


def _output_form(role: str, outputs: Sequence[TensorInfo]) -> Form | Literal["either"] | None:
    shapes = [o.shape or () for o in outputs]
    if not shapes:
        return None
    if role == "det":
        return "either" if len(shapes[0]) == 4 and shapes[0][1] in (1, -1) else None
    if role == "cls":
        return "either" if len(shapes[0]) == 2 and shapes[0][1] == 2 else None
    by_name = {o.name: len(o.shape or ()) for o in outputs}
    if by_name.get("ids") == 2 and by_name.get("scores") == 2:
        return "prepared"
    return "raw" if len(shapes[0]) == 3 else None


def prepared_model(
    role: str, source: Any, characters: Sequence[str] | None = None
) -> tuple[ov.Model, tuple[str, ...]]:
    """The model of ``role`` as the ocr task runs it, read from ``source`` (a path, bytes or
    ``openvino.Model``; raw, or prepared already), and for ``rec`` its alphabet (``characters``,
    else its metadata's, which the prepared recognizer keeps); ``()`` for the others. Blocking."""
    model = _loading.read_model(source)
    if role == "rec":  # read the same from either form
        alphabet = tuple(characters) if characters is not None else model_characters(model)
    where = repr(str(source)) if isinstance(source, (str, os.PathLike)) else "given"
    inputs, outputs = ([TensorInfo.of(port) for port in ports] for ports in (model.inputs, model.outputs))
    form = served_form(role, inputs, outputs, where)
    if form == "raw":
        model = embed_normalization(model, PPOCR_NORMALIZATION)
    model = streamlined(role, model)
    if role != "rec":
        return model, ()
    if form == "raw":
        _check_alphabet(model, alphabet)
        model = best_class_head(model)
    # as PP-OCR lists it: the space that ends a PP-OCR alphabet is implied (see model_characters)
    listed = alphabet[1:-1] if alphabet[-1:] == (" ",) else alphabet[1:]
    model.set_rt_info("\n".join(listed), CHARACTER_KEY)
    return model, alphabet


def export(
    folder: str | os.PathLike[str],
    sources: Mapping[str, Any] | None = None,
    *,
    characters: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write the ocr task's models as it runs them (prepared: see the module) as OpenVINO IR
    ``folder/det.xml``, ``rec.xml`` and ``cls.xml`` (with their ``.bin``), their weights in full
    precision and the recognizer's alphabet in its metadata, ready for ``aioinfer serve folder``.
    ``sources`` by role (paths, bytes or ``openvino.Model``; raw or prepared): each role left out
    is the bundled PP-OCR model. ``characters``: the recognizer's classes (the CTC blank first),
    for one whose metadata has none; checked against its class count. Returns the files written
    by role. Blocking."""
    unknown = set(sources or {}) - set(ROLES)
    if unknown:
        raise ModelLoadError(f"unknown ocr model role(s) {sorted(unknown)}: expected {', '.join(ROLES)}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for role in ROLES:
        alphabet = characters if role == "rec" else None
        model, _ = prepared_model(role, (sources or {}).get(role) or bundled_model(role), alphabet)
        model.set_friendly_name(role)  # the name its server logs
        written[role] = out / f"{role}.xml"
        ov.save_model(model, written[role], compress_to_fp16=False)
    return written


@functools.cache
def bundled_characters() -> tuple[str, ...]:
    """The bundled PP-OCR recognizer's alphabet (its classes in order, the CTC blank first)."""
    return model_characters(_loading.read_model(bundled_model("rec")))


def ocr_characters(source: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """The alphabet of the recognizer in the file ``source`` (from its metadata: a PP-OCR ONNX
    model, or ``rec.xml`` as ``aioinfer export ocr`` writes it), the bundled one's by default: what
    ``characters=`` takes for a recognizer served prepared, which does not tell its class count."""
    if source is None:
        return bundled_characters()
    return model_characters(_loading.read_model(source))


async def load_remote(
    role: str, source: str | AsyncModel, characters: Sequence[str] | None, options: Mapping[str, Any]
) -> tuple[AsyncModel, tuple[str, ...]]:
    """The model of ``role`` at the URL ``source`` (loaded with ``options``: ``num_requests``,
    ``max_queue``), or ``source`` itself if loaded already, as a :class:`ServedModel`; and for
    ``rec`` its alphabet (see :func:`remote_alphabet`). The model is closed if this fails."""
    model = source if isinstance(source, AsyncModel) else await load_model(source, **options)
    try:
        where = f"at {source}" if isinstance(source, str) else repr(model)
        form = served_form(role, model.info.inputs, model.info.outputs, where)
        alphabet: tuple[str, ...] = ()
        if role == "rec":
            alphabet = await anyio.to_thread.run_sync(
                remote_alphabet, where, model.info.outputs[0], form, characters
            )
        return ServedModel(model, role, form), alphabet
    except BaseException:
        with anyio.CancelScope(shield=True):
            await model.aclose()
        raise


def remote_alphabet(
    where: str, scores: TensorInfo, form: Form, characters: Sequence[str] | None
) -> tuple[str, ...]:
    """The alphabet of a recognizer served ``form`` whose first output is ``scores``:
    ``characters`` if given, else the bundled PP-OCR alphabet when the recognizer scores as many
    classes; :class:`ModelLoadError` when either does not fit, or when nothing here tells the
    class count (a prepared recognizer answers class ids) and no ``characters`` are given."""
    classes = (scores.shape or (-1,))[-1] if form == "raw" else -1
    if characters is not None:
        if classes > 0 and classes != len(characters):
            raise ModelLoadError(
                f"the recognizer {where} scores {classes} classes but characters= has {len(characters)} "
                "(with the CTC blank first)"
            )
        return tuple(characters)
    if classes < 0:
        why = "answers class ids" if form == "prepared" else "has a dynamic class count"
        raise ModelLoadError(
            f"the recognizer {where} {why}, so the alphabet it was trained with cannot be told or "
            "checked here: pass characters= (its classes in order, the CTC blank first; "
            "aioinfer.tasks.ocr_characters() for the bundled PP-OCR recognizer, "
            "ocr_characters('rec.xml') for one written by `aioinfer export ocr`)"
        )
    bundled = bundled_characters()
    if classes != len(bundled):
        raise ModelLoadError(
            f"the recognizer {where} scores {classes} classes, not the {len(bundled)} of the bundled "
            "PP-OCR alphabet: pass characters= (its classes in order, the CTC blank first)"
        )
    return bundled


def normalized(images: Inputs, dtype: np.dtype | None) -> np.ndarray:
    """A batch of BGR ``uint8`` images [N, H, W, 3] as a raw PP-OCR model's input: float
    [N, 3, H, W] (``dtype``, float32 by default), normalized by ``PPOCR_NORMALIZATION`` as the
    prepared model does it in its graph."""
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4):
        raise InputShapeError(f"expected a batch of BGR uint8 images [N,H,W,3], got {_described(images)}")
    if images.shape[3] != 3:
        raise InputShapeError(f"expected a batch of BGR uint8 images [N,H,W,3], got {list(images.shape)}")
    norm = PPOCR_NORMALIZATION
    pixels = (images[..., ::-1] if norm.rgb else images).astype(np.float32)
    pixels -= np.asarray(norm.mean, np.float32)
    pixels /= np.asarray(norm.scale, np.float32)
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=dtype or np.float32)


def _described(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{list(value.shape)}"
    return type(value).__name__


def best_class(outputs: Outputs) -> Outputs:
    """A raw recognizer's answer (first output: class probabilities [N, T, K]) as the prepared one
    answers: ``scores`` (the best probability per step) and ``ids`` (int32; ties go to the lowest
    id, as in the prepared model's graph), both [N, T]."""
    probs = outputs[0]
    ids = probs.argmax(axis=-1).astype(np.int32)
    scores = np.take_along_axis(probs, ids[..., np.newaxis].astype(np.intp), axis=-1)[..., 0]
    return Outputs([scores, ids], ("scores", "ids"), {"scores": 0, "ids": 1})


class ServedModel(AsyncModel):
    """A model of the ocr task that it did not prepare (on a server, or loaded already), with the
    face of one it did: it takes BGR ``uint8`` images [N, H, W, 3] and, as the recognizer, answers
    ``ids`` and ``scores``. Served ``"raw"``, the images are normalized here and the recognizer's
    best class taken here, both on worker threads; served ``"prepared"``, calls go through as they
    are. ``info`` is the model's own, its ``config`` saying how it is ``served``. Closing this
    closes the model."""

    def __init__(self, model: AsyncModel, role: str, form: Form) -> None:
        self._model = model
        self.form = form
        raw = form == "raw"
        dtype = model.info.inputs[0].dtype
        self._to_input: Callable[[Inputs], np.ndarray] | None = (
            functools.partial(normalized, dtype=dtype) if raw else None
        )
        self._head = best_class if raw and role == "rec" else None
        self.info = dataclasses.replace(model.info, config={**model.info.config, "served": form})

    async def infer(self, inputs: Inputs, *, timeout: float | None = None) -> Outputs:
        """The model's outputs for a batch of images ``inputs``, as the prepared model's."""
        if self._to_input is not None:
            inputs = await anyio.to_thread.run_sync(self._to_input, inputs)
        return await self._answer(await self._model.infer(inputs, timeout=timeout))

    __call__ = infer

    def adapt(self, inputs: Inputs) -> Arrays:
        """``inputs`` (a batch of images) as the model's arrays; blocking, safe on any thread."""
        return self._model.adapt(inputs if self._to_input is None else self._to_input(inputs))

    async def run_adapted(self, arrays: Arrays, timeout: float | None = None) -> Outputs:
        """The second half of :meth:`infer`, for ``arrays`` made by :meth:`adapt`."""
        return await self._answer(await self._model.run_adapted(arrays, timeout))

    async def _answer(self, outputs: Outputs) -> Outputs:
        if self._head is None:
            return outputs
        return await anyio.to_thread.run_sync(self._head, outputs)

    def session(self, *, timeout: float | None = None) -> NoReturn:
        """Not here: the ocr task's models keep no state; raises :class:`SessionError`."""
        raise SessionError(f"{self!r} is one of the ocr task's models: it has no sessions")

    def stats(self) -> Stats:
        return self._model.stats()

    @property
    def closed(self) -> bool:
        return self._model.closed

    async def aclose(self, timeout: float | None = None) -> None:
        await self._model.aclose(timeout)

    @property
    def compiled(self) -> ov.CompiledModel:
        return self._model.compiled

    def __repr__(self) -> str:
        return f"<ServedModel {self.form} {self._model!r}>"
