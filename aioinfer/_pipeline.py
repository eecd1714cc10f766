"""The one frame pipeline of ``aioinfer run`` and ``aioinfer demo``: frames from a source → a task
(or a bare model) over the frames with bounded concurrency → each frame drawn into a video and
recorded as one JSON line."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np

from ._map import MapResult
from ._mappable import Mappable
from ._model import AsyncModel, load
from ._outputs import Outputs
from ._sinks import JsonlSink, VideoSink
from ._sources import FrameSource
from .tasks import Task
from .tasks import load as load_task
from .tasks._load import TaskModel
from .tasks._preprocess import frame_adapter

SMALL_OUTPUT = 64  # raw outputs with at most this many values are written in full to the JSONL
PREPARE_THREADS = 2  # frames adapted to a bare model's input at once


class Step(Mappable[Any]):
    """What runs on each frame: a task (predict; draw the prediction; the prediction in the record)
    or a bare model (the frame adapted to its image input, inferred; the frame as it is; its
    outputs described in the record). Made by :meth:`of_task` and :meth:`of_model`."""

    def __init__(
        self, model: AsyncModel, predict: Callable[[np.ndarray], Awaitable[Any]], task: Task[Any] | None
    ) -> None:
        self.model = model
        self.predict = predict
        self.task = task

    @classmethod
    def of_task(cls, task: Task[Any]) -> Step:
        return cls(task.model, task.predict, task)

    @classmethod
    def of_model(cls, model: AsyncModel) -> Step:
        """The model's single image input fed by :func:`~aioinfer.tasks._preprocess.frame_adapter`
        (an :class:`InputError` for a model it cannot feed)."""
        prepare = frame_adapter(model.info.inputs)
        limiter = anyio.CapacityLimiter(PREPARE_THREADS)

        async def predict(image: np.ndarray) -> Outputs:
            return await model.infer(await anyio.to_thread.run_sync(prepare, image, limiter=limiter))

        return cls(model, predict, None)

    def _map_target(self) -> tuple[Callable[[Any], Awaitable[Any]], int]:
        if self.task is not None:  # the task's own window (all its models)
            return self.predict, self.task._map_target()[1]
        return self.predict, self.model.info.num_requests

    def record(self, r: MapResult[Any]) -> dict[str, Any]:
        """The JSON line of one frame: its index and timestamp, and the task's prediction (the
        sink calls its ``to_dict()`` on its own thread) or the model's outputs described."""
        head = {"index": r.index, "timestamp_ms": r.timestamp_ms}
        if self.task is not None:
            return {**head, "prediction": r.output}
        return {**head, "outputs": {name: _describe(a) for name, a in r.output.to_dict().items()}}

    async def draw(self, r: MapResult[Any]) -> np.ndarray:
        """The frame annotated by the task (on a worker thread), or as it is for a bare model."""
        if self.task is None:
            return np.asarray(r.input)
        return await anyio.to_thread.run_sync(self.task.draw, r.input, r.output)


@asynccontextmanager
async def open_step(
    model: TaskModel, *, task: str | None = None, task_options: Mapping[str, Any], **load_options: Any
) -> AsyncIterator[Step]:
    """The :class:`Step` of ``model`` wrapped in ``task`` (with ``task_options``: ``labels``,
    ``settings``), or of the bare model when ``task`` is ``None``; closed on exit.
    ``load_options`` go to the loader (``device``, ``num_requests``, ``config``)."""
    if task is not None:
        async with load_task(model, task=task, **task_options, **load_options) as loaded:
            yield Step.of_task(loaded)
        return
    if model is None or isinstance(model, Mapping):
        raise ValueError("a model without a task is a path, bytes or an openvino.Model")
    async with load(model, **load_options) as bare:
        yield Step.of_model(bare)


@dataclass(frozen=True)
class PipelineStats:
    """What a pipeline run did: frames done, seconds from the first read to the last write, frames
    the source dropped (``drop="oldest"``)."""

    frames: int
    seconds: float
    dropped: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


async def run_pipeline(
    step: Step,
    source: FrameSource,
    *,
    video: str | os.PathLike[str] | None = None,
    jsonl: str | os.PathLike[str] | None = None,
    max_in_flight: int | None = None,
    progress: bool = False,
    each: Callable[[MapResult[Any]], None] | None = None,
) -> PipelineStats:
    """Run ``step`` over every frame of ``source`` in order (at most ``max_in_flight`` frames read
    and not yet written; default: twice the requests of the model, or of all the task's models),
    writing each frame drawn to ``video`` (at the source's fps) and its record to ``jsonl`` when
    given, and calling ``each`` (on the event loop: keep it cheap) with each result. ``seconds``
    runs from the start of the map to the last frame written. A failure stops the run and raises."""
    async with AsyncExitStack() as stack:
        videos = await stack.enter_async_context(VideoSink(video, fps=source.fps)) if video else None
        lines = await stack.enter_async_context(JsonlSink(jsonl)) if jsonl else None
        results = step.map(source, max_in_flight=max_in_flight, progress=progress)
        started = time.perf_counter()
        async with results:
            async for r in results:
                if lines is not None:
                    await lines.write(step.record(r))
                if videos is not None:
                    await videos.write(await step.draw(r))
                if each is not None:
                    each(r)
        seconds = time.perf_counter() - started
    return PipelineStats(results.stats().inferred, seconds, source.stats().dropped)


def _describe(array: np.ndarray) -> dict[str, Any]:
    described: dict[str, Any] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    if array.size <= SMALL_OUTPUT:
        described["values"] = array.tolist()
    return described
