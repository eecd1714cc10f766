"""Task settings: defaults, updates, YAML/dict round trips, and rejection naming the key and range."""

from __future__ import annotations

import threading

import models
import numpy as np
import pytest
import yaml

import aioinfer
from aioinfer import tasks
from aioinfer.tasks import _settings
from aioinfer.tasks._settings import Setting, Settings

pytestmark = pytest.mark.anyio

SPECS = {
    "conf_threshold": Setting(0.25, 0.0, 1.0),
    "max_detections": Setting(300, 1, 1000),
    "class_agnostic": Setting(False),
    "mode": Setting("max", choices=("max", "min")),
}
DEFAULTS = {k: v.default for k, v in SPECS.items()}


def test_defaults_and_update():
    s = Settings(SPECS)
    assert dict(s.values) == {
        "conf_threshold": 0.25,
        "max_detections": 300,
        "class_agnostic": False,
        "mode": "max",
    }
    s.update({"conf_threshold": 1, "max_detections": 10.0, "class_agnostic": np.bool_(True)})
    assert s.values["class_agnostic"] is True
    s.update({"max_detections": np.int64(7)})
    assert s.values["max_detections"] == 7 and type(s.values["max_detections"]) is int
    s.update({"max_detections": 10.0})
    assert s.values["conf_threshold"] == 1.0 and isinstance(s.values["conf_threshold"], float)
    assert s.values["max_detections"] == 10 and isinstance(s.values["max_detections"], int)
    assert s.defaults["conf_threshold"] == 0.25
    with pytest.raises(TypeError):
        s.defaults["conf_threshold"] = 0.5  # read-only


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("conf_threshold", 1.5, r"'conf_threshold'.*out of range.*\[0.0, 1.0\]"),
        ("conf_threshold", "high", r"'conf_threshold'.*'high'.*a number in \[0.0, 1.0\]"),
        ("max_detections", 2.5, r"'max_detections'.*an integer in \[1, 1000\]"),
        ("max_detections", True, r"'max_detections'"),
        ("class_agnostic", 1, r"'class_agnostic'.*true or false"),
        ("conf_threshold", float("nan"), r"'conf_threshold'.*nan"),
        ("class_agnostic", None, r"'class_agnostic'.*None"),
        ("mode", "avg", r"'mode'.*one of 'max', 'min'"),
        ("iou", 0.5, r"unknown setting 'iou'; known settings: class_agnostic, conf_threshold"),
    ],
)
def test_invalid_values_are_rejected_with_the_key_named(key, value, message):
    s = Settings(SPECS)
    with pytest.raises(aioinfer.SettingsError, match=message):
        s.update({"conf_threshold": 0.5, key: value})
    assert s.values["conf_threshold"] == 0.25  # all or nothing


BOUNDED = {
    "side": Setting(960, 32, 4096, at_most="max_side"),
    "max_side": Setting(4096, 32, 4096),
}


def test_a_setting_bounded_by_another_is_checked_on_every_change(tmp_path):
    s = Settings(BOUNDED)
    assert s.describe()["side"] == "an integer in [32, 4096], at most max_side"
    s.update({"side": 2000, "max_side": 2000})  # both at once: checked together
    with pytest.raises(aioinfer.SettingsError, match=r"'side': 2000 exceeds setting 'max_side' \(1000\)"):
        s.update({"max_side": 1000})
    assert dict(s.values) == {"side": 2000, "max_side": 2000}  # all or nothing
    with pytest.raises(aioinfer.SettingsError, match="side <= max_side"):
        s.set({"max_side": 500})  # against the default side, 960
    (tmp_path / "s.yml").write_text("side: 3000\nmax_side: 2000\n")
    with pytest.raises(aioinfer.SettingsError, match="side <= max_side"):
        _settings.check_settings(BOUNDED, tmp_path / "s.yml")
    with pytest.raises(aioinfer.SettingsError, match="side <= max_side"):
        Settings(BOUNDED, {"side": 3000, "max_side": 2000})
    checked = _settings.check_settings(BOUNDED, {"max_side": 960})
    assert dict(Settings(BOUNDED, checked).values) == {"side": 960, "max_side": 960}


def test_a_bound_naming_an_undeclared_setting_is_a_spec_error():
    with pytest.raises(ValueError, match=r"at_most names settings it does not declare: \['limit'\]"):
        Settings({"side": Setting(1, 0, 10, at_most="limit")})


def test_yaml_and_dict_round_trip(tmp_path):
    s = Settings(SPECS)
    s.update({"conf_threshold": 0.4, "mode": "min"})
    path = tmp_path / "settings.yml"
    path.write_text(yaml.safe_dump(dict(s.values)))
    other = Settings(SPECS, path)
    assert dict(other.values) == dict(s.values)
    other.set({"max_detections": 5})  # set: defaults + these
    assert dict(other.values) == {**DEFAULTS, "max_detections": 5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("conf_threshold: [1, 2]\n", "conf_threshold"),
        ("- 1\n- 2\n", "must hold a mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_settings_files(tmp_path, text, message):
    path = tmp_path / "s.yml"
    path.write_text(text)
    with pytest.raises(aioinfer.SettingsError, match=message):
        Settings(SPECS, path)
    with pytest.raises(aioinfer.SettingsError, match="cannot read settings file"):
        Settings(SPECS, tmp_path / "missing.yml")


async def test_task_settings_surface(tmp_path):
    head = np.zeros((1, 6, 8), np.float32)
    async with tasks.load(
        models.constant_head([1, 3, 64, 64], head),
        task="detection",
        settings={"conf_threshold": 0.3},
        config=models.EXACT,
    ) as det:
        assert det.default_settings["conf_threshold"] == 0.25 and det.settings["conf_threshold"] == 0.3
        det.update_settings(conf_threshold=0.4)
        copy = det.settings
        copy["conf_threshold"] = 0.9  # a copy: changing it changes nothing
        assert det.settings["conf_threshold"] == 0.4
        (tmp_path / "s.yml").write_text("iou_threshold: 0.6\n")
        det.set_settings(tmp_path / "s.yml")
        assert det.settings == {**det.default_settings, "iou_threshold": 0.6}
        with pytest.raises(aioinfer.SettingsError, match=r"'iou_threshold'.*out of range"):
            det.update_settings(iou_threshold=2)
        assert det.describe_settings()["max_detections"] == "an integer in [1, 100000]"
        await det.predict(np.zeros((64, 64, 3), np.uint8))  # still works


async def test_bad_initial_settings_fail_before_loading():
    with pytest.raises(aioinfer.SettingsError, match="unknown setting 'conf'"):
        await tasks.load("does-not-exist.xml", task="detection", settings={"conf": 0.5})
    with pytest.raises(aioinfer.SettingsError, match=r"unknown task 'pose'.*classification, detection"):
        tasks.load("x.xml", task="pose")


async def test_an_initial_settings_file_is_read_once_off_the_loop(tmp_path, monkeypatch):
    reads = []
    real = _settings.read_settings

    def spy(source):
        reads.append((source, threading.get_ident()))
        return real(source)

    monkeypatch.setattr(_settings, "read_settings", spy)
    (tmp_path / "s.yml").write_text("conf_threshold: 0.4\n")
    async with tasks.load(
        models.constant_head([1, 3, 64, 64], np.zeros((1, 6, 8), np.float32)),
        task="detection",
        settings=tmp_path / "s.yml",
        config=models.EXACT,
    ) as det:
        assert det.settings == {**det.default_settings, "conf_threshold": 0.4}
    assert [source for source, _ in reads] == [tmp_path / "s.yml"]
    assert reads[0][1] != threading.get_ident()
