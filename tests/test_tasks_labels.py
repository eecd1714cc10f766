"""Class names from files, lists, mappings and the model's runtime info."""

from __future__ import annotations

import models
import pytest

import aioinfer
from aioinfer.tasks._labels import resolve_labels


def test_from_list_mapping_and_files(tmp_path):
    assert resolve_labels(["a", "b"]) == ("a", "b")
    assert resolve_labels({1: "b", 0: "a"}) == ("a", "b")
    (tmp_path / "l.txt").write_text("person\n\nbicycle \ncar\n")
    assert resolve_labels(tmp_path / "l.txt") == ("person", "bicycle", "car")
    (tmp_path / "l.yaml").write_text("0: cat\n1: dog\n")
    assert resolve_labels(str(tmp_path / "l.yaml")) == ("cat", "dog")
    (tmp_path / "l.json").write_text('["x", "y"]')
    assert resolve_labels(tmp_path / "l.json") == ("x", "y")


def test_from_model_runtime_info():
    model = models.linear()
    assert resolve_labels(None, model) == ()
    model.set_rt_info("{0: 'person', 1: 'car'}", ["framework", "names"])  # Ultralytics' ONNX metadata
    assert resolve_labels(None, model) == ("person", "car")
    model.set_rt_info("cat dog", ["model_info", "labels"])  # OpenVINO Model API, preferred
    assert resolve_labels(None, model) == ("cat", "dog")
    assert resolve_labels(["given"], model) == ("given",)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({0: "a", 2: "c"}, "without gaps"),
        ({"x": "a"}, "integer class ids"),
        (42, "expected a list"),
    ],
)
def test_bad_labels(value, message):
    with pytest.raises(aioinfer.SettingsError, match=message):
        resolve_labels(value)


def test_missing_labels_file(tmp_path):
    with pytest.raises(aioinfer.SettingsError, match=r"cannot read labels file.*nope\.txt"):
        resolve_labels(tmp_path / "nope.txt")
