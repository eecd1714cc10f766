"""OCR as a pipeline of three models: text detection (DB probability map) → line boxes → crops →
optional 0/180° orientation → recognition (CTC) of the crops, batched and concurrently over the
request pools.

Runs the PP-OCR models shipped in the ``rapidocr`` wheel by default. Thresholds and normalization
follow PP-OCR's published defaults (``(pixel / 255 - 0.5) / 0.5`` on BGR, DB thresholds 0.3/0.5,
unclip ratio 1.6, recognizer height 48, classifier 48x192). One departure, measured: the recognizer's
input is as wide as the line (see ``REC_MIN_WIDTH``).

Every size an image and the settings imply is bounded before it is allocated: the detector's input
(no side above ``det_max_side``, at most 4096), each line's crop (``CROP_MAX_PIXELS``), the
recognizer's input width (``REC_MAX_WIDTH``, PaddleX's cap) and the lines in flight per image
(``LINE_BATCH``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.lowlevel
import cv2
import numpy as np
import openvino as ov

from .._bundled import bundled_model
from .._errors import ModelLoadError, SettingsError
from .._model import AsyncModel
from .._model import load as load_model
from .._outputs import Outputs
from ._base import Task
from ._predictions import TextLine, TextResult
from ._preprocess import Normalization, as_batch, upsampling_as_conv
from ._settings import Setting, SettingsSource

PPOCR_NORMALIZATION = Normalization(mean=(127.5,) * 3, scale=(127.5,) * 3, rgb=False)
REC_HEIGHT = 48
# A line's recognizer input is as wide as the line at that height, rounded up to REC_WIDTH_STEP and at
# least REC_MIN_WIDTH. PP-OCR pads every line to at least 320: on 300 generated pages (1261 lines) that
# read 1234 lines exactly, this 1236, in 7% less time (short lines are most lines).
REC_MIN_WIDTH = 64
REC_MAX_WIDTH = 3200  # PaddleX's cap: a line wider than 3200/48 (66.7:1) is squeezed to this width
REC_WIDTH_STEP = 32  # few input shapes recur: OpenVINO prepares each new one (~2x an inference) per stream
DET_MAX_SIDE = 4096  # the detector's input never has a longer side (~2.4 GiB per request on CPU)
CROP_MAX_PIXELS = 1 << 20  # a line's crop larger than this is warped at a smaller scale to fit
LINE_BATCH = 32  # lines cropped, classified and recognized at a time, per image
CLS_HEIGHT, CLS_WIDTH = 48, 192
PAD_VALUE = 127  # mid-grey: ~0 after normalization, like PP-OCR's zero padding
LINE_Y_TOLERANCE = 10  # boxes whose tops differ by less than this many pixels are on one line
MIN_BOX_SIDE = 3

T = TypeVar("T")


@dataclass(frozen=True)
class Batch:
    """Lines given to a model in one request: their indices among an image's crops, and the
    model's input [N, H, W, 3] with one row per line, in the same order."""

    lines: tuple[int, ...]
    pixels: np.ndarray


@dataclass(frozen=True)
class _Meta:
    image: np.ndarray
    scale_x: float  # det-input pixels per image pixel
    scale_y: float
    cfg: Mapping[str, Any]


def det_input_size(
    height: int, width: int, limit_side: int, limit_type: str, max_side: int = DET_MAX_SIDE
) -> tuple[int, int]:
    """The detector's input (height, width) for an image of ``height`` x ``width``: scaled down so
    its longer side is at most ``limit_side`` (``limit_type`` ``max``), or up so its shorter side
    is at least ``limit_side`` (``min``); then scaled down, keeping the aspect ratio, until no side
    exceeds ``max_side`` (PaddleOCR's ``max_side_limit``: it wins over ``min``); each side rounded
    to a multiple of 32, at least 32 and at most ``max_side`` rounded down to a multiple of 32."""
    short, long = min(height, width), max(height, width)
    ratio = min(1.0, limit_side / long) if limit_type == "max" else max(1.0, limit_side / short)
    ratio = min(ratio, max_side / long)
    cap = max(32, max_side // 32 * 32)

    def side(pixels: int) -> int:
        return min(cap, max(32, round(pixels * ratio / 32) * 32))

    return (side(height), side(width))


def order_quad(points: np.ndarray) -> np.ndarray:
    """Four corners as top-left, top-right, bottom-right, bottom-left."""
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], np.float32)


