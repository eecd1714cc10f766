"""Numeric settings (aioinfer/_checks.py): NaN, infinities and out-of-range values are usage errors
on the command line (exit 2) for every numeric option of every sub-command, and ValueErrors naming
the argument in create_app and Batcher, instead of requests that answer 500 or hang."""

from __future__ import annotations

import argparse
import math

import pytest

from aioinfer import Batcher
from aioinfer._checks import check_positive, is_positive
from aioinfer._cli import build_parser, main
from aioinfer.asgi import create_app

NOT_FINITE = ["nan", "NaN", "inf", "-inf", "1e999"]


def numeric_options() -> list[tuple[str, argparse.Action]]:
    """(sub-command, option) for every option of every sub-command whose value is a number."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found = []
    for command, subparser in commands.choices.items():
        for action in subparser._actions:
            if action.option_strings and action.type is not None:
                try:
                    sample = action.type("2")
                except (argparse.ArgumentTypeError, ValueError):
                    continue
                if isinstance(sample, int | float):
                    found.append((command, action))
    return found


OPTIONS = numeric_options()


def takes(action: argparse.Action, text: str) -> bool:
    try:
        action.type(text)
    except (argparse.ArgumentTypeError, ValueError):
        return False
    return True


def test_the_float_options_are_all_found():
    names = {(command, action.option_strings[0]) for command, action in OPTIONS if takes(action, "2.5")}
    assert {
        ("serve", "--timeout"),
        ("serve", "--max-delay-ms"),
        ("serve", "--max-body-mb"),
        ("serve", "--max-decoded-mb"),
        ("serve", "--max-megapixels"),
        ("serve", "--body-timeout"),
        ("bench", "--seconds"),
    } <= names


@pytest.mark.parametrize(
    ("command", "action"), OPTIONS, ids=[f"{c} {a.option_strings[0]}" for c, a in OPTIONS]
)
@pytest.mark.parametrize("text", [*NOT_FINITE, "-1", "x", ""])
def test_every_numeric_option_refuses_what_is_not_a_finite_number_in_its_range(command, action, text):
    with pytest.raises(argparse.ArgumentTypeError, match=f"expected an? .*, got '{text}'"):
        action.type(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "m.xml", "--timeout", "nan"],
        ["serve", "m.xml", "--max-delay-ms", "inf"],
        ["serve", "m.xml", "--max-body-mb", "inf"],
        ["bench", "--seconds", "-inf"],
        ["bench", "--rounds", "0"],
        ["serve", "m.xml", "--port", "-1"],
    ],
)
def test_the_command_exits_2_with_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"argument {argv[-2]}: expected" in capsys.readouterr().err


def test_the_rule():
    assert is_positive(1) and is_positive(0.5) and is_positive(0, zero=True) and is_positive(10**400)
    for value in (math.nan, math.inf, -math.inf, 0, -1, True, "1", None):
        assert not is_positive(value)
    assert not is_positive(1.5, integer=True)
    with pytest.raises(ValueError, match=r"^max_queue must be an integer >= 0, got -1$"):
        check_positive("max_queue", -1, integer=True, zero=True)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", math.nan),
        ("timeout", math.inf),
        ("timeout", 0),
        ("max_delay", math.inf),
        ("max_delay", math.nan),
        ("max_delay", -1),
        ("max_batch_size", 0),
        ("max_batch_size", 2.5),
        ("max_queue", -1),
        ("max_queue", True),
        ("max_body_bytes", math.inf),
        ("max_body_bytes", 1.5),
        ("max_decoded_bytes", 0),
        ("max_pixels", math.nan),
        ("body_timeout", math.nan),
        ("body_timeout", -math.inf),
    ],
)
async def test_create_app_refuses_values_that_are_not_finite_and_positive(linear_model, name, value):
    with pytest.raises(ValueError, match=f"^{name} must be an? "):
        create_app(linear_model, **{name: value})


async def test_create_app_takes_none_and_zero_where_they_mean_something(linear_model):
    app = create_app(linear_model, timeout=None, body_timeout=None, max_queue=0, max_delay=0)
    service = app.state.service
    assert (service.timeout, service.body_timeout, service.max_queue) == (None, None, 0)


@pytest.mark.parametrize("value", [math.nan, math.inf, -1])
async def test_batcher_refuses_a_delay_that_is_not_finite(linear_model, value):
    with pytest.raises(ValueError, match=r"^max_delay must be a finite number >= 0"):
        Batcher(linear_model, max_delay=value)


async def test_max_delay_ms_is_a_deprecated_alias_of_max_delay_in_seconds(linear_model):
    with pytest.warns(DeprecationWarning, match="max_delay_ms= is deprecated; pass max_delay= in seconds"):
        assert Batcher(linear_model, max_delay_ms=20).max_delay == 0.02
    with pytest.warns(DeprecationWarning, match="max_delay_ms= is deprecated"):
        assert create_app(linear_model, max_delay_ms=5).state.service.max_delay == 0.005
