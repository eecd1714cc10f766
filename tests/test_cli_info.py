"""``aioinfer info``: a model's inputs, outputs, precision, devices and requests, as text and JSON."""

from __future__ import annotations

import json

import models
import openvino as ov
import pytest

from aioinfer._cli import main

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def two_xml(tmp_path):
    path = tmp_path / "two.xml"
    ov.save_model(models.two_in_two_out(), path)
    return path


def test_info_as_json_says_what_the_model_takes_and_how_it_runs(two_xml, capsys):
    flags = ["--device", "CPU", "--num-requests", "3", "--config", "INFERENCE_PRECISION_HINT=f32"]
    assert main(["info", str(two_xml), *flags, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [(i["name"], i["shape"], i["element_type"]) for i in info["inputs"]] == [
        ("a", [2, 3], "f32"),
        ("b", [2, 3], "i32"),
    ]
    assert [(o["name"], o["shape"], o["element_type"]) for o in info["outputs"]] == [
        ("sum", [2, 3], "f32"),
        ("prod", [2, 3], "f32"),
    ]
    assert (info["device"], info["execution_devices"], info["num_requests"]) == ("CPU", ["CPU"], 3)
    assert info["precision"]["hint"] == "f32"
    assert "f32" in info["precision"]["runtime"] and "bf16" not in info["precision"]["runtime"]


def test_info_as_a_table_lines_up_its_columns(two_xml, capsys):
    assert main(["info", str(two_xml), "--device", "CPU", "--num-requests", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    summary = dict(line.split(None, 1) if " " in line else (line, "") for line in lines[:2])
    assert summary == {"model": "two_by_two", "device": "CPU"}
    assert "num_requests       2" in lines
    start = lines.index("inputs")
    header, a, b = lines[start + 1 : start + 4]
    assert header.split() == ["name", "shape", "element", "type"]
    assert a.split(None, 1)[0] == "a" and "[2, 3]" in a and a.endswith("f32")
    assert b.endswith("i32")
    column = header.index("shape")
    assert a.index("[2, 3]") == column and b.index("[2, 3]") == column
    assert "outputs" in lines


def test_info_of_a_dynamic_model_on_auto(tmp_path, capsys):
    path = tmp_path / "dynamic.xml"
    ov.save_model(models.dynamic_sum(), path)
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["device"] == "AUTO" and info["execution_devices"]  # the default device, as everywhere
    assert info["inputs"][0]["shape"] == [-1, -1] and info["num_requests"] >= 1


def test_info_reports_a_missing_model_in_one_line_and_needs_one(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.onnx")]) == 1
    assert capsys.readouterr().err.startswith("aioinfer info: error: model not found: ")
    with pytest.raises(SystemExit) as exc:
        main(["info"])
    assert exc.value.code == 2
    assert "aioinfer info: error: the following arguments are required: model" in capsys.readouterr().err


def test_info_precision_option_chooses_and_shows_the_precision_used(tmp_path, capsys):
    path = tmp_path / "conv.xml"
    ov.save_model(models.slow_conv(size=16, layers=1, channels=8), path)
    assert main(["info", str(path), "--device", "CPU", "--precision", "f32", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["precision"]["used"] == "f32" and "bf16" not in info["precision"]["runtime"]
    assert main(["info", str(path), "--device", "CPU", "--precision", "bf16"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("precision "))
    # bf16 where this CPU has it, else f32: what the nodes run in
    assert row.split()[1] == ("bf16" if "bf16" in _node_precisions(path) else "f32")


def _node_precisions(path) -> set[str]:
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    infos = [op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops()]
    return {info["runtimePrecision"].astype(str) for info in infos if "runtimePrecision" in info}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--precision", "f64"], "invalid choice: 'f64'"),
        (["--precision", "bf16", "--config", "INFERENCE_PRECISION_HINT=f32"], "conflicts with config"),
    ],
)
def test_info_refuses_a_bad_or_contradicting_precision(two_xml, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_:
        main(["info", str(two_xml), "--device", "CPU", *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