def text_quads(
    prob: np.ndarray, *, thresh: float, box_thresh: float, unclip_ratio: float, max_candidates: int
) -> list[tuple[np.ndarray, float]]:
    """Text regions of a DB probability map [H, W]: (quad in map pixels, mean probability inside).

    Pixels above ``thresh`` form regions; a region's minimum-area rectangle is kept when the mean
    probability inside it reaches ``box_thresh``, then grown on every side by
    ``area * unclip_ratio / perimeter`` (DB's unclip: the text kernel is narrower than the text).
    """
    bitmap = cv2.dilate((prob > thresh).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    found = []
    for contour in contours[:max_candidates]:
        (cx, cy), (w, h), angle = cv2.minAreaRect(contour)
        if min(w, h) < MIN_BOX_SIDE:
            continue
        score = _mean_inside(prob, cv2.boxPoints(((cx, cy), (w, h), angle)))
        if score < box_thresh:
            continue
        grow = w * h * unclip_ratio / (2 * (w + h))
        w, h = w + 2 * grow, h + 2 * grow
        if min(w, h) < MIN_BOX_SIDE + 2:
            continue
        found.append((order_quad(cv2.boxPoints(((cx, cy), (w, h), angle))), score))
    return found


def _mean_inside(prob: np.ndarray, quad: np.ndarray) -> float:
    x0, y0 = np.clip(np.floor(quad.min(axis=0)).astype(int), 0, [prob.shape[1] - 1, prob.shape[0] - 1])
    x1, y1 = np.clip(np.ceil(quad.max(axis=0)).astype(int), 0, [prob.shape[1] - 1, prob.shape[0] - 1])
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(mask, [np.round(quad - [x0, y0]).astype(np.int32)], 1)
    return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])


def reading_order(quads: Sequence[np.ndarray]) -> list[int]:
    """Indices of ``quads`` top to bottom, and left to right within a line."""
    by_top = sorted(range(len(quads)), key=lambda i: float(quads[i][0, 1]))
    line, lines, prev_y = 0, {}, None
    for i in by_top:
        y = float(quads[i][0, 1])
        if prev_y is not None and y - prev_y >= LINE_Y_TOLERANCE:
            line += 1
        lines[i], prev_y = line, y
    return sorted(by_top, key=lambda i: (lines[i], float(quads[i][0, 0])))


