"""``aioinfer bench`` end to end on a tiny exact model file: the table, its options, its errors."""

from __future__ import annotations

import models
import openvino as ov
import pytest

from aioinfer._cli import main

pytestmark = pytest.mark.timeout(120)
QUICK = ["--device", "CPU", "--rounds", "1", "--seconds", "0.05"]


@pytest.fixture
def linear_xml(tmp_path):
    path = tmp_path / "linear.xml"
    ov.save_model(models.linear([1, 4]), path)
    return path


def test_bench_prints_every_method_with_the_requests_and_hint_asked_for(linear_xml, capsys):
    assert main(["bench", str(linear_xml), *QUICK, "--num-requests", "3", "--hint", "latency"]) == 0
    out = capsys.readouterr().out
    assert "linear [1, 4]: " in out and ", 3 requests, LATENCY, " in out
    header, row = out.splitlines()[2:4]
    assert header.split()[:6] == ["model", "ms", "sync", "queue", "to_thread", "aioinfer"]
    assert row.startswith("linear") and row.count("/s") == 4
    assert "idle overhead" in out


def test_bench_takes_a_shape_for_a_dynamic_input_and_needs_one(tmp_path, capsys):
    dynamic = tmp_path / "dynamic.xml"
    ov.save_model(models.linear(), dynamic)  # [-1, 4]
    assert main(["bench", str(dynamic), *QUICK]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aioinfer bench: error: the model's input has a dynamic shape [?,4]")
    assert "--shape" in err and "Traceback" not in err
    assert main(["bench", str(dynamic), *QUICK, "--shape", "2,4"]) == 0
    assert "dynamic [2, 4]: " in capsys.readouterr().out


def test_a_missing_model_file_fails_in_one_line(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "nope.xml"), *QUICK]) == 1
    err = capsys.readouterr().err
    assert err == f"aioinfer bench: error: model not found: {str(tmp_path / 'nope.xml')!r}\n"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--rounds", "0"], "argument --rounds: expected an integer >= 1, got '0'"),
        (["--seconds", "nan"], "argument --seconds: expected a finite number > 0, got 'nan'"),
        (["--num-requests", "0"], "argument --num-requests: expected an integer >= 1, got '0'"),
        (["--hint", "fast"], "argument --hint: invalid choice: 'FAST'"),
        (["--shape", "1,x"], "argument --shape: expected a shape like 1,3,224,224, got '1,x'"),
    ],
)
def test_bad_options_are_usage_errors(linear_xml, capsys, flags, message):
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(linear_xml), *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"aioinfer bench: error: {message}" in err and "Traceback" not in err
