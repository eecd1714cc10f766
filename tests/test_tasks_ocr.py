"""OCR end to end on the real PP-OCR models of the rapidocr wheel, on text rendered with cv2.putText."""

from __future__ import annotations

import asyncio
import json

import cv2
import models
import numpy as np
import openvino as ov
import pytest
import pytest_asyncio

import aioinfer
from aioinfer import tasks
from aioinfer._bundled import bundled_model
from aioinfer.tasks import _ocr
from aioinfer.tasks._ocr import (
    crop_quad,
    ctc_decode,
    det_input_size,
    order_quad,
    reading_order,
    text_quads,
)
from aioinfer.tasks._preprocess import best_class_head

module_loop = pytest.mark.asyncio(loop_scope="module")  # share the loaded models across tests

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


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ocr():
    async with tasks.load(None, task="ocr") as task:
        yield task


@module_loop
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


@module_loop
async def test_lines_of_many_images_concurrently(ocr):
    images = [render([text])[0] for text in LINES]
    preds = await asyncio.gather(*(ocr.predict(img) for img in images))
    assert [p.texts for p in preds] == [[t] for t in LINES]


@module_loop
async def test_upside_down_line_is_turned_by_the_classifier(ocr):
    image, _ = render([LINES[1]], scale=1.2)
    upside_down = cv2.rotate(image, cv2.ROTATE_180)
    assert (await ocr.predict(upside_down)).texts == [LINES[1]]
    ocr.update_settings(use_cls=False)
    try:
        assert (await ocr.predict(upside_down)).texts != [LINES[1]]
    finally:
        ocr.set_settings({})


@module_loop
async def test_blank_image_has_no_lines(ocr):
    pred = await ocr.predict(np.full((120, 300, 3), 255, np.uint8))
    assert pred.lines == () and pred.to_dict()["lines"] == []


@module_loop
async def test_every_crop_is_recognized_concurrently(ocr):
    # a spy around the real recognizer's infer (not a mock: it calls through) counts callers in flight
    rec = ocr.models["rec"]
    real, in_flight, peak = rec.infer, 0, 0

    async def spy(x, **kw):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await real(x, **kw)
        finally:
            in_flight -= 1

    rec.infer = spy
    try:
        pred = await ocr.predict(render(LINES)[0])
    finally:
        del rec.infer
    assert pred.texts == LINES
    assert peak == len(LINES)


@module_loop
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


@module_loop
async def test_alphabet_comes_from_the_recognizer_metadata(ocr):
    classes = ov.Core().read_model(bundled_model("rec")).output(0).get_partial_shape()[-1].get_length()
    assert len(ocr.characters) == classes == 18710
    assert [o.name for o in ocr.models["rec"].info.outputs] == ["scores", "ids"]  # arg-max in the graph
    assert ocr.characters[0] == "" and ocr.characters[-1] == " "
    assert {"A", "z", "0", ":", "-", "."} <= set(ocr.characters)


@module_loop
async def test_bad_image_fails_only_that_call(ocr):
    with pytest.raises(aioinfer.InputDtypeError, match="uint8"):
        await ocr.predict(np.zeros((50, 50, 3), np.float32))
    with pytest.raises(aioinfer.InputShapeError, match="HxWx3"):
        await ocr.predict(np.zeros((50, 50, 2), np.uint8))
    with pytest.raises(aioinfer.InputDtypeError, match="numpy array"):
        await ocr.predict("page.png")
    assert (await ocr.predict(render([LINES[0]])[0])).texts == [LINES[0]]


@module_loop
async def test_grey_image_is_accepted(ocr):
    image, _ = render([LINES[2]])
    assert (await ocr.predict(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))).texts == [LINES[2]]


@module_loop
async def test_text_score_setting_filters_lines(ocr):
    image, _ = render([LINES[0]])
    ocr.update_settings(text_score=1.0)
    try:
        assert (await ocr.predict(image)).lines == ()
    finally:
        ocr.set_settings({})
    assert ocr.settings == dict(ocr.default_settings)


@module_loop
async def test_info_and_stage_latencies(ocr):
    info = ocr.info.to_dict()
    assert info["task"] == "ocr" and set(info["models"]) == {"det", "rec", "cls"}
    json.dumps(info)
    assert (await ocr.predict(render(LINES)[0])).texts == LINES  # its own prediction: runs alone too
    stages = ocr.stage_ms()
    assert {"pre_process", "det", "boxes", "rec", "post_process"} <= set(stages)
    assert set(stages) == {"pre_process", "forward", "det", "boxes", "cls", "rec_pre", "rec", "post_process"}
    assert all(s.p50 is not None and s.p50 >= 0 for s in stages.values())
    for name, s in stages.items():
        assert s.p50 is not None and s.p95 is not None and s.p99 is not None, name
        assert 0 <= s.p50 <= s.p95 <= s.p99 < 60_000, name
    # every forward records det, then rec: each forward takes longer than its det or its rec
    assert stages["forward"].p50 > max(stages["det"].p50, stages["rec"].p50)


@module_loop
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


def test_ctc_decode_merges_repeats_and_drops_blanks():
    chars = ("", "a", "b", " ")
    ids = np.array([1, 1, 0, 1, 2, 2, 0, 0, 3, 1])
    scores = np.array([0.9, 0.8, 1, 0.7, 0.6, 0.5, 1, 1, 0.4, 0.3])
    text, score = ctc_decode(ids, scores, chars)
    assert text == "aab a"
    assert score == pytest.approx(np.mean([0.9, 0.7, 0.6, 0.4, 0.3]))
    assert ctc_decode(np.array([0, 0]), np.array([1.0, 1.0]), chars) == ("", 0.0)


async def test_best_class_head_matches_numpy():
    probs = np.random.default_rng(0).random((1, 6, 5)).astype(np.float32)
    model = best_class_head(models.constant_head([1, 3, 4, 4], probs, "probs"))
    async with aioinfer.load(model, config=models.EXACT) as m:
        out = await m.infer(np.zeros((1, 3, 4, 4), np.float32))
    assert out["ids"].tolist() == probs.argmax(-1).tolist()
    np.testing.assert_array_equal(out["scores"], probs.max(-1))


async def test_a_failing_model_closes_the_ones_that_loaded(monkeypatch):
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