def crop_quad(image: np.ndarray, quad: np.ndarray, max_pixels: int = CROP_MAX_PIXELS) -> np.ndarray:
    """The region inside ``quad`` warped upright; turned 90° when much taller than wide. A region
    of more than ``max_pixels`` is warped at the scale that fits it in ``max_pixels`` (same aspect
    ratio), so no crop is larger, whatever the quad."""
    width = float(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[3] - quad[2])))
    height = float(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    scale = min(1.0, math.sqrt(max_pixels / max(1.0, width * height)))
    width, height = max(1, int(width * scale)), max(1, int(height * scale))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    crop = cv2.warpPerspective(
        image, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    return np.ascontiguousarray(np.rot90(crop)) if height >= 1.5 * width else crop


def resized_width(crop: np.ndarray, height: int, max_width: int) -> int:
    """The width of ``crop`` resized to ``height`` with its aspect ratio kept (rounded up), at most
    ``max_width``."""
    h, w = (int(side) for side in crop.shape[:2])
    return min(math.ceil(height * w / h), max_width)


def fit_height(crops: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """A batch [N, ``height``, ``width``, 3] of ``crops``: each resized to ``height`` keeping its
    aspect ratio (squeezed to ``width`` when it would be wider), padded on the right with mid-grey."""
    batch = np.full((len(crops), height, width, 3), PAD_VALUE, np.uint8)
    for row, crop in zip(batch, crops, strict=True):
        fitted = resized_width(crop, height, width)
        row[:, :fitted] = cv2.resize(crop, (fitted, height), interpolation=cv2.INTER_LINEAR)
    return batch


def batches(
    crops: Sequence[np.ndarray], height: int, min_width: int, max_width: int, size: int, step: int = 1
) -> list[Batch]:
    """``crops`` as a model's inputs ``height`` pixels high. Each crop's input is as wide as the
    crop at that height rounded up to a multiple of ``step`` (at least ``min_width``, at most
    ``max_width``), and only crops of the same input width share a batch (at most ``size`` each):
    every line gets the same input, hence the same reading, batched or not (a recognizer reads a
    line differently when it is padded wider)."""
    widths = [
        min(max_width, max(min_width, _round_up(resized_width(c, height, max_width), step))) for c in crops
    ]
    by_width = sorted(range(len(crops)), key=widths.__getitem__)
    found = []
    for width, same in itertools.groupby(by_width, key=widths.__getitem__):
        lines = tuple(same)
        for start in range(0, len(lines), size):
            part = lines[start : start + size]
            found.append(Batch(part, fit_height([crops[i] for i in part], height, width)))
    return found


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def streamlined(role: str, model: ov.Model) -> ov.Model:
    """The prepared ``model`` of ``role`` (BGR ``uint8`` [N, H, W, 3] in) as the same function in a
    form OpenVINO runs faster, changed in place: learned upsampling (the detector's) as
    convolutions (:func:`upsampling_as_conv`), and the input sides the task always gives the
    recognizer (its height) and the classifier (its height and width) static where they were
    dynamic: less to redo for each request of a new shape. On benchmarks/bench_ocr.py's pages: the
    detector ~15% less CPU time, a whole page ~5% (both measured alternating with the models as read)."""
    upsampling_as_conv(model)
    shape = model.input(0).get_partial_shape()
    fixed = {"rec": (REC_HEIGHT, None), "cls": (CLS_HEIGHT, CLS_WIDTH)}.get(role, (None, None))
    if shape.rank.is_dynamic or shape.rank.get_length() != 4 or fixed == (None, None):
        return model
    for axis, side in zip((1, 2), fixed, strict=True):
        if side is not None and shape[axis].is_dynamic:
            shape[axis] = ov.Dimension(side)
    model.reshape({0: shape})
    return model


def ctc_decode(ids: np.ndarray, scores: np.ndarray, characters: Sequence[str]) -> tuple[str, float]:
    """Greedy CTC decoding of the best class per time step (``ids`` [T], class 0 the blank) with its
    probability (``scores`` [T]): the text, and the mean probability of its characters (0 for none)."""
    keep = ids != 0
    keep[1:] &= ids[1:] != ids[:-1]
    if not keep.any():
        return "", 0.0
    text = "".join(characters[i] for i in ids[keep])
    return text, float(scores[keep].mean())


def model_characters(model: ov.Model) -> tuple[str, ...]:
    """The recognizer's classes in order, from its metadata (PP-OCR ONNX ``character``: one
    character a line, LF or CRLF line ends): the CTC blank, the listed characters, then the space
    if the model has a class for it. PaddleOCR adds the space when trained with
    ``use_space_char`` (every PP-OCR recognizer is): the model then scores two classes more than
    the list has, one more without it. Decoding with a list that lacks the space turns every
    space into nothing ("total (42)" → "total(42)"); with a dynamic class count the space is
    assumed, as in PP-OCR."""
    if not model.has_rt_info(["framework", "character"]):
        raise ModelLoadError(
            "the recognition model has no 'character' list in its metadata; pass characters="
        )
    return listed_characters(model.get_rt_info(["framework", "character"]).astype(str), model)


def listed_characters(text: str, model: ov.Model) -> tuple[str, ...]:
    """The classes of recognizer ``model`` from its alphabet listed as PP-OCR lists it in ``text``
    (one character a line, LF or CRLF line ends, as in its dictionary files): the CTC blank, the
    listed characters, then the space if the model has a class for it (see
    :func:`model_characters`)."""
    listed = text.split("\n")
    if listed and listed[-1] == "":
        listed.pop()  # a final line end
    listed = [c[:-1] if len(c) > 1 and c.endswith("\r") else c for c in listed]
    classes = model.output(0).get_partial_shape()[-1]
    no_space = classes.is_static and classes.get_length() == len(listed) + 1
    return ("", *listed) if no_space else ("", *listed, " ")


class OCRTask(Task[TextResult]):
    """Text lines in an image, with their polygons and confidences.

    Models: ``det`` (DB text detector: image → probability map), ``rec`` (CTC recognizer on crops
    48 pixels high), and ``cls`` (0/180° line orientation; optional). The lines of an image are
    classified and recognized in batches (``cls_batch_num``, ``rec_batch_num`` lines a request; a
    recognizer batch holds only crops of the same input width, see :func:`batches`; on a 2-core CPU
    batches of 6 and one line a request measured the same speed, the work growing with the pixels
    either way, and batches make fewer requests), the batches concurrently, ``LINE_BATCH`` (32)
    lines in flight at a time: an image with more lines is read 32 at a time, every line of it
    (``max_candidates`` bounds how many text regions are considered), so memory stays bounded.

    ``cls_thresh`` is PaddleOCR's: a line is turned over when the classifier's probability that it
    is upside down (180°) exceeds it. The classifier scores two classes, so anything at or below
    0.5 turns every line it finds likelier upside down than not; higher values leave lines it is
    unsure of as they are. The default, 0.6, read the most lines right on 140 generated pages and
    the same pages turned 180° (of the 1037 lines read right one way up only, 7 were read the wrong
    way up at 0.6, 9 at 0.5, 22 at PaddleOCR's 0.9: upside-down lines the classifier scored 0.6-0.9
    were left upside down).

    Stages (:meth:`stats`): ``pre_process``, ``det``, ``boxes`` (lines, and the crops and next
    model's inputs of the first batch of lines, on a worker thread), ``crops`` (the same for each
    further batch), ``cls``, ``rec_pre`` (upside-down crops turned over and the recognizer's
    inputs; these two with the classifier on), ``rec``, ``forward`` (all of ``det`` to ``rec``)
    and ``post_process``.
    """

    name = "ocr"
    settings_spec: ClassVar[dict[str, Setting]] = {
        "det_limit_side": Setting(
            960, 32, DET_MAX_SIDE, at_most="det_max_side", doc="detector input side limit, pixels"
        ),
        "det_limit_type": Setting("max", choices=("max", "min"), doc="which side det_limit_side bounds"),
        "det_max_side": Setting(
            DET_MAX_SIDE,
            32,
            DET_MAX_SIDE,
            doc="no side of the detector input exceeds this; a larger one is scaled down to fit",
        ),
        "det_thresh": Setting(0.3, 0.0, 1.0, doc="probability above which a pixel is text"),
        "box_thresh": Setting(0.5, 0.0, 1.0, doc="minimum mean probability of a text box"),
        "unclip_ratio": Setting(1.6, 0.0, 10.0, doc="how much a text kernel is grown into its box"),
        "max_candidates": Setting(1000, 1, 100_000, doc="at most this many text regions per image"),
        "use_cls": Setting(True, doc="detect and undo upside-down lines"),
        "cls_thresh": Setting(
            0.6, 0.0, 1.0, doc="a line is turned over when its probability of being upside down exceeds this"
        ),
        "cls_batch_num": Setting(6, 1, LINE_BATCH, doc="lines classified per request"),
        "rec_batch_num": Setting(
            6, 1, LINE_BATCH, doc="lines recognized per request (only lines of the same input width)"
        ),
        "text_score": Setting(0.5, 0.0, 1.0, doc="drop lines recognized with a lower confidence"),
    }

    def __init__(self, models: Mapping[str, AsyncModel], *, characters: Sequence[str], **kwargs: Any) -> None:
        super().__init__(models, **kwargs)
        self.characters = tuple(characters)

    @classmethod
    async def create(
        cls,
        model: Mapping[str, Any] | None = None,
        *,
        labels: Any = None,
        settings: SettingsSource | None = None,
        device: str = "AUTO",
        characters: Sequence[str] | None = None,
        max_threads: int | None = None,
        **load_kwargs: Any,
    ) -> OCRTask:
        """Load ``model``: ``None`` for the bundled PP-OCR models, or a mapping with ``det`` and
        ``rec`` (and optionally ``cls``) model sources: a file (raw as PP-OCR ships it, or prepared
        by ``aioinfer export ocr``), the URL of a model on an inference server (``http(s)://``,
        ``grpc(s)://``: loaded with ``num_requests`` and ``max_queue`` only; the other options are
        for files), or a model loaded already; a served model is used as it is served, prepared or
        raw (see :mod:`aioinfer.tasks._ocr_models`). ``characters``: the recognizer's classes in
        order (index 0 the CTC blank), needed when its metadata has no ``character`` list, or when
        it is served prepared; a served raw recognizer that scores as many classes as the bundled
        one reads with the bundled alphabet. ``shape_lanes`` (see :func:`aioinfer.load`): one number
        for every model, or one per role, e.g. ``{"rec": 16, "cls": 8}`` for a long run (line widths
        and batch sizes recur; a page size seldom does)."""
        from ._ocr_models import is_url, load_remote, prepared_model  # (which imports this module)

        if labels is not None:
            raise SettingsError("the ocr task takes no labels: its recognizer's alphabet is in the model")
        loaded: list[AsyncModel] = []
        remote = {key: load_kwargs.get(key) for key in ("num_requests", "max_queue")}
        lanes = _lanes_by_role(load_kwargs.pop("shape_lanes", 1))

        async def prepare_and_load(role: str) -> tuple[AsyncModel, tuple[str, ...]]:
            source, alphabet = sources[role], characters if role == "rec" else None
            if is_url(source) or isinstance(source, AsyncModel):
                served, found = await load_remote(role, source, alphabet, remote)
                loaded.append(served)
                return served, found
            ov_model, found = await anyio.to_thread.run_sync(prepared_model, role, source, alphabet)
            loaded.append(await load_model(ov_model, device=device, shape_lanes=lanes[role], **load_kwargs))
            return loaded[-1], found

        try:
            sources = _sources(model)
            checked = await cls.check_settings(settings)
            # all at once; a failure is raised once the others have loaded (a compile cannot be cut short)
            results = await _all_in_order(
                [partial(prepare_and_load, role) for role in sources], cancel_rest=False
            )
            # cancelled while every compile ran to its end: on any backend, no task, its models closed
            await anyio.lowlevel.checkpoint_if_cancelled()
            by_role = dict(zip(sources, results, strict=True))
            models = {role: made for role, (made, _) in by_role.items()}
            return cls(models, characters=by_role["rec"][1], settings=checked, max_threads=max_threads)
        except BaseException:
            given = model.values() if isinstance(model, Mapping) else ()  # models loaded already: the task's
            with anyio.CancelScope(shield=True):  # closed also when this call was cancelled
                async with anyio.create_task_group() as closing:
                    for done in [*loaded, *(m for m in given if isinstance(m, AsyncModel))]:
                        closing.start_soon(done.aclose)
            raise

    def pre_process(self, image: np.ndarray) -> tuple[np.ndarray, _Meta]:
        cfg = self.settings_now
        h, w = image.shape[:2]
        in_h, in_w = det_input_size(h, w, cfg["det_limit_side"], cfg["det_limit_type"], cfg["det_max_side"])
        resized = cv2.resize(image, (in_w, in_h), interpolation=cv2.INTER_LINEAR)
        return as_batch(resized), _Meta(image, in_w / w, in_h / h, cfg)

    async def forward(self, inputs: np.ndarray, meta: _Meta) -> tuple[list[np.ndarray], list[Outputs]]:
        """The lines' quads in reading order and the recognizer's outputs for each (its rows of
        them), ``LINE_BATCH`` lines at a time (only one such group's crops and inputs exist at once)."""
        det = await self.timed("det", self.models["det"].infer(inputs))
        orient = bool(meta.cfg["use_cls"]) and "cls" in self.models
        quads, prepared = await self.run_sync("boxes", self._boxes, det[0], meta, orient)
        rec: list[Outputs] = []
        for start in range(0, len(quads), LINE_BATCH):
            if start:
                group = quads[start : start + LINE_BATCH]
                prepared = await self.run_sync("crops", _prepare, meta.image, group, meta.cfg, orient)
            rec += await self._recognize(*prepared, meta.cfg, orient)
        return quads, rec

    async def _recognize(
        self, crops: list[np.ndarray], inputs: list[Batch], cfg: Mapping[str, Any], orient: bool
    ) -> list[Outputs]:
        """The recognizer's outputs for each of ``crops``, in order, all batches in flight at once;
        ``inputs`` are the classifier's when ``orient`` (crops it finds upside down are turned
        first), else the recognizer's."""
        if orient:
            cls_out = await self.timed("cls", _infer_lines(self.models["cls"], inputs, len(crops)))
            probs = [out[0][0] for out in cls_out]
            inputs = await self.run_sync("rec_pre", _upright_rec_inputs, crops, probs, cfg)
        return await self.timed("rec", _infer_lines(self.models["rec"], inputs, len(crops)))

    def post_process(self, outputs: tuple[list[np.ndarray], list[Outputs]], meta: _Meta) -> TextResult:
        quads, rec = outputs
        found = []
        for quad, out in zip(quads, rec, strict=True):
            text, score = ctc_decode(out["ids"][0], out["scores"][0], self.characters)
            if text and score >= meta.cfg["text_score"]:
                found.append(TextLine(text, score, tuple((float(x), float(y)) for x, y in quad)))
        return TextResult(tuple(found), meta.image.shape[:2])

    def _quads(self, prob: np.ndarray, meta: _Meta) -> list[np.ndarray]:
        """The text lines of the detector's map ``prob`` as quads in image pixels, in reading order."""
        cfg = meta.cfg
        found = text_quads(
            prob[0, 0],
            thresh=cfg["det_thresh"],
            box_thresh=cfg["box_thresh"],
            unclip_ratio=cfg["unclip_ratio"],
            max_candidates=cfg["max_candidates"],
        )
        h, w = meta.image.shape[:2]
        quads = []
        for quad, _ in found:
            quad = np.clip(quad / [meta.scale_x, meta.scale_y], 0, [w - 1, h - 1]).astype(np.float32)
            if min(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[0] - quad[3])) > MIN_BOX_SIDE:
                quads.append(quad)
        return [quads[i] for i in reading_order(quads)]

    def _boxes(
        self, prob: np.ndarray, meta: _Meta, orient: bool
    ) -> tuple[list[np.ndarray], tuple[list[np.ndarray], list[Batch]]]:
        """The lines' quads, and the first ``LINE_BATCH`` lines prepared by :func:`_prepare`."""
        quads = self._quads(prob, meta)
        return quads, _prepare(meta.image, quads[:LINE_BATCH], meta.cfg, orient)


async def _infer_lines(model: AsyncModel, inputs: list[Batch], count: int) -> list[Outputs]:
    """Every batch of ``inputs`` through ``model`` at once; the outputs of each of the ``count``
    lines (its rows of its batch's outputs), in line order."""
    outs = await _all_in_order([partial(model.infer, batch.pixels) for batch in inputs], cancel_rest=True)
    rows = {
        line: out.rows(row, row + 1)
        for batch, out in zip(inputs, outs, strict=True)
        for row, line in enumerate(batch.lines)
    }
    return [rows[line] for line in range(count)]


async def _all_in_order(calls: Sequence[Callable[[], Awaitable[T]]], *, cancel_rest: bool) -> list[T]:
    """The results of ``calls``, all run at once (in a task group: on any backend), in order. When
    one raises, the first error (in the order they came) is raised as it is, not in a group, once the
    others have ended: cancelled when ``cancel_rest``, else run to their end."""
    results: dict[int, T] = {}
    errors: dict[int, Exception] = {}

    async def run(index: int, call: Callable[[], Awaitable[T]]) -> None:
        try:
            results[index] = await call()
        except Exception as exc:  # cancellation is a BaseException: it goes on as it is
            errors[index] = exc
            if cancel_rest:
                group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for index, call in enumerate(calls):
            group.start_soon(run, index, call)
    if errors:
        raise errors[min(errors)]
    return [results[index] for index in range(len(calls))]


def _prepare(
    image: np.ndarray, quads: list[np.ndarray], cfg: Mapping[str, Any], orient: bool
) -> tuple[list[np.ndarray], list[Batch]]:
    """The crops of ``quads``, and the next model's inputs: the classifier's when ``orient``, else
    the recognizer's."""
    crops = [crop_quad(image, q) for q in quads]
    return crops, (_cls_inputs if orient else _rec_inputs)(crops, cfg)


def _rec_inputs(crops: list[np.ndarray], cfg: Mapping[str, Any]) -> list[Batch]:
    return batches(crops, REC_HEIGHT, REC_MIN_WIDTH, REC_MAX_WIDTH, cfg["rec_batch_num"], REC_WIDTH_STEP)


def _cls_inputs(crops: list[np.ndarray], cfg: Mapping[str, Any]) -> list[Batch]:
    return batches(crops, CLS_HEIGHT, CLS_WIDTH, CLS_WIDTH, cfg["cls_batch_num"])


def _upright(crops: list[np.ndarray], probs: list[np.ndarray], thresh: float) -> list[np.ndarray]:
    """Crops the classifier finds upside down (class 1: 180 degrees, above ``thresh``) turned over."""
    return [
        cv2.rotate(c, cv2.ROTATE_180) if p.argmax() == 1 and p[1] > thresh else c
        for c, p in zip(crops, probs, strict=True)
    ]


def _upright_rec_inputs(
    crops: list[np.ndarray], probs: list[np.ndarray], cfg: Mapping[str, Any]
) -> list[Batch]:
    """The recognizer's inputs, upside-down crops turned over."""
    return _rec_inputs(_upright(crops, probs, cfg["cls_thresh"]), cfg)


def _check_alphabet(rec: ov.Model, alphabet: Sequence[str]) -> None:
    classes = rec.output(0).get_partial_shape()[-1]
    if classes.is_static and classes.get_length() != len(alphabet):
        raise ModelLoadError(
            f"the recognizer scores {classes.get_length()} classes but its alphabet (with the CTC blank) "
            f"has {len(alphabet)}"
        )


def _lanes_by_role(lanes: int | Mapping[str, int]) -> dict[str, int]:
    """``shape_lanes`` for each role: the same number for all, or a mapping by role (1 for a role
    it leaves out); a :class:`SettingsError` for a role the task has not."""
    from ._ocr_models import ROLES  # (which imports this module)

    if not isinstance(lanes, Mapping):
        return dict.fromkeys(ROLES, lanes)
    unknown = set(lanes) - set(ROLES)
    if unknown:
        raise SettingsError(f"shape_lanes names models the ocr task has not: {sorted(unknown)} ({ROLES})")
    return {role: lanes.get(role, 1) for role in ROLES}


def _sources(model: Mapping[str, Any] | None) -> dict[str, Any]:
    if model is None:
        return {role: bundled_model(role) for role in ("det", "rec", "cls")}
    if (
        not isinstance(model, Mapping)
        or not {"det", "rec"} <= set(model)
        or not set(model) <= {"det", "rec", "cls"}
    ):
        raise ModelLoadError(
            "the ocr task takes None (bundled PP-OCR models) or a mapping with 'det', 'rec' "
            f"and optionally 'cls' model sources (files, URLs or models loaded already), got {model!r}"
        )
    return {role: model[role] for role in ("det", "rec", "cls") if role in model}
