"""``aioinfer run`` end to end: real model files, real videos, real output files."""

from __future__ import annotations

import argparse
import json
import re

import cv2
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from models import decode_index, frame_index, frame_probe, indexed_frame, linear, write_indexed_video

from aioinfer._cli import build_parser, main, parse_source, positive
from aioinfer._map import MapResult
from aioinfer._pipeline import Step

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def probe_xml(tmp_path):
    path = tmp_path / "probe.xml"
    ov.save_model(frame_probe(), path)
    return path


@pytest.fixture
def video(tmp_path):
    return write_indexed_video(tmp_path / "clip.avi", 30, fps=10.0)


def read_video(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_outputs_and_frames_of_the_selected_frames(tmp_path, probe_xml, video, capsys):
    out, preds = tmp_path / "out.avi", tmp_path / "preds.jsonl"
    argv = ["run", str(probe_xml), str(video), "-o", str(out), "--jsonl", str(preds), "--device", "CPU"]
    selection = ["--start", "4", "--count", "8", "--step", "3"]
    assert main([*argv, *selection, "--num-requests", "2", "--max-in-flight", "3"]) == 0
    expected = [4, 7, 10, 13, 16, 19, 22, 25]
    records = read_jsonl(preds)
    assert [r["index"] for r in records] == expected
    assert [r["timestamp_ms"] for r in records] == [i * 100.0 for i in expected]
    means = records[0]["outputs"]["means"]
    assert means["shape"] == [64] and means["dtype"] == "float32"
    assert [decode_index(np.array(r["outputs"]["means"]["values"])) for r in records] == expected
    assert [frame_index(f) for f in read_video(out)] == expected
    err = capsys.readouterr().err
    assert "8/8" in err and "8 frames in" in err


def test_run_backward_over_an_image_folder(tmp_path, probe_xml, capsys):
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), indexed_frame(i))
    preds = tmp_path / "p.jsonl"
    argv = [
        "run",
        str(probe_xml),
        str(tmp_path),
        "--jsonl",
        str(preds),
        "--backward",
        "--no-progress",
        "--device",
        "CPU",
    ]
    assert main(argv) == 0
    assert [r["index"] for r in read_jsonl(preds)] == [4, 3, 2, 1, 0]
    assert "/5" not in capsys.readouterr().err  # no progress bar


def test_run_resizes_frames_for_an_nchw_model(tmp_path, video):
    x = ops.parameter([1, 3, 16, 16], np.float32, name="x")
    mean = ops.reduce_mean(x, ops.constant(np.array([1, 2, 3], np.int64)), keep_dims=False)
    model = tmp_path / "nchw.xml"
    ov.save_model(ov.Model([mean.output(0)], [x], "nchw"), model)
    preds = tmp_path / "p.jsonl"
    assert (
        main(
            [
                "run",
                str(model),
                str(video),
                "--jsonl",
                str(preds),
                "--count",
                "3",
                "--no-progress",
                "--device",
                "CPU",
            ]
        )
        == 0
    )
    records = read_jsonl(preds)
    assert len(records) == 3
    (name,) = records[0]["outputs"]
    expected = [float(cv2.resize(indexed_frame(i), (16, 16)).mean()) for i in range(3)]
    got = [r["outputs"][name]["values"][0] for r in records]
    assert np.allclose(got, expected, atol=2.0)  # the video is JPEG-compressed


def test_run_with_a_task_writes_predictions_and_annotated_frames(tmp_path, video):
    x = ops.parameter([1, 3, 32, 32], np.float32, name="x")
    logits = ops.reduce_mean(x, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)
    model = tmp_path / "cls.xml"
    ov.save_model(ov.Model([logits.output(0)], [x], "cls"), model)
    labels = tmp_path / "labels.txt"
    labels.write_text("blue\ngreen\nred\n")
    out, preds = tmp_path / "out.mp4", tmp_path / "p.jsonl"
    argv = ["run", str(model), str(video), "--task", "classification", "--labels", str(labels)]
    assert (
        main(
            [*argv, "-o", str(out), "--jsonl", str(preds), "--count", "5", "--no-progress", "--device", "CPU"]
        )
        == 0
    )
    records = read_jsonl(preds)
    assert [r["index"] for r in records] == list(range(5))
    assert {c["label"] for c in records[0]["prediction"]["classes"]} == {"blue", "green", "red"}
    frames = read_video(out)
    assert len(frames) == 5 and frames[0].shape == (48, 64, 3)


