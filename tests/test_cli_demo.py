"""``aioinfer demo`` end to end: generated video → async OCR → annotated video + JSON Lines."""

from __future__ import annotations

import json

import cv2

from aioinfer._cli import main
from aioinfer._demo import demo_lines, exact_matches, render_frame, write_demo_video


def _frame_count(path) -> int:
    cap = cv2.VideoCapture(str(path))
    try:
        count = 0
        while cap.read()[0]:
            count += 1
        return count
    finally:
        cap.release()


def test_demo_runs_to_completion_and_its_outputs_parse(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--frames", "6", "--output-dir", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "frames/s" in printed and "rec" in printed and "det" in printed
    assert "lines read exactly: 24/24 (100.0%)" in printed  # 4 known lines per frame, clean renders

    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(6))  # the records of `aioinfer run --task ocr`
    assert [ln["text"] for ln in records[5]["prediction"]["lines"]] == demo_lines(5)
    assert records[0]["prediction"]["image_size"] == {"width": 640, "height": 360}
    assert _frame_count(out / "annotated.mp4") == 6
    assert _frame_count(out / "demo-input.mp4") == 6


def test_demo_on_a_users_video(tmp_path, capsys):
    video = write_demo_video(tmp_path / "mine.avi", frames=3)
    out = tmp_path / "out"
    assert main(["demo", "--source", str(video), "--output-dir", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "read 3 frames" in printed and "lines read exactly" not in printed  # no known text
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 3 and records[2]["prediction"]["lines"][-1]["text"] == "frame 0002"
    assert not (out / "demo-input.mp4").exists()


def test_demo_reports_a_missing_source(tmp_path, capsys):
    assert (
        main(["demo", "--source", str(tmp_path / "nope.mp4"), "--output-dir", str(tmp_path), "--no-progress"])
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("aioinfer demo: error: ") and "nope.mp4" in err and "Traceback" not in err


def test_demo_frames_move_and_stay_known():
    first, later = render_frame(0), render_frame(5)
    assert first.shape == (360, 640, 3) and not (first == later).all()
    assert demo_lines(7)[-1] == "frame 0007"
    assert exact_matches(["a", "b", "b"], ["b", "a", "c", "b", "b"]) == 3
