"""Detection decoding against hand-computed boxes: crafted YOLOv8-style and SSD-style heads, both
as plain arrays and emitted by tiny OpenVINO models run through the whole task."""

from __future__ import annotations

import json

import models
import numpy as np
import pytest

import aioinfer
from aioinfer import tasks
from aioinfer.tasks import _image_task
from aioinfer.tasks._detection import decode_ssd, decode_yolo, head_of, yolo_channels_first

pytestmark = pytest.mark.anyio


def yolo_head() -> np.ndarray:
    """[1, 4+2, 8] in a 320x320 input: (cx, cy, w, h, score class 0, score class 1) per anchor."""
    anchors = [
        (100, 100, 40, 20, 0.9, 0.1),  # box (80, 90, 120, 110), class 0
        (102, 100, 40, 20, 0.8, 0.0),  # IoU 0.905 with the first, same class: suppressed
        (100, 100, 40, 20, 0.0, 0.7),  # the first box again, class 1: kept unless class-agnostic
        (200, 200, 10, 10, 0.1, 0.2),  # below conf_threshold
    ] + [(0, 0, 0, 0, 0, 0)] * 4
    return np.array(anchors, np.float32).T[np.newaxis]


def ssd_head() -> np.ndarray:
    rows = [
        (0, 1, 0.9, 0.1, 0.2, 0.5, 0.6),
        (0, 2, 0.3, 0.0, 0.0, 0.25, 0.25),
        (0, 3, 0.1, 0.0, 0.0, 1.0, 1.0),  # below conf_threshold
        (-1, 0, 0, 0, 0, 0, 0),  # end of detections
        (0, 1, 0.99, 0.0, 0.0, 1.0, 1.0),  # after the end: padding, ignored
    ]
    return np.array(rows, np.float32).reshape(1, 1, -1, 7)


def test_decode_yolo_both_layouts():
    boxes, scores, ids = decode_yolo(yolo_head()[0], 0.25)
    assert boxes.tolist() == [[80, 90, 120, 110], [82, 90, 122, 110], [80, 90, 120, 110]]
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.7]) and ids.tolist() == [0, 0, 1]
    transposed = decode_yolo(yolo_head()[0].T, 0.25, num_classes=2)
    assert transposed[0].tolist() == boxes.tolist()


def test_yolo_layout_from_the_output_shape():
    assert yolo_channels_first((1, 84, 8400)) is True and yolo_channels_first((1, 8400, 84)) is False
    assert yolo_channels_first((1, 6, 8), num_classes=2) is True
    assert yolo_channels_first((1, 8, 6), num_classes=2) is False
    assert yolo_channels_first((1, 6, -1), num_classes=2) is True  # the class axis is known
    assert yolo_channels_first((1, -1, 6), num_classes=2) is False
    assert yolo_channels_first((1, 84, -1)) is None  # undecided: per output
    transposed = decode_yolo(yolo_head()[0].T, 0.25, channels_first=False)
    assert transposed[0].tolist() == decode_yolo(yolo_head()[0], 0.25, channels_first=True)[0].tolist()


def test_decode_ssd_stops_at_the_end_marker():
    boxes, scores, ids = decode_ssd(ssd_head(), (300, 400), 0.25)
    np.testing.assert_allclose(boxes, [[40, 60, 200, 180], [0, 0, 100, 75]], rtol=1e-6)
    assert scores.tolist() == pytest.approx([0.9, 0.3]) and ids.tolist() == [1, 2]


def test_head_layout_from_output_shape():
    assert head_of((1, 1, 100, 7)) == "ssd" and head_of((1, 84, 8400)) == "yolo"
    with pytest.raises(aioinfer.ModelLoadError, match=r"\[1, 10\]"):
        head_of((1, 10))


async def test_yolo_task_letterbox_maps_back_and_nms(tmp_path):
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    model = models.constant_head([1, 3, 320, 320], yolo_head())
    async with tasks.load(
        model, task="detection", labels=tmp_path / "labels.txt", config=models.EXACT
    ) as det:
        assert det.head == "yolo" and det.input_size == (320, 320) and det.labels == ("cat", "dog")
        image = np.zeros((480, 640, 3), np.uint8)  # letterbox: scale 0.5, 320x240 + 40 px top and bottom
        pred = await det.predict(image)
        expected = (160.0, 100.0, 240.0, 140.0)
        assert [(o.label, o.label_id, round(o.score, 5), o.box) for o in pred.objects] == [
            ("cat", 0, 0.9, expected),
            ("dog", 1, 0.7, expected),
        ]
        det.update_settings(class_agnostic=True)
        assert [o.label for o in (await det.predict(image)).objects] == ["cat"]
        det.update_settings(class_agnostic=False, iou_threshold=0.95)
        assert [o.score for o in (await det.predict(image)).objects] == pytest.approx([0.9, 0.8, 0.7])
        det.update_settings(conf_threshold=0.85)
        assert len((await det.predict(image)).objects) == 1
        det.update_settings(conf_threshold=0.05, max_detections=2)
        assert len((await det.predict(image)).objects) == 2
        data = json.loads(json.dumps(pred.to_dict()))
        assert data["objects"][0] == {
            "label": "cat",
            "label_id": 0,
            "score": 0.9,
            "box": [160.0, 100.0, 240.0, 140.0],
        }


