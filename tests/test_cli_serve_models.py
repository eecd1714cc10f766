"""``aioinfer serve MODEL...``: which models are served under which names (no model is loaded)."""

from __future__ import annotations

import pytest

from aioinfer._cli import UsageError
from aioinfer._cli.serve import model_paths


def test_paths_names_and_folders(tmp_path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    for name in ("b.onnx", "a.xml", "a.bin", "notes.txt"):
        (folder / name).write_bytes(b"")
    got = model_paths([str(tmp_path / "det.xml"), f"rec={tmp_path / 'x.onnx'}", str(folder)])
    assert got == {
        "det": str(tmp_path / "det.xml"),
        "rec": str(tmp_path / "x.onnx"),
        "a": str(folder / "a.xml"),  # every model file in the folder, by stem, sorted; not .bin or .txt
        "b": str(folder / "b.onnx"),
    }


@pytest.mark.parametrize(
    ("specs", "says"),
    [
        (["m/a.xml", "n/a.onnx"], "two models named 'a'"),
        (["x=a.xml", "x=b.xml"], "two models named 'x'"),
        (["=a.xml"], "must be non-empty"),
    ],
)
def test_clashing_or_empty_names_are_usage_errors(specs, says):
    with pytest.raises(UsageError, match=says):
        model_paths(specs)


def test_a_folder_without_models_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no model files"):
        model_paths([str(tmp_path)])
