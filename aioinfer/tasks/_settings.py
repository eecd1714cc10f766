"""Task settings: declared with their accepted values, validated on every change."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Union

import numpy as np
import yaml

from .._errors import SettingsError

SettingsSource = Union[Mapping[str, Any], str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Setting:
    """One setting: its default and what it accepts (a type, an inclusive range or a set of choices;
    ``at_most``: the name of another setting of the same task whose value this one may not exceed)."""

    default: Any
    low: float | None = None
    high: float | None = None
    choices: Sequence[Any] | None = None
    doc: str = ""
    at_most: str | None = None

    @property
    def kind(self) -> type:
        return type(self.default)

    def accepted(self) -> str:
        """Human-readable description of the accepted values."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind is bool:
            return "true or false"
        low = "-inf" if self.low is None else self.low
        high = "inf" if self.high is None else self.high
        bound = f", at most {self.at_most}" if self.at_most else ""
        return f"{'an integer' if self.kind is int else 'a number'} in [{low}, {high}]{bound}"

    def check(self, key: str, value: Any) -> Any:
        """``value`` converted to this setting's type, or :class:`SettingsError` naming ``key``."""
        if not self._accepts(value):
            raise SettingsError(f"setting {key!r}: {value!r} is not accepted; expected {self.accepted()}")
        if self.choices is not None or self.kind is bool:
            return bool(value) if self.kind is bool else value
        value = self.kind(value)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise SettingsError(f"setting {key!r}: {value!r} is out of range; expected {self.accepted()}")
        return value

    def _accepts(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        is_bool = isinstance(value, (bool, np.bool_))
        if self.kind is bool or is_bool:
            return self.kind is bool and is_bool
        if not isinstance(value, numbers.Real) or math.isnan(value):
            return False
        return self.kind is not int or float(value).is_integer()


class Settings:
    """The current values of a task's settings. Every change is validated whole before it applies,
    so a rejected change leaves the settings as they were."""

    def __init__(self, specs: Mapping[str, Setting], initial: SettingsSource | None = None) -> None:
        unknown = {s.at_most for s in specs.values() if s.at_most is not None} - set(specs)
        if unknown:
            raise ValueError(f"settings spec: at_most names settings it does not declare: {sorted(unknown)}")
        self._origin = specs
        self._specs = dict(specs)
        self.defaults: Mapping[str, Any] = MappingProxyType({k: s.default for k, s in self._specs.items()})
        self.values: Mapping[str, Any] = self.defaults
        if initial is not None:
            self.set(initial)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Change the given keys, keep the others."""
        self.values = self._merged(self.values, self._check(changes))

    def set(self, source: SettingsSource) -> None:
        """Reset to the defaults, then apply ``source`` (a mapping or a YAML file's path)."""
        if isinstance(source, CheckedSettings) and source.specs is self._origin:
            checked = dict(source)  # read and validated already, against these specs
        else:
            checked = self._check(read_settings(source))
        self.values = self._merged(self.defaults, checked)

    def _check(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        return {key: self._spec(key).check(key, value) for key, value in changes.items()}

    def _merged(self, base: Mapping[str, Any], checked: Mapping[str, Any]) -> Mapping[str, Any]:
        """``base`` with the ``checked`` changes, once every ``at_most`` between settings holds,
        else :class:`SettingsError` naming both settings."""
        values = {**base, **checked}
        for key, spec in self._specs.items():
            other = spec.at_most
            if other is not None and values[key] > values[other]:
                raise SettingsError(
                    f"setting {key!r}: {values[key]!r} exceeds setting {other!r} ({values[other]!r}); "
                    f"expected {key} <= {other}"
                )
        return MappingProxyType(values)

    def describe(self) -> dict[str, str]:
        """What each setting accepts, by key."""
        return {key: spec.accepted() for key, spec in self._specs.items()}

    def _spec(self, key: str) -> Setting:
        try:
            return self._specs[key]
        except KeyError:
            known = ", ".join(sorted(self._specs)) or "none"
            raise SettingsError(f"unknown setting {key!r}; known settings: {known}") from None


class CheckedSettings(dict[str, Any]):
    """Settings changes already read and validated against ``specs`` (see :func:`check_settings`):
    :class:`Settings` made with the same ``specs`` takes them as they are, without a second pass."""

    def __init__(self, specs: Mapping[str, Setting], values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self.specs = specs


def check_settings(specs: Mapping[str, Setting], source: SettingsSource | None) -> SettingsSource | None:
    """``source`` read (a YAML file is read here: call it off the event loop) and validated against
    ``specs`` once, as :class:`CheckedSettings`; ``None`` and settings checked already pass through.
    Raises :class:`SettingsError` like :meth:`Settings.set`."""
    if source is None or is_checked(source, specs):
        return source
    settings = Settings(specs)
    changes = settings._check(read_settings(source))
    settings._merged(settings.defaults, changes)  # the bounds between settings, as set() checks them
    return CheckedSettings(specs, changes)


def is_checked(source: SettingsSource | None, specs: Mapping[str, Setting]) -> bool:
    """Whether ``source`` was made by :func:`check_settings` for these ``specs``."""
    return isinstance(source, CheckedSettings) and source.specs is specs


def read_settings(source: SettingsSource) -> dict[str, Any]:
    """A settings mapping from a mapping or a YAML file (a top-level mapping)."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {str(path)!r}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {str(path)!r} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise SettingsError(f"settings file {str(path)!r} must hold a mapping of setting names to values")
    return dict(data)
