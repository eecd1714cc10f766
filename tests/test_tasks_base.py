"""The Task protocol, subclassed by a user: pre/post-processing run on worker threads, map, close;
on asyncio, uvloop and trio."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import ClassVar

import anyio
import models
import numpy as np
import pytest

import aioinfer
from aioinfer import tasks

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Brightness:
    value: float

    def to_dict(self):
        return {"value": self.value}


class BrightnessTask(tasks.Task):
    """Mean of each of the first 4 pixels, through y = 2x + 1."""

    name = "brightness"
    settings_spec: ClassVar = {"offset": tasks.Setting(0.0, -10.0, 10.0)}

    def __init__(self, model):
        super().__init__(model, max_threads=1)
        self.threads: set[int] = set()

    def pre_process(self, image):
        self.threads.add(threading.get_ident())
        return image.reshape(-1, 3)[:4].mean(axis=1, dtype=np.float32)[np.newaxis], None

    def post_process(self, outputs, meta):
        self.threads.add(threading.get_ident())
        return Brightness(float(outputs["y"].sum()) + self.settings_now["offset"])


async def make_task():
    return BrightnessTask(await aioinfer.load(models.linear(), config=models.EXACT))


async def test_user_task_runs_pre_and_post_off_the_loop():
    async with await make_task() as task:
        image = np.full((2, 2, 3), 3, np.uint8)
        pred = await task.predict(image)
        assert pred.value == 4 * (2 * 3 + 1)
        assert threading.get_ident() not in task.threads and len(task.threads) >= 1
        task.update_settings(offset=1.5)
        assert (await task.predict(image)).value == 29.5
        assert set(task.stats().stages) == {"pre_process", "forward", "post_process"}
        info = task.info.to_dict()
        assert info["task"] == "brightness" and info["num_requests"] >= 1
        json.dumps(info)
    assert task.model.closed


async def test_map_and_errors_per_item():
    async with await make_task() as task:
        items = [np.full((2, 2, 3), i, np.uint8) for i in range(5)]
        items[2] = np.zeros((2, 2, 3), np.float64)  # bad: only this item fails
        results = [r async for r in task.map(items, max_in_flight=2, return_exceptions=True)]
        assert [r.index for r in results] == [0, 1, 2, 3, 4]
        assert isinstance(results[2].error, aioinfer.InputDtypeError)
        assert [r.output.value for r in results if r.error is None] == [4.0, 12.0, 28.0, 36.0]


async def test_base_methods_must_be_implemented():
    model = await aioinfer.load(models.linear())
    task = tasks.Task(model)
    with pytest.raises(NotImplementedError):
        await task.predict(np.zeros((2, 2, 3), np.uint8))
    await task.aclose()
    await task.aclose()  # idempotent


class SumTask(tasks.Task[Brightness]):
    """A user's task with the base constructor: made by ``tasks.load(..., task=SumTask)``."""

    name = "sum"

    def pre_process(self, image):
        return image.reshape(-1, 3)[:4].mean(axis=1, dtype=np.float32)[np.newaxis], None

    def post_process(self, outputs, meta):
        return Brightness(float(outputs["y"].sum()))


async def test_a_users_task_class_loads_like_the_built_in_ones():
    loading = tasks.load(models.linear(), task=SumTask, labels=["a", "b"], device="CPU", config=models.EXACT)
    async with loading as task:
        assert type(task) is SumTask and task.labels == ("a", "b")
        assert task.model.info.device == "CPU" and not task.model.closed
        assert (await task.predict(np.full((2, 2, 3), 1, np.uint8))).value == 4 * 3
    assert task.model.closed
    with pytest.raises(aioinfer.SettingsError, match="unknown task 'brightness'; expected one of classif"):
        tasks.load(models.linear(), task="brightness")


async def test_stats_count_predictions_and_time_each_stage():
    async with await make_task() as task:
        assert task.stats() == tasks.TaskStats(completed=0, failed=0, cancelled=0, in_flight=0, stages={})
        await task.predict(np.zeros((2, 2, 3), np.uint8))
        with pytest.raises(aioinfer.InputDtypeError):
            await task.predict(np.zeros((2, 2, 3), np.float32))
        stats = task.stats()
        assert (stats.completed, stats.failed, stats.in_flight) == (1, 1, 0)
        assert stats.stages["forward"].p50 is not None
        json.dumps(stats.to_dict())
        with pytest.warns(DeprecationWarning, match=r"stats\(\)\.stages"):
            assert task.stage_ms() == task.stats().stages


async def test_a_cancelled_prediction_is_counted_as_cancelled():
    async with await make_task() as task:
        with anyio.move_on_after(0) as scope:  # cancelled at its first await, by the backend's own scope
            await task.predict(np.zeros((2, 2, 3), np.uint8))
        assert scope.cancelled_caught
        stats = task.stats()
        assert (stats.cancelled, stats.failed, stats.completed, stats.in_flight) == (1, 0, 0, 0)
        assert (await task.predict(np.zeros((2, 2, 3), np.uint8))).value == 4.0  # still serves


async def test_a_loaded_model_is_handed_to_the_task():
    model = await aioinfer.load(models.linear(), device="CPU", config=models.EXACT)
    async with tasks.load(model, task=SumTask, labels=["a", "b"]) as task:
        assert task.model is model and task.labels == ("a", "b")
        assert (await task.predict(np.full((2, 2, 3), 1, np.uint8))).value == 4 * 3
    assert model.closed  # the task owned it


async def test_load_options_for_a_loaded_model_are_refused_and_the_model_is_closed():
    model = await aioinfer.load(models.linear(), device="CPU", config=models.EXACT)
    with pytest.raises(aioinfer.SettingsError, match=r"the options for loading it \(device, num_requests\)"):
        await tasks.load(model, task=SumTask, device="CPU", num_requests=2)
    assert model.closed
