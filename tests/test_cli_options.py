"""One convention across the sub-commands: the same option names, defaults and help; task settings
from the command line (``--settings FILE``, ``--set KEY=VALUE``) checked as the API checks them."""

from __future__ import annotations

import argparse
import json

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from models import write_indexed_video

from aioinfer._cli import build_parser, main, task_options
from aioinfer._cli import serve as serve_cli
from aioinfer.tasks import TASKS

pytestmark = pytest.mark.timeout(120)
LOADING = ("demo", "run", "bench", "info", "serve")  # the sub-commands that load a model


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_of_every_command_says_what_it_does():
    for name, parser in commands().items():
        for action in parser._actions:
            assert action.help, f"aioinfer {name} {'/'.join(action.option_strings) or action.dest}"


def test_model_options_have_one_name_and_one_default_everywhere():
    found = commands()
    assert set(LOADING) <= set(found)
    for name in LOADING:
        options = {o: a for a in found[name]._actions for o in a.option_strings}
        assert options["--device"].default == "AUTO", name
        assert {"--num-requests", "--hint", "--config"} <= set(options), name
        assert "--requests" not in options, name
        assert options["--hint"].choices == ("THROUGHPUT", "LATENCY", "CUMULATIVE_THROUGHPUT")
    for name in ("run", "serve"):  # the sub-commands that take a task
        task = next(a for a in found[name]._actions if "--task" in a.option_strings)
        assert tuple(task.choices) == tuple(TASKS)


@pytest.fixture
def classifier(tmp_path):
    """Three classes scored by the mean of each input channel: blue, green, red."""
    x = ops.parameter([1, 3, 32, 32], np.float32, name="x")
    logits = ops.reduce_mean(x, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)
    path = tmp_path / "cls.xml"
    ov.save_model(ov.Model([logits.output(0)], [x], "cls"), path)
    (tmp_path / "labels.txt").write_text("blue\ngreen\nred\n")
    return path


def test_run_applies_settings_from_a_file_and_from_set(tmp_path, classifier):
    video = write_indexed_video(tmp_path / "clip.avi", 3, fps=10.0)
    settings = tmp_path / "settings.yml"
    settings.write_text("top_k: 3\nmin_score: 0.0\n")
    preds = tmp_path / "p.jsonl"
    task = ["--task", "classification", "--labels", str(tmp_path / "labels.txt")]
    flags = ["--settings", str(settings), "--set", "top_k=2", "--jsonl", str(preds), "--no-progress"]
    assert main(["run", str(classifier), str(video), *task, *flags, "--device", "CPU"]) == 0
    records = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [len(r["prediction"]["classes"]) for r in records] == [2, 2, 2]  # --set wins over the file


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "top_k=0"], "setting 'top_k': 0 is out of range; expected an integer in [1, 100000]"),
        (["--set", "top_k=many"], "setting 'top_k': 'many' is not accepted; expected an integer in"),
        (["--set", "conf=0.4"], "unknown setting 'conf'; known settings: min_score, top_k"),
        (["--set", "top_k"], "argument --set: expected KEY=VALUE, got 'top_k'"),
        (["--settings", "missing.yml"], "cannot read settings file 'missing.yml'"),
    ],
)
@pytest.mark.parametrize("command", ["run", "serve"])
def test_settings_the_task_does_not_accept_are_usage_errors(classifier, capsys, command, flags, message):
    source = ["clip.mp4"] if command == "run" else []
    with pytest.raises(SystemExit) as exc:
        main([command, str(classifier), *source, "--task", "classification", *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"aioinfer {command}: error: {message}" in err and "Traceback" not in err


def test_task_options_need_a_task(classifier, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", str(classifier), "clip.mp4", "--set", "top_k=1"])
    assert exc.value.code == 2
    assert "aioinfer run: error: --labels, --settings and --set need --task" in capsys.readouterr().err


async def test_serve_loads_the_task_with_its_settings(classifier):
    flags = ["--task", "classification", "--set", "top_k=1", "--set", "min_score=0.25", "--device", "CPU"]
    args = build_parser().parse_args(["serve", str(classifier), *flags])
    async with serve_cli._open(args, task_options(args)) as task:
        assert (task.settings["top_k"], task.settings["min_score"]) == (1, 0.25)
        assert task.model.info.device == "CPU"
