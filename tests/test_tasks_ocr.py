"""OCR end to end on the real PP-OCR models of the rapidocr wheel, on text rendered with cv2.putText."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import resource

import anyio
import cv2
import models
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

import aioinfer
from aioinfer import tasks
from aioinfer._bundled import bundled_model
from aioinfer.tasks import _ocr
from aioinfer.tasks._ocr import (
    CROP_MAX_PIXELS,
    DET_MAX_SIDE,
    LINE_BATCH,
    REC_MAX_WIDTH,
    REC_MIN_WIDTH,
    batches,
    crop_quad,
    ctc_decode,
    det_input_size,
    fit_height,
    model_characters,
    order_quad,
    reading_order,
    text_quads,
)
from aioinfer.tasks._ocr_samples import sample_page, sample_pages
from aioinfer.tasks._preprocess import best_class_head, embed_normalization, upsampling_as_conv

LINES = ["Invoice 2024-117", "OpenVINO runs async", "Total: 42.50 EUR"]
FONTS = {
    "simplex": cv2.FONT_HERSHEY_SIMPLEX,
    "duplex": cv2.FONT_HERSHEY_DUPLEX,
    "complex": cv2.FONT_HERSHEY_COMPLEX,
    "triplex": cv2.FONT_HERSHEY_TRIPLEX,
    "plain": cv2.FONT_HERSHEY_PLAIN,
}


def render(lines: list[str], font: int = cv2.FONT_HERSHEY_SIMPLEX, scale: float = 1.0, thickness: int = 2):
    """White page with ``lines`` in black, one under the other; also each line's ink bbox (x1, y1, x2, y2)."""
    sizes = [cv2.getTextSize(t, font, scale, thickness) for t in lines]
    width = max(w for (w, _), _ in sizes) + 60
    line_h = max(h + b for (_, h), b in sizes) * 2
    image = np.full((line_h * len(lines) + 40, width, 3), 255, np.uint8)
    boxes = []
    for i, (text, ((_, h), _)) in enumerate(zip(lines, sizes, strict=True)):
        x, y = 30, 20 + line_h * i + h + line_h // 4
        alone = np.full_like(image, 255)
        cv2.putText(alone, text, (x, y), font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
        ys, xs = np.nonzero(alone[..., 0] < 128)
        boxes.append((xs.min(), ys.min(), xs.max(), ys.max()))
        image = np.minimum(image, alone)
    return image, boxes


def grid(count: int, columns: int = 2) -> tuple[np.ndarray, list[str]]:
    """A page of ``count`` short lines ("Item 00", ...) in ``columns`` far-apart columns, and the lines."""
    rows = -(-count // columns)
    image = np.full((rows * 36 + 20, columns * 260 + 20, 3), 255, np.uint8)
    words = [f"Item {i:02d}" for i in range(count)]
    for i, word in enumerate(words):
        row, col = divmod(i, columns)
        org = (20 + col * 260, 36 + row * 36)
        cv2.putText(image, word, org, cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
    return image, words


class InferSpy:
    """Wraps a real model's ``infer`` (not a mock: it calls through) to record the input shapes, the
    most calls in flight at once and the most lines (rows of their batches) in flight at once."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.in_flight = self.peak = self.rows_in_flight = self.peak_rows = 0

    @property
    def rows(self) -> int:
        """Lines given to the model, over all calls."""
        return sum(shape[0] for shape in self.shapes)

    @contextlib.contextmanager
    def on(self, model: aioinfer.AsyncModel):
        real = model.infer

        async def spy(x, **kw):
            self.shapes.append(x.shape)
            self.in_flight += 1
            self.rows_in_flight += x.shape[0]
            self.peak = max(self.peak, self.in_flight)
            self.peak_rows = max(self.peak_rows, self.rows_in_flight)
            try:
                return await real(x, **kw)
            finally:
                self.in_flight -= 1
                self.rows_in_flight -= x.shape[0]

        model.infer = spy
        try:
            yield self
        finally:
            del model.infer


@pytest.fixture(scope="module")  # the loaded models are shared across tests (anyio_backend: module)
async def ocr():
    async with tasks.load(None, task="ocr") as task:
        yield task


@pytest.mark.parametrize(
    ("font", "scale", "thickness"),
    [
        ("simplex", 1.0, 2),
        ("duplex", 0.8, 1),
        ("complex", 1.2, 2),
        ("triplex", 1.6, 2),
        ("plain", 1.5, 1),
    ],
)
async def test_reads_rendered_lines_exactly(ocr, font, scale, thickness):
    image, boxes = render(LINES, FONTS[font], scale, thickness)
    pred = await ocr.predict(image)
    assert pred.texts == LINES
    for line, (x1, y1, x2, y2) in zip(pred.lines, boxes, strict=True):
        bx1, by1, bx2, by2 = line.box
        assert bx1 <= x1 + 2 and by1 <= y1 + 2 and bx2 >= x2 - 2 and by2 >= y2 - 2  # polygon covers the text
        assert bx2 - bx1 < (x2 - x1) * 1.5 and by2 - by1 < (y2 - y1) * 3  # ...and not much more
        assert 0.5 <= line.score <= 1


async def test_lines_of_many_images_concurrently(ocr):
    images = [render([text])[0] for text in LINES]
    preds = await asyncio.gather(*(ocr.predict(img) for img in images))
    assert [p.texts for p in preds] == [[t] for t in LINES]


async def test_upside_down_line_is_turned_by_the_classifier(ocr):
    image, _ = render([LINES[1]], scale=1.2)
    upside_down = cv2.rotate(image, cv2.ROTATE_180)
    assert (await ocr.predict(upside_down)).texts == [LINES[1]]
    ocr.update_settings(use_cls=False)
    try:
        assert (await ocr.predict(upside_down)).texts != [LINES[1]]
    finally:
        ocr.set_settings({})


@pytest.mark.parametrize("font", ["duplex", "complex", "triplex", "plain"])
async def test_a_space_before_a_parenthesis_is_kept_beside_a_wider_line(ocr, font):
    # PaddleOCR and rapidocr pad every crop of a batch to the batch's widest, so what a line reads
    # depends on the other lines of the page: padded to this long line's width, "qty (7)" is read
    # "qty(7)". Here a line is never padded wider than it is alone.
    lines = ["qty (7)", "OpenVINO runs async on every frame of the camera"]
    assert (await ocr.predict(render(lines, FONTS[font])[0])).texts == lines
    assert (await ocr.predict(render(["total (42)"], FONTS[font])[0])).texts == ["total (42)"]


async def test_upside_down_pages_are_read_at_the_default_cls_thresh(ocr):
    # generated pages turned 180°: each has an upside-down line the classifier scores 0.7-0.87
    # (180°), so PaddleOCR's cls_thresh 0.9 left it upside down; the default reads every line
    pages = [sample_page(i) for i in (6, 35, 58)]
    turned = [cv2.rotate(p.image, cv2.ROTATE_180) for p in pages]
    read = [(await ocr.predict(image)).texts for image in turned]
    assert read == [list(reversed(p.lines)) for p in pages]  # bottom line first now
    ocr.update_settings(cls_thresh=0.9)
    try:
        at_09 = [(await ocr.predict(image)).texts for image in turned]
    finally:
        ocr.set_settings({})
    assert sum(_exact(p.lines, texts) for p, texts in zip(pages, at_09, strict=True)) < 12


async def test_batched_recognition_reads_exactly_what_one_line_per_request_reads(ocr):
    # pages 4, 7, 12 and 14 each have a line that reads differently when padded to its batch's widest
    pages = [sample_page(i) for i in (0, 4, 7, 12, 14)]
    images = [p.image for p in pages] + [cv2.rotate(pages[0].image, cv2.ROTATE_180)]
    with InferSpy().on(ocr.models["rec"]) as rec, InferSpy().on(ocr.models["cls"]) as cls:
        batched = [await ocr.predict(image) for image in images]
    assert len(rec.shapes) < rec.rows and len(cls.shapes) < cls.rows  # lines did share requests
    ocr.update_settings(rec_batch_num=1, cls_batch_num=1)
    try:
        with InferSpy().on(ocr.models["rec"]) as rec:
            alone = [await ocr.predict(image) for image in images]
    finally:
        ocr.set_settings({})
    assert len(rec.shapes) == rec.rows
    assert [p.texts for p in batched] == [p.texts for p in alone]  # exactly
    for b, a in zip(batched, alone, strict=True):
        assert [ln.polygon for ln in b.lines] == [ln.polygon for ln in a.lines]
        assert [ln.score for ln in b.lines] == pytest.approx([ln.score for ln in a.lines], abs=1e-3)


async def test_generated_pages_are_mostly_read_exactly(ocr):
    pages = sample_pages(8)
    preds = [await ocr.predict(p.image) for p in pages]
    exact = sum(_exact(p.lines, pred.texts) for p, pred in zip(pages, preds, strict=True))
    # 29 of these 35 lines here (the rest: a space or a bracket's width), ~95% over 60 pages
    assert exact >= 0.75 * sum(len(p.lines) for p in pages)


def _exact(truth: tuple[str, ...], read: list[str]) -> int:
    """How many lines of ``truth`` are among ``read`` exactly, each read line counted once."""
    left = collections.Counter(read)
    found = 0
    for line in truth:
        if left[line] > 0:
            left[line] -= 1
            found += 1
    return found


async def test_blank_image_has_no_lines(ocr):
    pred = await ocr.predict(np.full((120, 300, 3), 255, np.uint8))
    assert pred.lines == () and pred.to_dict()["lines"] == []


async def test_every_crop_is_recognized_concurrently(ocr):
    ocr.update_settings(rec_batch_num=1, cls_batch_num=1)
    try:
        with InferSpy().on(ocr.models["rec"]) as rec:
            pred = await ocr.predict(render(LINES)[0])
    finally:
        ocr.set_settings({})
    assert pred.texts == LINES
    assert rec.peak == len(LINES) and rec.shapes[0][0] == 1  # one request per line, all at once


async def test_many_lines_are_all_read_a_bounded_batch_at_a_time(ocr):
    image, words = grid(LINE_BATCH + 8)
    with InferSpy().on(ocr.models["cls"]) as cls, InferSpy().on(ocr.models["rec"]) as rec:
        pred = await ocr.predict(image)
    assert sorted(pred.texts) == words  # every line read, none dropped
    assert rec.rows == cls.rows == len(words)  # each line classified and recognized once
    assert rec.peak_rows == cls.peak_rows == LINE_BATCH  # at most one group of crops in flight
    assert "crops" in ocr.stats().stages  # the second batch was cropped on its own


async def test_min_limit_on_a_thin_strip_is_capped_by_det_max_side(ocr):
    # the review's attack: PATCH {"det_limit_type": "min", "det_limit_side": 4096}, then a 2000x8
    # image (a 147-byte PNG) asked for a 4096 x 1,024,000 detector input and exhausted memory
    blank = np.full((8, 2000, 3), 255, np.uint8)
    strip = np.full((40, 2000, 3), 255, np.uint8)
    cv2.putText(strip, LINES[0], (20, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2, cv2.LINE_AA)
    ocr.update_settings(det_limit_type="min", det_limit_side=4096)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    try:
        with InferSpy().on(ocr.models["det"]) as det:
            assert (await ocr.predict(blank)).lines == ()
            assert (await ocr.predict(strip)).texts == [LINES[0]]  # scaled down to fit, still read
    finally:
        ocr.set_settings({})
    assert det.shapes == [(1, 32, DET_MAX_SIDE, 3), (1, 96, DET_MAX_SIDE, 3)]
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 1024  # the unbounded input alone was 12 GB


async def test_det_limit_side_above_det_max_side_is_refused(ocr):
    with pytest.raises(aioinfer.SettingsError, match=r"'det_limit_side': 960 exceeds setting 'det_max_side'"):
        ocr.update_settings(det_max_side=512)
    assert ocr.settings == dict(ocr.default_settings)  # nothing changed
    ocr.update_settings(det_max_side=1024, det_limit_side=1024, det_limit_type="min")
    try:
        with InferSpy().on(ocr.models["det"]) as det:
            assert (await ocr.predict(render(LINES)[0])).texts == LINES
        assert max(det.shapes[0][1:3]) <= 1024
    finally:
        ocr.set_settings({})
    with pytest.raises(aioinfer.SettingsError, match="det_limit_side <= det_max_side"):
        await tasks.load(None, task="ocr", settings={"det_limit_side": 2000, "det_max_side": 1024})


async def test_prediction_to_dict_is_json_and_draw_keeps_input(ocr):
    image, _ = render(LINES)
    before = image.copy()
    pred = await ocr.predict(image)
    data = json.loads(json.dumps(pred.to_dict()))
    assert data["task"] == "ocr"
    assert data["image_size"] == {"width": image.shape[1], "height": image.shape[0]}
    assert [ln["text"] for ln in data["lines"]] == LINES
    assert all(len(ln["polygon"]) == 4 for ln in data["lines"])
    drawn = ocr.draw(image, pred)
    assert drawn.shape == image.shape and np.array_equal(image, before)
    assert not np.array_equal(drawn, image)


async def test_alphabet_comes_from_the_recognizer_metadata(ocr):
    classes = ov.Core().read_model(bundled_model("rec")).output(0).get_partial_shape()[-1].get_length()
    assert len(ocr.characters) == classes == 18710
    assert [o.name for o in ocr.models["rec"].info.outputs] == ["scores", "ids"]  # arg-max in the graph
    assert ocr.characters[0] == "" and ocr.characters[-1] == " "
    assert {"A", "z", "0", ":", "-", "."} <= set(ocr.characters)


async def test_bad_image_fails_only_that_call(ocr):
    with pytest.raises(aioinfer.InputDtypeError, match="uint8"):
        await ocr.predict(np.zeros((50, 50, 3), np.float32))
    with pytest.raises(aioinfer.InputShapeError, match="HxWx3"):
        await ocr.predict(np.zeros((50, 50, 2), np.uint8))
    with pytest.raises(aioinfer.InputDtypeError, match="numpy array"):
        await ocr.predict("page.png")
    assert (await ocr.predict(render([LINES[0]])[0])).texts == [LINES[0]]


async def test_grey_image_is_accepted(ocr):
    image, _ = render([LINES[2]])
    assert (await ocr.predict(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))).texts == [LINES[2]]


async def test_text_score_setting_filters_lines(ocr):
    image, _ = render([LINES[0]])
    ocr.update_settings(text_score=1.0)
    try:
        assert (await ocr.predict(image)).lines == ()
    finally:
        ocr.set_settings({})
    assert ocr.settings == dict(ocr.default_settings)


async def test_info_and_stage_latencies(ocr):
    info = ocr.info.to_dict()
    assert info["task"] == "ocr" and set(info["models"]) == {"det", "rec", "cls"}
    json.dumps(info)
    assert (await ocr.predict(render(LINES)[0])).texts == LINES  # its own prediction: runs alone too
    stages = ocr.stats().stages
    assert {"pre_process", "det", "boxes", "rec", "post_process"} <= set(stages)
    expected = {"pre_process", "forward", "det", "boxes", "cls", "rec_pre", "rec", "post_process"}
    assert set(stages) - {"crops"} == expected  # crops: only after an image of over LINE_BATCH lines
    assert all(s.p50 is not None and s.p50 >= 0 for s in stages.values())
    for name, s in stages.items():
        assert s.p50 is not None and s.p95 is not None and s.p99 is not None, name
        assert 0 <= s.p50 <= s.p95 <= s.p99 < 60_000, name
    # every forward records det, then rec: each forward takes longer than its det or its rec
    assert stages["forward"].p50 > max(stages["det"].p50, stages["rec"].p50)


async def test_map_keeps_every_model_of_the_pipeline_busy_by_default(ocr):
    """The default window is twice the requests of det, cls and rec together (not of det alone:
    then the recognizer idles while the detector runs)."""
    assert ocr.requests == sum(m.info.num_requests for m in ocr.models.values()) > ocr.model.info.num_requests
    assert ocr._map_target()[1] == ocr.requests
    async with tasks.load(None, task="ocr", num_requests=20) as many:  # as remote models (64 each) would
        assert many.requests == 60 and many._map_target()[1] == 32  # a window of 64 images, not 120


async def test_shape_lanes_by_role():
    async with tasks.load(None, task="ocr", shape_lanes={"rec": 3, "cls": 2}) as task:
        assert {r: m.info.shape_lanes for r, m in task.models.items()} == {"det": 1, "rec": 3, "cls": 2}
        assert (await task.predict(render(LINES)[0])).texts == LINES
    with pytest.raises(aioinfer.SettingsError, match="'dec'"):
        await tasks.load(None, task="ocr", shape_lanes={"dec": 4})


async def test_bad_model_mapping_is_rejected():
    with pytest.raises(aioinfer.ModelLoadError, match="'det', 'rec'"):
        await tasks.load({"rec": "x.onnx"}, task="ocr")
    with pytest.raises(aioinfer.SettingsError, match="labels"):
        await tasks.load(None, task="ocr", labels=["a"])


# -- the geometry, on crafted maps -----------------------------------------------------------------


def test_det_input_size_rounds_to_32():
    assert det_input_size(360, 640, 960, "max") == (352, 640)
    assert det_input_size(1000, 2000, 960, "max") == (480, 960)
    assert det_input_size(100, 200, 736, "min") == (736, 1472)
    assert det_input_size(5, 5, 960, "max") == (32, 32)


def test_det_input_size_never_exceeds_max_side():
    assert det_input_size(8, 2000, 4096, "min") == (32, 4096)  # was (4096, 1024000): 12 GB of input
    assert det_input_size(2000, 8, 4096, "min", 1000) == (992, 32)  # rounded down to a multiple of 32
    assert det_input_size(10_000, 10_000, 32, "min") == (4096, 4096)  # "min" never grew it, the image did
    assert det_input_size(100, 200, 736, "min", 1024) == (512, 1024)  # aspect ratio kept
    for height, width in [(1, 100_000), (8, 2000), (3000, 4000), (50_000, 7), (4096, 4096)]:
        for limit_type in ("min", "max"):
            for limit, cap in [(32, 32), (960, 4096), (4096, 4096), (1000, 1000), (4090, 4090)]:
                size = det_input_size(height, width, limit, limit_type, cap)
                assert max(size) <= max(32, cap) and min(size) >= 32, (height, width, limit_type, limit, cap)


def test_rec_input_width_is_capped():
    wide = np.zeros((8, 2000, 3), np.uint8)  # 12000 wide unbounded
    assert fit_height([wide], 48, REC_MAX_WIDTH).shape == (1, 48, REC_MAX_WIDTH, 3)
    (batch,) = _ocr._rec_inputs([wide], {"rec_batch_num": 6})
    assert batch.pixels.shape == (1, 48, REC_MAX_WIDTH, 3)
    (batch,) = _ocr._rec_inputs([np.zeros((24, 100, 3), np.uint8)], {"rec_batch_num": 6})
    assert batch.pixels.shape == (1, 48, 224, 3)  # 200 wide at height 48, rounded up to 32
    (batch,) = _ocr._rec_inputs([np.zeros((48, 20, 3), np.uint8)], {"rec_batch_num": 6})
    assert batch.pixels.shape == (1, 48, REC_MIN_WIDTH, 3)


def test_crop_of_a_huge_quad_is_bounded():
    image = np.zeros((1500, 3000, 3), np.uint8)
    quad = np.array([[0, 0], [2999, 0], [2999, 1499], [0, 1499]], np.float32)
    crop = crop_quad(image, quad)  # 4.5 Mpx unbounded
    height, width = crop.shape[:2]
    assert height * width <= CROP_MAX_PIXELS
    assert width / height == pytest.approx(2999 / 1499, rel=0.01)


def test_text_quads_on_a_crafted_probability_map():
    prob = np.zeros((64, 128), np.float32)
    prob[20:30, 10:90] = 0.9  # one kernel: 80 x 10 pixels
    prob[50:52, 100:102] = 0.9  # too small to be text
    ((quad, score),) = text_quads(prob, thresh=0.3, box_thresh=0.5, unclip_ratio=1.5, max_candidates=10)
    assert score == pytest.approx(0.9 * 80 * 10 / (81 * 11), abs=0.02)  # the box includes the dilated rim
    # the rectangle through the pixel centres of the dilated kernel (x 10..90, y 20..30: 80 x 10)
    # grown by area * ratio / perimeter on each side
    w, h = 80, 10
    d = w * h * 1.5 / (2 * (w + h))
    x1, y1 = quad.min(axis=0)
    x2, y2 = quad.max(axis=0)
    assert (x2 - x1, y2 - y1) == (pytest.approx(w + 2 * d, abs=0.01), pytest.approx(h + 2 * d, abs=0.01))
    assert ((x1 + x2) / 2, (y1 + y2) / 2) == (pytest.approx(50), pytest.approx(25))


def test_low_probability_region_is_dropped():
    prob = np.zeros((64, 128), np.float32)
    prob[20:30, 10:90] = 0.4  # above thresh, below box_thresh
    assert text_quads(prob, thresh=0.3, box_thresh=0.5, unclip_ratio=1.5, max_candidates=10) == []


def test_order_quad_and_reading_order():
    quad = order_quad(np.array([[10, 20], [0, 0], [10, 0], [0, 20]], np.float32))
    assert quad.tolist() == [[0, 0], [10, 0], [10, 20], [0, 20]]
    quads = [
        order_quad(np.array(q, np.float32))
        for q in (
            [[50, 52], [90, 52], [90, 60], [50, 60]],  # line 2
            [[60, 0], [90, 0], [90, 8], [60, 8]],  # line 1, right
            [[0, 4], [40, 4], [40, 12], [0, 12]],  # line 1, left (4 px lower)
        )
    ]
    assert reading_order(quads) == [2, 1, 0]


def test_crop_quad_is_upright_and_tall_crops_turn():
    image = np.zeros((100, 200, 3), np.uint8)
    image[10:30, 20:120] = 255
    crop = crop_quad(image, np.array([[20, 10], [120, 10], [120, 30], [20, 30]], np.float32))
    assert crop.shape[:2] == (20, 100) and crop.mean() > 200
    tall = crop_quad(image, np.array([[0, 0], [10, 0], [10, 60], [0, 60]], np.float32))
    assert tall.shape[:2] == (10, 60)


@pytest.mark.parametrize(
    ("listed", "classes", "expected"),
    [
        ("a\nb\nc", 5, ("", "a", "b", "c", " ")),  # PP-OCR: blank, the list, the space
        ("a\nb\nc", 4, ("", "a", "b", "c")),  # trained without use_space_char: no space class
        ("a\r\nb\r\nc\r\n", 5, ("", "a", "b", "c", " ")),  # CRLF line ends and a final one
        ("a\nb\nc\n", 5, ("", "a", "b", "c", " ")),  # a final line end adds no class
        ("a\n \nc", 5, ("", "a", " ", "c", " ")),  # a listed space stays where it is
    ],
)
def test_alphabet_matches_the_recognizer_classes(listed, classes, expected):
    rec = models.constant_head([1, 3, 48, 32], np.zeros((1, 4, classes), np.float32), "probs")
    rec.set_rt_info(listed, ["framework", "character"])
    characters = model_characters(rec)
    assert characters == expected and len(characters) == classes


def test_batches_share_a_request_only_at_the_same_width():
    crops = [np.zeros((h, w, 3), np.uint8) for h, w in [(24, 100), (48, 900), (24, 80), (10, 60), (48, 450)]]
    found = batches(crops, 48, 320, 3200, size=2, step=32)
    assert sorted(i for b in found for i in b.lines) == list(range(len(crops)))  # each crop once
    assert [(b.lines, b.pixels.shape) for b in found] == [
        ((0, 2), (2, 48, 320, 3)),  # 200 and 160 wide at height 48: both padded to 320
        ((3,), (1, 48, 320, 3)),  # 288 wide, padded to 320 too: a third in the batch exceeds size=2
        ((4,), (1, 48, 480, 3)),  # 450, rounded up to a multiple of 32
        ((1,), (1, 48, 928, 3)),
    ]
    crop = np.full((24, 100, 3), 7, np.uint8)
    alone, together = batches([crop], 48, 320, 3200, 6), batches([crop, crop], 48, 320, 3200, 6)
    np.testing.assert_array_equal(alone[0].pixels[0], together[0].pixels[1])  # same input either way


def test_generated_pages_are_deterministic():
    first, again = sample_pages(3, seed=7), [sample_page(i, seed=7) for i in range(3)]
    for a, b in zip(first, again, strict=True):
        assert a.lines == b.lines and a.upside_down == b.upside_down
        np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(sample_page(0, seed=8).image[:64], first[0].image[:64])
    assert all(p.image.shape[0] % 32 == 0 and p.image.shape[1] % 32 == 0 for p in first)


def test_ctc_decode_merges_repeats_and_drops_blanks():
    chars = ("", "a", "b", " ")
    ids = np.array([1, 1, 0, 1, 2, 2, 0, 0, 3, 1])
    scores = np.array([0.9, 0.8, 1, 0.7, 0.6, 0.5, 1, 1, 0.4, 0.3])
    text, score = ctc_decode(ids, scores, chars)
    assert text == "aab a"
    assert score == pytest.approx(np.mean([0.9, 0.7, 0.6, 0.4, 0.3]))
    assert ctc_decode(np.array([0, 0]), np.array([1.0, 1.0]), chars) == ("", 0.0)


@pytest.mark.parametrize("axis", [-1, 1])
async def test_best_class_head_matches_numpy(axis):
    probs = np.random.default_rng(0).integers(0, 4, (2, 6, 5)).astype(np.float32)  # many ties
    probs[1, 2] = np.nan  # broken scores: still a class id
    model = best_class_head(models.constant_head([1, 3, 4, 4], probs, "probs"), axis)
    async with aioinfer.load(model, config=models.EXACT) as m:
        out = await m.infer(np.zeros((1, 3, 4, 4), np.float32))
    ids, scores = out["ids"], out["scores"]
    assert ids.shape == scores.shape == tuple(np.delete(probs.shape, axis))
    assert ((ids >= 0) & (ids < probs.shape[axis])).all()
    finite = np.isfinite(probs).all(axis=axis)
    assert ids[finite].tolist() == probs.argmax(axis)[finite].tolist()  # ties: the lowest id
    np.testing.assert_array_equal(scores[finite], probs.max(axis)[finite])


def _upsampling_head(kernel: int = 2, stride: int = 2) -> ov.Model:
    """DB's head in small: two transposed convolutions (``kernel``, ``stride``) with a per-channel
    bias and ReLU, then a bias and sigmoid, on a [1, 4, 5, 6] input; seeded random weights."""
    rng = np.random.default_rng(7)
    x = ops.parameter([1, 4, 5, 6], ov.Type.f32, name="x")

    def up(source: ov.Node, cin: int, cout: int) -> ov.Node:
        weights = ops.constant(rng.standard_normal((cin, cout, kernel, kernel)).astype(np.float32))
        node = ops.convolution_backprop_data(
            source, weights, [stride, stride], pads_begin=[0, 0], pads_end=[0, 0], dilations=[1, 1]
        )
        return ops.add(node, ops.constant(rng.standard_normal((1, cout, 1, 1)).astype(np.float32)))

    y = ops.sigmoid(up(ops.relu(up(x, 4, 3)), 3, 1))
    y.output(0).get_tensor().set_names({"prob"})
    return ov.Model([y.output(0)], [x], "head")


def _run_exact(model: ov.Model, x: np.ndarray) -> np.ndarray:
    return ov.Core().compile_model(model, "CPU", models.EXACT)({0: x})[0]


def test_upsampling_as_conv_computes_the_same_map_without_transposed_convolutions():
    x = np.random.default_rng(0).standard_normal((1, 4, 5, 6)).astype(np.float32)
    expected = _run_exact(_upsampling_head(), x)
    rewritten = upsampling_as_conv(_upsampling_head())
    kinds = [node.get_type_name() for node in rewritten.get_ordered_ops()]
    assert "ConvolutionBackpropData" not in kinds
    assert kinds.count("DepthToSpace") == 2
    # the bias, ReLU and sigmoid moved before each DepthToSpace (where they fuse into the convolution)
    assert kinds[kinds.index("Relu") + 1] == kinds[-2] == "DepthToSpace"
    assert rewritten.output(0).get_names() == {"prob"}
    got = _run_exact(rewritten, x)
    assert got.shape == expected.shape == (1, 1, 20, 24)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_upsampling_as_conv_leaves_a_transposed_convolution_that_overlaps_as_it_is():
    kinds = [node.get_type_name() for node in upsampling_as_conv(_upsampling_head(3, 2)).get_ordered_ops()]
    assert kinds.count("ConvolutionBackpropData") == 2
    assert "DepthToSpace" not in kinds


def test_bundled_detector_streamlined_gives_the_same_probability_map():
    def detector() -> ov.Model:
        return embed_normalization(ov.Core().read_model(bundled_model("det")), _ocr.PPOCR_NORMALIZATION)

    image = sample_page(0).image[np.newaxis]
    streamlined = _ocr.streamlined("det", detector())
    assert "ConvolutionBackpropData" not in {node.get_type_name() for node in streamlined.get_ordered_ops()}
    np.testing.assert_allclose(_run_exact(streamlined, image), _run_exact(detector(), image), atol=1e-5)


@pytest.mark.parametrize(("role", "shape"), [("rec", [-1, 48, -1, 3]), ("cls", [-1, 48, 192, 3])])
def test_streamlined_fixes_the_input_sides_the_task_always_gives(role, shape):
    model = embed_normalization(ov.Core().read_model(bundled_model(role)), _ocr.PPOCR_NORMALIZATION)
    assert model.input(0).get_partial_shape().is_dynamic
    assert _ocr.streamlined(role, model).input(0).get_partial_shape() == ov.PartialShape(shape)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_failing_model_closes_the_ones_that_loaded(monkeypatch, anyio_backend):
    made = []
    real = _ocr.load_model

    async def spy(*args, **kwargs):
        made.append(await real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(_ocr, "load_model", spy)
    sources = {"det": bundled_model("det"), "rec": bundled_model("det"), "cls": bundled_model("cls")}
    with pytest.raises(aioinfer.ModelLoadError, match="no 'character' list"):  # a detector as recognizer
        await tasks.load(sources, task="ocr")
    assert len(made) == 2 and all(m.closed for m in made)  # det and cls compiled, then closed


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_reads_under_trio_and_a_failing_model_fails_the_call_with_its_own_error(anyio_backend):
    async with tasks.load(None, task="ocr") as ocr:
        image = render(LINES)[0]
        async with anyio.create_task_group() as group:  # two images at once, batches in flight
            texts: dict[int, list[str]] = {}

            async def read(i: int) -> None:
                texts[i] = (await ocr.predict(image)).texts

            for i in range(2):
                group.start_soon(read, i)
        assert texts == {0: LINES, 1: LINES}
        await ocr.models["rec"].aclose()
        with pytest.raises(aioinfer.ClosedError):  # as it is, not in an exception group
            await ocr.predict(image)
        assert ocr.stats().failed == 1


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_cancelled_load_closes_the_models_that_loaded(monkeypatch, anyio_backend):
    made = []
    real = _ocr.load_model

    async def spy(*args, **kwargs):  # calls through: the first model loads for real, then the caller gives up
        made.append(await real(*args, **kwargs))
        scope.cancel()
        return made[-1]

    monkeypatch.setattr(_ocr, "load_model", spy)
    with anyio.CancelScope() as scope:
        await tasks.load(None, task="ocr")
    assert scope.cancelled_caught
    assert made and all(m.closed for m in made)


@pytest.mark.anyio
async def test_all_in_order_gives_results_in_order_and_the_first_error_as_it_is():
    ran, ended = anyio.Event(), []

    async def waits_for(event: anyio.Event) -> str:
        try:
            await event.wait()
        except anyio.get_cancelled_exc_class():
            ended.append("cancelled")
            raise
        ended.append("finished")
        return "first"

    async def at_once(outcome: str | Exception) -> str:
        ran.set()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    in_order = await _ocr._all_in_order([lambda: waits_for(ran), lambda: at_once("second")], cancel_rest=True)
    assert in_order == ["first", "second"]  # in the order of the calls, not of their ends
    first, second = ValueError("first"), KeyError("second")
    never = anyio.Event()  # never set: a call waiting for it ends only when cancelled
    for cancel_rest, outcome in ((True, "cancelled"), (False, "finished")):
        ran = anyio.Event()  # set by the failing calls
        blocked_on = never if cancel_rest else ran
        ended.clear()
        calls = [lambda: at_once(first), functools.partial(waits_for, blocked_on), lambda: at_once(second)]
        with anyio.fail_after(30), pytest.raises(ValueError) as caught:
            await _ocr._all_in_order(calls, cancel_rest=cancel_rest)
        assert caught.value is first  # the first call's error itself, not an exception group
        assert ended == [outcome]  # the rest cancelled, or run to its end
