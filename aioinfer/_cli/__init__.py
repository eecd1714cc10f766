"""The ``aioinfer`` command: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from typing import Any

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
    """An argparse ``type=``: ``kind(text)`` (``int`` or ``float``), which must be > 0 (>= 0 with
    ``zero=True``); anything else is a usage error naming what was expected."""
    name = "an integer" if kind is int else "a number"
    bound = ">= 0" if zero else ">= 1" if kind is int else "> 0"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"expected {name} {bound}, got {text!r}")
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
