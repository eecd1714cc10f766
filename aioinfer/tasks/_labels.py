"""Class names from a labels file, a list, or the model's own runtime info."""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import openvino as ov
import yaml

from .._errors import SettingsError

LabelsSource = Union[Sequence[str], Mapping[int, str], str, "os.PathLike[str]", None]


def resolve_labels(source: LabelsSource, model: ov.Model | None = None) -> tuple[str, ...]:
    """Class names, by class id.

    ``source`` is a list, a ``{id: name}`` mapping, or a path: a ``.yaml``/``.yml``/``.json`` file
    holding either of those, or any other text file with one name per line. With ``source=None``
    the names come from the model's runtime info when present (OpenVINO Model API's
    ``model_info/labels``, or an ONNX ``names`` metadata entry as Ultralytics writes it), else ``()``.
    Raises :class:`SettingsError` for labels that cannot be read.
    """
    if source is None:
        return model_labels(model) if model is not None else ()
    if isinstance(source, (str, os.PathLike)):
        return _from_file(Path(source))
    return _from_value(source, "labels")


def model_labels(model: ov.Model) -> tuple[str, ...]:
    """Class names stored in the model's runtime info, or ``()``."""
    if model.has_rt_info(["model_info", "labels"]):
        return tuple(model.get_rt_info(["model_info", "labels"]).astype(str).split())
    for path in (["framework", "names"], ["names"]):
        if model.has_rt_info(path):
            try:
                return _from_value(ast.literal_eval(model.get_rt_info(path).astype(str)), "model names")
            except (ValueError, SyntaxError):  # SettingsError is a ValueError
                return ()
    return ()


def _from_file(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read labels file {str(path)!r}: {exc.strerror or exc}") from exc
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            return _from_value(yaml.safe_load(text), str(path))
        except yaml.YAMLError as exc:
            raise SettingsError(f"labels file {str(path)!r} is not valid YAML/JSON: {exc}") from exc
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _from_value(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, Mapping):
        try:
            by_id = {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise SettingsError(f"{where}: a labels mapping needs integer class ids as keys") from None
        if sorted(by_id) != list(range(len(by_id))):
            raise SettingsError(f"{where}: class ids must be 0..{len(by_id) - 1} without gaps")
        return tuple(by_id[i] for i in range(len(by_id)))
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return tuple(str(v) for v in value)
    raise SettingsError(f"{where}: expected a list of class names or a mapping of class id to name")