async def test_ssd_task_stretches_and_clips():
    model = models.constant_head([1, 3, 300, 300], ssd_head())
    async with tasks.load(
        model, task="detection", labels=["bg", "person", "car", "bus"], config=models.EXACT
    ) as det:
        assert det.head == "ssd"
        pred = await det.predict(np.zeros((400, 600, 3), np.uint8))
        assert [(o.label, o.box) for o in pred.objects] == [
            ("person", pytest.approx((60.0, 80.0, 300.0, 240.0))),
            ("car", pytest.approx((0.0, 0.0, 150.0, 100.0))),
        ]
        assert pred.image_size == (400, 600)


async def test_unknown_head_or_wrong_labels_are_rejected_at_load():
    with pytest.raises(aioinfer.ModelLoadError, match="unsupported detection output"):
        await tasks.load(models.constant_head([1, 3, 32, 32], np.zeros((1, 10))), task="detection")
    with pytest.raises(aioinfer.SettingsError, match=r"labels: 3 names, but the model's output \[1, 6, 8\]"):
        await tasks.load(
            models.constant_head([1, 3, 32, 32], yolo_head()), task="detection", labels=["a", "b", "c"]
        )


@pytest.mark.parametrize("normalization", [None, tasks.Normalization()], ids=["default", "given"])
async def test_unsupported_head_is_rejected_before_compiling(monkeypatch, normalization):
    async def no_compile(*args, **kwargs):
        raise AssertionError("compiled a model with an unsupported head")

    monkeypatch.setattr(_image_task, "load_model", no_compile)
    with pytest.raises(aioinfer.ModelLoadError, match=r"unsupported detection output shape \[1, 10\]"):
        await tasks.load(
            models.constant_head([1, 3, 32, 32], np.zeros((1, 10))),
            task="detection",
            normalization=normalization,
        )


@pytest.mark.parametrize("channels_first", [True, False], ids=["4+C-first", "anchors-first"])
async def test_yolo_layout_is_decided_once_at_load(channels_first):
    head = yolo_head() if channels_first else yolo_head().transpose(0, 2, 1)
    model = models.constant_head([1, 3, 320, 320], head)
    async with tasks.load(model, task="detection", labels=["cat", "dog"], config=models.EXACT) as det:
        assert det._channels_first is channels_first
        pred = await det.predict(np.zeros((480, 640, 3), np.uint8))
        expected = (160.0, 100.0, 240.0, 140.0)
        assert [(o.label, o.box) for o in pred.objects] == [("cat", expected), ("dog", expected)]


async def test_dynamic_input_uses_input_size():
    model = models.constant_head([1, 3, -1, -1], yolo_head())
    async with tasks.load(model, task="detection", input_size=(320, 320), config=models.EXACT) as det:
        pred = await det.predict(np.zeros((480, 640, 3), np.uint8))
        assert pred.objects[0].box == (160.0, 100.0, 240.0, 140.0) and pred.objects[0].label == "0"
    with pytest.raises(aioinfer.SettingsError, match="does not match the model's fixed input size"):
        await tasks.load(
            models.constant_head([1, 3, 320, 320], yolo_head()), task="detection", input_size=640
        )


async def test_map_streams_predictions_in_order():
    model = models.constant_head([1, 3, 320, 320], yolo_head())
    async with tasks.load(model, task="detection", config=models.EXACT) as det:
        images = [np.zeros((480, 640, 3), np.uint8), np.zeros((240, 320, 3), np.uint8)]
        results = [r async for r in det.map(images, max_in_flight=2)]
        assert [r.index for r in results] == [0, 1]
        assert results[1].output.objects[0].box == (80.0, 50.0, 120.0, 70.0)  # 1:1 scale, 40 px pad


async def test_reshape_applies_to_the_models_own_layout():
    model = models.constant_head([1, 3, -1, -1], yolo_head())
    async with tasks.load(model, task="detection", reshape=[1, 3, 320, 320], config=models.EXACT) as det:
        assert det.input_size == (320, 320)
        assert det.model.info.inputs[0].shape == (1, 320, 320, 3)  # u8 NHWC after the built-in normalization
        assert (await det.predict(np.zeros((480, 640, 3), np.uint8))).objects[0].box == (
            160.0,
            100.0,
            240.0,
            140.0,
        )


