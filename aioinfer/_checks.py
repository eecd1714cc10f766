"""One rule for numeric settings, shared by the Python API (``ValueError``) and the command line
(a usage error): counts are integers, durations and sizes finite numbers, never NaN or infinity."""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real
from typing import TypeVar

N = TypeVar("N", int, float)


def expected(*, integer: bool, zero: bool, finite: bool = True) -> str:
    """What :func:`is_positive` accepts, in words: "an integer >= 1", "a finite number > 0", ...
    (with ``finite=False``, "a number > 0": for a value that is finite but out of range)."""
    kind = "an integer" if integer else "a finite number" if finite else "a number"
    bound = ">= 0" if zero else ">= 1" if integer else "> 0"
    return f"{kind} {bound}"


def is_positive(value: object, *, integer: bool = False, zero: bool = False) -> bool:
    """Whether ``value`` is a finite number (an integer if ``integer``; not a bool) that is > 0, or
    >= 0 with ``zero``."""
    if isinstance(value, bool) or not isinstance(value, Integral if integer else Real):
        return False
    if not isinstance(value, Integral) and not math.isfinite(value):
        return False
    return value >= 0 if zero else value > 0  # type: ignore[operator]


def check_positive(name: str, value: N, *, integer: bool = False, zero: bool = False) -> N:
    """``value`` if :func:`is_positive`, else a ``ValueError`` naming ``name`` and what it must be."""
    if not is_positive(value, integer=integer, zero=zero):
        raise ValueError(f"{name} must be {expected(integer=integer, zero=zero)}, got {value!r}")
    return value


def check_optional(name: str, value: float | None) -> float | None:
    """``None`` (no limit) or a finite number > 0, else a ``ValueError`` naming ``name``."""
    return None if value is None else check_positive(name, value)


def deprecated_ms(name: str, seconds: float, ms: float | None) -> float:
    """``seconds``, unless the deprecated ``{name}_ms`` was given (``ms`` not ``None``): then ``ms``
    in seconds, with a DeprecationWarning (the API takes durations in seconds)."""
    if ms is None:
        return seconds
    warnings.warn(f"{name}_ms= is deprecated; pass {name}= in seconds", DeprecationWarning, stacklevel=3)
    return ms / 1e3