def test_run_reports_a_missing_source_and_an_unusable_model(tmp_path, probe_xml, video, capsys):
    assert main(["run", str(probe_xml), str(tmp_path / "nope.mp4"), "--device", "CPU"]) == 1
    assert "nope.mp4" in capsys.readouterr().err
    model = tmp_path / "linear.xml"
    ov.save_model(linear(), model)
    assert main(["run", str(model), str(video), "--device", "CPU", "--no-progress"]) == 1
    assert "aioinfer run: error: cannot feed images to input 'x'" in capsys.readouterr().err


def test_run_rejects_bad_numbers(probe_xml, video, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", str(probe_xml), str(video), "--step", "0"])
    assert exc.value.code == 2
    assert "expected an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--step", "abc"], "expected an integer, got 'abc'"),
        (["--start", "-1"], "expected an integer >= 0, got '-1'"),
        (["--count", "1.5"], "expected an integer, got '1.5'"),
        (["--max-in-flight", "0"], "expected an integer >= 1, got '0'"),
    ],
)
def test_run_rejects_bad_numbers_saying_what_it_expected(probe_xml, video, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["run", str(probe_xml), str(video), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_run_accepts_zero_start_and_count(tmp_path, probe_xml, video):
    preds = tmp_path / "p.jsonl"
    argv = ["run", str(probe_xml), str(video), "--jsonl", str(preds), "--no-progress", "--device", "CPU"]
    assert main([*argv, "--start", "0", "--count", "0"]) == 0
    assert read_jsonl(preds) == []


def test_one_integer_parser_and_one_source_parser_for_every_command():
    assert positive(int)("3") == 3 and positive(int, zero=True)("0") == 0
    assert positive(float)("0.5") == 0.5 and positive(float, zero=True)("0") == 0.0
    for parse, text, message in [
        (positive(int), "0", "expected an integer >= 1, got '0'"),
        (positive(int), "x", "expected an integer, got 'x'"),
        (positive(float), "0", "expected a number > 0, got '0'"),
        (positive(float, zero=True), "-1", "expected a number >= 0, got '-1'"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
            parse(text)
    assert parse_source("0") == 0 and parse_source("12") == 12
    assert parse_source("clip.mp4") == "clip.mp4" and parse_source("rtsp://cam/1") == "rtsp://cam/1"
    assert build_parser().parse_args(["demo", "--source", "2"]).source == "2"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--frames", "many"])  # a usage error, not a traceback


def test_jsonl_record_of_a_task_holds_the_prediction_itself():
    class Prediction:
        def to_dict(self):
            raise AssertionError("converted on the event loop")

    prediction = Prediction()
    step = Step(model=None, predict=None, task=object())  # type: ignore[arg-type]
    record = step.record(MapResult(3, 40.0, None, prediction))
    assert record == {"index": 3, "timestamp_ms": 40.0, "prediction": prediction}


def test_run_ocr_on_the_bundled_models_needs_no_model_path(tmp_path, capsys):
    video = tmp_path / "text.avi"
    frame = np.full((96, 320, 3), 255, np.uint8)
    cv2.putText(frame, "hello world", (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 96))
    for _ in range(2):
        writer.write(frame)
    writer.release()
    jsonl = tmp_path / "ocr.jsonl"
    args = ["run", "--task", "ocr", str(video), "--jsonl", str(jsonl), "--device", "CPU", "--no-progress"]
    assert main(args) == 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [[t["text"] for t in rec["prediction"]["lines"]] for rec in lines] == [["hello world"]] * 2


@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_missing_model_is_a_usage_error(video, capsys, command):
    source = [str(video)] if command == "run" else []
    with pytest.raises(SystemExit) as exc:
        main([command, *source, "--device", "CPU"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: aioinfer ")
    assert f"aioinfer {command}: error: MODEL is required (only --task ocr has bundled models)" in err