def one_box_head(box: tuple[float, float, float, float]) -> np.ndarray:
    """[1, 4+1, 8]: one box (x1, y1, x2, y2 in input pixels) of class 0 with score 0.9, empty anchors."""
    x1, y1, x2, y2 = box
    anchors = [((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, 0.9)] + [(0, 0, 0, 0, 0)] * 7
    return np.array(anchors, np.float32).T[np.newaxis]


@pytest.mark.parametrize("image_size", [(200, 500), (500, 200)])
async def test_letterbox_settings_map_a_known_input_box_back_to_image_pixels(image_size):
    # where the 64x64 input holds the image (x1, y1, x2, y2), by hand, for each mode; the box
    # (20, 20, 25, 25) lies inside the image in every mode
    wide = image_size == (200, 500)
    placed = {
        ("center", "resize-then-pad"): (0, 19, 64, 45),  # 64x26 (25.6 rounded), 38 px of padding
        ("top-left", "resize-then-pad"): (0, 0, 64, 26),
        ("center", "pad-then-resize"): (0, 150 * 0.128, 64, 350 * 0.128),  # 500x500, then x0.128
        ("top-left", "pad-then-resize"): (0, 0, 64, 200 * 0.128),
    }
    model = models.constant_head([1, 3, 64, 64], one_box_head((20, 20, 25, 25)))
    h, w = image_size
    image = np.zeros((h, w, 3), np.uint8)
    async with tasks.load(model, task="detection", config=models.EXACT) as det:
        for (align, order), rect in placed.items():
            x1, y1, x2, y2 = rect if wide else (rect[1], rect[0], rect[3], rect[2])
            det.update_settings(pad_align=align, pad_order=order, pad_value=0)
            (found,) = (await det.predict(image)).objects
            sx, sy = w / (x2 - x1), h / (y2 - y1)
            expected = ((20 - x1) * sx, (20 - y1) * sy, (25 - x1) * sx, (25 - y1) * sy)
            assert found.box == pytest.approx(expected, abs=1e-3), (align, order)


async def test_letterbox_pad_value_reaches_the_model():
    # channel means of the input: the padding's value shows in them (RGB scaled to [0, 1])
    async with tasks.load(
        models.constant_head([1, 3, 32, 32], one_box_head((1, 1, 2, 2))), task="detection"
    ) as det:
        image = np.full((10, 40, 3), 255, np.uint8)
        for pad in (0, 114, 255):
            det.update_settings(pad_value=pad)
            batch, _ = det.pre_process(image)
            assert batch.shape == (1, 32, 32, 3)
            assert (batch[0, 0] == pad).all() and (batch[0, 16] == 255).all()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"pad_align": "middle"},
            "setting 'pad_align': 'middle' is not accepted; expected one of 'center', 'top-left'",
        ),
        ({"pad_order": "pad"}, "expected one of 'resize-then-pad', 'pad-then-resize'"),
        ({"pad_value": 256}, r"setting 'pad_value': 256 is out of range; expected an integer in \[0, 255\]"),
        ({"pad_value": 1.5}, "setting 'pad_value': 1.5 is not accepted"),
    ],
)
async def test_bad_letterbox_settings_name_what_is_accepted(settings, message):
    with pytest.raises(aioinfer.SettingsError, match=message):
        await tasks.load(
            models.constant_head([1, 3, 32, 32], yolo_head()), task="detection", settings=settings
        )


@pytest.mark.parametrize("precision", ["f32", "bf16"])
async def test_task_info_reports_the_precision_used(precision):
    async with tasks.load(
        models.constant_head([1, 3, 32, 32], yolo_head()), task="detection", device="CPU", precision=precision
    ) as det:
        used = det.model.info.precision
        assert det.info.precision == used == det.info.models[next(iter(det.info.models))].precision
        assert det.info.to_dict()["precision"] == used
        assert used == "f32" if precision == "f32" else used in ("bf16", "f32")


async def test_a_loaded_model_detects_as_the_same_model_loaded_by_the_task():
    image = np.zeros((480, 640, 3), np.uint8)
    head = models.constant_head([1, 3, 320, 320], yolo_head())
    async with tasks.load(head, task="detection", labels=["cat", "dog"], config=models.EXACT) as det:
        want = await det.predict(image)
    model = await aioinfer.load(head, device="CPU", config=models.EXACT)
    async with tasks.load(model, task="detection", labels=["cat", "dog"]) as det:
        assert det.head == "yolo" and det.input_size == (320, 320)
        assert det.model.info.inputs[0].shape == (1, 3, 320, 320)  # float pixels, scaled in Python
        got = await det.predict(image)
    assert got == want and len(got.objects) == 2
