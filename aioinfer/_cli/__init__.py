"""The ``aioinfer`` command: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
import math
import platform
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

import yaml

from .. import _install, _loading
from .._checks import expected, is_positive
from .._errors import AioInferError, SettingsError
from ..tasks import TASKS
from ..tasks._settings import SettingsSource, check_settings, read_settings

# what a sub-command fails with at run time: one line ``aioinfer CMD: error: ...``, exit 1
RUNTIME_ERRORS = (AioInferError, OSError, ValueError)
HINTS = ("THROUGHPUT", "LATENCY", "CUMULATIVE_THROUGHPUT")

# each module defines ``add_parser(subparsers)`` that registers its sub-command with ``func=``
COMMANDS = ("demo", "run", "bench", "info", "serve", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aioinfer", description="asyncio-native inference on OpenVINO")
    parser.add_argument("--version", action="version", version=_version(), help="print the versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.add_parser(sub)
        sub.choices[name].set_defaults(command_parser=sub.choices[name])
    return parser


class UsageError(Exception):
    """A command line that cannot work as given: the sub-command's usage and
    ``aioinfer CMD: error: <message>`` on stderr, exit 2 (as argparse reports its own)."""


def fail(command: str, error: BaseException | str) -> int:
    """Report a run-time failure of ``aioinfer command`` in one line on stderr; returns exit code 1."""
    print(f"aioinfer {command}: error: {error}", file=sys.stderr)
    return 1


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
    """Entry point of the ``aioinfer`` console script; returns the exit code: 0, 1 for a failure
    (one line ``aioinfer CMD: error: ...``, no traceback), 2 for a usage error, 130 on Ctrl-C."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        command: argparse.ArgumentParser = args.command_parser
        command.error(str(exc))  # exits 2
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:  # an optional extra not installed: name the pip command
        missing = _install.missing_extra(exc)
        if missing is None:
            raise
        return fail(args.command, missing)
    except RUNTIME_ERRORS as exc:
        return fail(args.command, exc)


def _version() -> str:
    """``aioinfer 0.1.0 (OpenVINO 2026.4.0, Python 3.11.9)``: what a bug report needs."""
    openvino = metadata.version("openvino")
    return f"aioinfer {_install.version()} (OpenVINO {openvino}, Python {platform.python_version()})"


def key_value(text: str) -> tuple[str, str]:
    """A ``KEY=VALUE`` argument (``--config``, ``--set``): both sides stripped, the key not empty."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def add_model_options(parser: argparse.ArgumentParser, *, shape_lanes: bool = True) -> None:
    """The options every sub-command that loads a model takes, named as :func:`aioinfer.load`'s
    arguments: ``--device``, ``--num-requests``, ``--hint``, ``--precision``, ``--shape-lanes``,
    ``--config`` (``--shape-lanes`` only where inputs may vary: ``shape_lanes``)."""
    parser.add_argument(
        "--device", default="AUTO", help="OpenVINO device: CPU, GPU, AUTO, ... (default: AUTO)"
    )
    parser.add_argument(
        "--num-requests", type=positive(int), help="OpenVINO infer requests (default: the device's optimum)"
    )
    parser.add_argument(
        "--hint", choices=HINTS, help="OpenVINO PERFORMANCE_HINT (default: THROUGHPUT)", type=str.upper
    )
    parser.add_argument(
        "--precision",
        choices=_loading.PRECISIONS,
        type=str.lower,
        help="inference precision (OpenVINO INFERENCE_PRECISION_HINT; default: the device's, "
        "bf16 on CPUs that have it)",
    )
    if shape_lanes:
        _add_shape_lanes(parser)
    parser.add_argument(
        "--config",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="OpenVINO compile option, e.g. INFERENCE_PRECISION_HINT=f32 (repeatable)",
    )


def _add_shape_lanes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shape-lanes",
        type=positive(int),
        metavar="N",
        help="run a model fed a few recurring input shapes on up to N compiled copies, each kept on "
        "one shape (default: 1)",
    )


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """What :func:`add_model_options` parsed, as keyword arguments of :func:`aioinfer.load`
    (``--precision`` as the ``INFERENCE_PRECISION_HINT`` of ``config``); :class:`UsageError` when
    ``--precision`` contradicts ``--config INFERENCE_PRECISION_HINT=...``."""
    config: dict[str, Any] = dict(args.config)
    if args.hint:
        config["PERFORMANCE_HINT"] = args.hint
    try:
        config = _loading.with_precision(config, args.precision)
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None
    options = {"device": args.device, "num_requests": args.num_requests, "config": config or None}
    if getattr(args, "shape_lanes", None) is not None:
        options["shape_lanes"] = args.shape_lanes
    return options


def add_task_options(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``MODEL`` (optional with ``--task ocr``), ``--task`` (a built-in task's name), ``--labels``,
    ``--settings FILE`` and ``--set KEY=VALUE``; ``what`` says what ``--task`` does here."""
    parser.add_argument(
        "model", nargs="?", help="model path (.xml, .onnx, ...); leave out with --task ocr (bundled PP-OCR)"
    )
    parser.add_argument("--task", choices=tuple(TASKS), help=what)
    parser.add_argument("--labels", help="labels file for --task (default: the model's own, if any)")
    parser.add_argument("--settings", metavar="FILE", help="task settings from a YAML file (with --task)")
    parser.add_argument(
        "--set",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        dest="set_",
        help="one task setting, e.g. --set conf_threshold=0.4; the value is read as YAML "
        "(repeatable; wins over --settings)",
    )


def task_options(args: argparse.Namespace) -> dict[str, Any]:
    """``labels`` and ``settings`` for :func:`aioinfer.tasks.load` from :func:`add_task_options`;
    the settings read and checked against the task's (``--set`` over ``--settings``). Raises
    :class:`UsageError` for a missing MODEL, task options without ``--task`` and settings the task
    does not accept (naming the key and what is accepted)."""
    if args.model is None and args.task != "ocr":
        raise UsageError("MODEL is required (only --task ocr has bundled models)")
    if args.task is None:
        if args.labels or args.settings or args.set_:
            raise UsageError("--labels, --settings and --set need --task")
        return {}
    return {"labels": args.labels, "settings": _task_settings(args.task, args.settings, args.set_)}


def _task_settings(task: str, path: str | None, pairs: list[tuple[str, str]]) -> SettingsSource | None:
    """The settings of ``--settings FILE`` then ``--set`` pairs, checked against ``task``'s."""
    try:
        values = {**(read_settings(path) if path else {}), **{k: _yaml_value(k, v) for k, v in pairs}}
        return check_settings(TASKS[task].settings_spec, values) if values else None
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


def _yaml_value(key: str, text: str) -> Any:
    """``--set KEY=TEXT``'s value: TEXT read as YAML (``0.4``, ``true``, ``max``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise SettingsError(f"setting {key!r}: {text!r} is not a YAML value") from None
