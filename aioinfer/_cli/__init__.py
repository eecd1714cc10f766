"""The ``aioinfer`` command: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any

from .._checks import expected, is_positive

# each module defines ``add_parser(subparsers)`` that registers its sub-command with ``func=``
COMMANDS = ("demo", "run", "bench", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aioinfer", description="asyncio-native inference on OpenVINO")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def positive(kind: type, *, zero: bool = False) -> Callable[[str], Any]:
    """An argparse ``type=``: ``kind(text)`` (``int`` or ``float``), which must be finite and > 0
    (>= 0 with ``zero=True``): "nan", "inf" and the like are usage errors naming what was expected,
    by the same rule as the Python API's arguments (:mod:`aioinfer._checks`)."""
    integer = kind is int

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            noun = "an integer" if integer else "a number"
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not is_positive(value, integer=integer, zero=zero):
            wanted = expected(integer=integer, zero=zero, finite=not math.isfinite(value))
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    return parse


def parse_source(text: str) -> int | str:
    """A SOURCE argument: all digits is a camera index, anything else a path, glob or URL."""
    return int(text) if text.isdigit() else text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aioinfer`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)
