"""The ``aioinfer`` command: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aioinfer`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)
