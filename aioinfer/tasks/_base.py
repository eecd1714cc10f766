"""The task protocol: ``pre_process`` → ``forward`` → ``post_process``, off the event loop."""

from __future__ import annotations

import os
import time
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

import anyio
import cv2
import numpy as np
from anyio.abc import AsyncResource

from .. import _loading
from .._errors import InputDtypeError, InputShapeError, SettingsError
from .._mappable import Mappable
from .._model import AsyncModel, ModelInfo
from .._model import load as load_model
from .._stats import LATENCY_WINDOW, Latency
from . import _draw
from ._labels import LabelsSource, resolve_labels
from ._settings import Setting, Settings, SettingsSource, check_settings, is_checked

# images a task's map keeps in flight by default, at most (models on a server count 64 requests each)
MAP_WINDOW = 64

T = TypeVar("T")
P = TypeVar("P")  # what a task's predict returns
TaskT = TypeVar("TaskT", bound="Task[Any]")


@dataclass(frozen=True)
class TaskInfo:
    """What a task does and what runs it."""

    task: str
    labels: tuple[str, ...]
    input_size: tuple[int, int] | None  # height, width of the main model's input
    device: str
    num_requests: int
    models: Mapping[str, ModelInfo] = field(default_factory=dict)
    # the float precision the main model really computes in (each model's: ``models[...].precision``)
    precision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "task": self.task,
            "labels": list(self.labels),
            "input_size": list(self.input_size) if self.input_size else None,
            "device": self.device,
            "num_requests": self.num_requests,
            "models": {name: info.to_dict() for name, info in self.models.items()},
            "precision": self.precision,
        }


@dataclass(frozen=True)
class TaskStats:
    """A snapshot of a task's work: predictions ``completed``, ``failed`` (raised), ``cancelled``
    (their caller was cancelled) and ``in_flight``; and ``stages``, the latency percentiles in
    milliseconds of each stage of recent predictions by stage name (``pre_process``, ``forward``,
    ``post_process``, and the task's own, such as OCR's ``det`` and ``rec``)."""

    completed: int
    failed: int
    cancelled: int
    in_flight: int
    stages: dict[str, Latency] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return asdict(self)


class Task(Mappable[P], AsyncResource):
    """A model (or several) with the pre- and post-processing that turn an image into a prediction
    of type ``P``.

    Subclasses define ``name``, ``settings_spec`` and implement :meth:`pre_process` and
    :meth:`post_process` (plain functions: they run on worker threads, at most ``max_threads`` at a
    time, never on the event loop), and optionally :meth:`forward` (a coroutine; by default one
    ``infer`` of the main model). :meth:`predict` chains them. Settings are read once per function
    call from ``self.settings_now`` so a concurrent update never mixes two versions in one step.
    :meth:`create` loads a model and makes the task (what :func:`aioinfer.tasks.load` calls).
    A task owns its models: closing it closes them. It runs under asyncio, uvloop and trio, in the
    event loop its models were loaded in.
    """

    name: ClassVar[str] = "task"
    settings_spec: ClassVar[Mapping[str, Setting]] = {}

    def __init__(
        self,
        models: AsyncModel | Mapping[str, AsyncModel],
        *,
        labels: Iterable[str] = (),
        settings: SettingsSource | None = None,
        input_size: tuple[int, int] | None = None,
        max_threads: int | None = None,
    ) -> None:
        self.models: dict[str, AsyncModel] = (
            dict(models) if isinstance(models, Mapping) else {"model": models}
        )
        self.model: AsyncModel = next(iter(self.models.values()))
        self.labels = tuple(labels)
        self.input_size = input_size
        self._settings = Settings(self.settings_spec, settings)
        self._max_threads = max_threads or max(2, os.cpu_count() or 2)
        self._limiter: anyio.CapacityLimiter | None = None
        self._stages: dict[str, deque[float]] = {}
        self._stage_observers: list[Callable[[str, float], object]] = []
        self._counts = {"completed": 0, "failed": 0, "cancelled": 0, "in_flight": 0}

    @classmethod
    async def create(
        cls: type[TaskT],
        model: Any,
        *,
        labels: LabelsSource = None,
        settings: SettingsSource | None = None,
        device: str = "AUTO",
        max_threads: int | None = None,
        **load_kwargs: Any,
    ) -> TaskT:
        """Read ``model`` (a path, bytes or ``openvino.Model``), compile it with
        :func:`aioinfer.load` (``device`` and ``load_kwargs``: ``num_requests``, ``config``,
        ``reshape``, ...) and return ``cls(model, labels=..., settings=..., max_threads=...)``.
        ``model`` may also be a model loaded already (an :class:`~aioinfer.AsyncModel`, local or
        remote: ``aioinfer.load("http://...")``): it is used as it is (load options raise
        :class:`SettingsError`) and handed to the task, which closes it when closed (or at once
        if the task cannot be made).

        ``labels``: a list, a ``{id: name}`` mapping or a file, else the model's runtime info.
        ``settings`` are checked against :attr:`settings_spec` before anything is compiled. This is
        how :func:`aioinfer.tasks.load` makes a task, so a subclass whose ``__init__`` keeps the
        base signature works there as it is; one that takes other arguments or several models
        overrides ``create`` (as :class:`ImageTask` and :class:`OCRTask` do).
        """
        if isinstance(model, AsyncModel):
            names, checked = await adopt(
                model,
                device,
                load_kwargs,
                lambda: (resolve_labels(labels), check_settings(cls.settings_spec, settings)),
            )
            return await cls.wrap(model, labels=names, settings=checked, max_threads=max_threads)

        def prepare() -> tuple[Any, tuple[str, ...], SettingsSource | None]:
            checked = check_settings(cls.settings_spec, settings)  # fail before the slow part
            ov_model = _loading.read_model(model)
            return ov_model, resolve_labels(labels, ov_model), checked

        ov_model, names, checked = await anyio.to_thread.run_sync(prepare)
        compiled = await load_model(ov_model, device=device, **load_kwargs)
        return await cls.wrap(compiled, labels=names, settings=checked, max_threads=max_threads)

    @classmethod
    async def wrap(cls: type[TaskT], model: AsyncModel, **kwargs: Any) -> TaskT:
        """``cls(model, **kwargs)``; if that raises, ``model`` is closed before the error goes on."""
        try:
            return cls(model, **kwargs)
        except BaseException:
            await model.aclose()
            raise

    # -- the protocol ----------------------------------------------------------------------------

    def pre_process(self, image: np.ndarray) -> tuple[Any, Any]:
        """``image`` (BGR uint8 HxWx3) → (model inputs, metadata that ``post_process`` needs)."""
        raise NotImplementedError

    async def forward(self, inputs: Any, meta: Any) -> Any:
        """Run the model(s) on what ``pre_process`` made; by default one ``infer`` of :attr:`model`."""
        return await self.model.infer(inputs)

    def post_process(self, outputs: Any, meta: Any) -> P:
        """Raw outputs and the metadata → the prediction, in original-image pixels."""
        raise NotImplementedError

    # -- running -----------------------------------------------------------------------------------

    async def predict(self, image: np.ndarray) -> P:
        """The prediction for one BGR image (``uint8``, HxWx3; grey HxW and BGRA are converted).

        Raises an :class:`aioinfer.InputError` for anything else; errors fail only this call.
        """
        counts = self._counts
        counts["in_flight"] += 1
        outcome = "failed"
        try:
            inputs, meta = await self.run_sync("pre_process", self._pre_process_any, image)
            outputs = await self.timed("forward", self.forward(inputs, meta))
            prediction = await self.run_sync("post_process", self.post_process, outputs, meta)
            outcome = "completed"
            return prediction
        except anyio.get_cancelled_exc_class():  # a task's cancel(), a cancel scope: any backend's
            outcome = "cancelled"
            raise
        finally:
            counts["in_flight"] -= 1
            counts[outcome] += 1

    __call__ = predict

    def _map_target(self) -> tuple[Callable[[Any], Awaitable[P]], int]:
        return self.predict, min(self.requests, MAP_WINDOW // 2)

    @property
    def requests(self) -> int:
        """The infer requests of all its models: ``map`` keeps twice as many images in flight by
        default (at most ``MAP_WINDOW``), so that each model of a pipeline (OCR's detector,
        classifier, recognizer) has work waiting while the others run."""
        return sum(model.info.num_requests for model in self.models.values())

    def _pre_process_any(self, image: Any) -> tuple[Any, Any]:
        return self.pre_process(_as_bgr(image))

    async def run_sync(self, stage: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread (bounded by the task's thread limit), timed as ``stage``."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._max_threads)
        start = time.perf_counter()
        result = await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        self.record(stage, start)
        return result

    async def timed(self, stage: str, awaitable: Awaitable[T]) -> T:
        """The result of ``awaitable``, its wait timed as ``stage`` (counted when it succeeds)."""
        start = time.perf_counter()
        result = await awaitable
        self.record(stage, start)
        return result

    def record(self, stage: str, start: float) -> None:
        """Count one ``stage`` that began at ``start`` (``time.perf_counter()``) and ends now, and
        tell the stage observers (:meth:`observe_stages`)."""
        seconds = time.perf_counter() - start
        self._stages.setdefault(stage, deque(maxlen=LATENCY_WINDOW)).append(seconds * 1000)
        for observer in self._stage_observers:
            observer(stage, seconds)

    def observe_stages(self, observer: Callable[[str, float], object]) -> Callable[[], None]:
        """Call ``observer(stage, seconds)`` each time a stage of a prediction ends (on the event
        loop, at once: it must be quick and must not raise, as a histogram's ``observe``). Returns
        what stops it (idempotent). Every stage in ``stats().stages`` is observed."""
        self._stage_observers.append(observer)

        def stop() -> None:
            if observer in self._stage_observers:
                self._stage_observers.remove(observer)

        return stop

    def stats(self) -> TaskStats:
        """Counters of predictions and the latency of each stage (see :class:`TaskStats`)."""
        stages = {stage: Latency.of(samples) for stage, samples in self._stages.items()}
        return TaskStats(**self._counts, stages=stages)

    def stage_ms(self) -> dict[str, Latency]:
        """Deprecated: ``stats().stages``."""
        warnings.warn(
            "Task.stage_ms() is deprecated; use Task.stats().stages", DeprecationWarning, stacklevel=2
        )
        return self.stats().stages

    # -- settings ----------------------------------------------------------------------------------

    @classmethod
    async def check_settings(cls, source: SettingsSource | None) -> SettingsSource | None:
        """``source`` read (a YAML file off the event loop) and validated against
        :attr:`settings_spec`, once: a task made with the result takes it without a second pass.
        Raises :class:`aioinfer.SettingsError`; ``None`` and settings checked already pass through."""
        if source is None or is_checked(source, cls.settings_spec):
            return source
        return await anyio.to_thread.run_sync(check_settings, cls.settings_spec, source)

    @property
    def default_settings(self) -> Mapping[str, Any]:
        """The task's default settings (read-only)."""
        return self._settings.defaults

    @property
    def settings(self) -> dict[str, Any]:
        """A copy of the current settings."""
        return dict(self._settings.values)

    @property
    def settings_now(self) -> Mapping[str, Any]:
        """The current settings as one consistent read-only snapshot (for pre/post-processing)."""
        return self._settings.values

    def update_settings(self, **changes: Any) -> None:
        """Change some settings. Raises :class:`aioinfer.SettingsError` naming an unknown key or a
        value out of range, and then changes nothing."""
        self._settings.update(changes)

    def set_settings(self, source: SettingsSource) -> None:
        """Reset to the defaults, then apply ``source`` (a mapping or a YAML file's path); all or nothing."""
        self._settings.set(source)

    def describe_settings(self) -> dict[str, str]:
        """What each setting accepts."""
        return self._settings.describe()

    # -- the rest ----------------------------------------------------------------------------------

    @property
    def info(self) -> TaskInfo:
        return TaskInfo(
            task=self.name,
            labels=self.labels,
            input_size=self.input_size,
            device=self.model.info.device,
            num_requests=self.model.info.num_requests,
            models={name: m.info for name, m in self.models.items()},
            precision=self.model.info.precision,
        )

    def draw(self, image: np.ndarray, prediction: P) -> np.ndarray:
        """An annotated copy of ``image`` (same size); ``image`` itself is left untouched."""
        return _draw.draw(image, prediction)

    async def aclose(self) -> None:
        """Close every model of the task, at once (each waiting for its work already submitted).
        Idempotent."""
        async with anyio.create_task_group() as closing:
            for model in self.models.values():
                closing.start_soon(model.aclose)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.model.info.device}>"


async def adopt(model: AsyncModel, device: str, options: Mapping[str, Any], prepare: Callable[[], T]) -> T:
    """``prepare()``, run off the event loop, for a task about to be made around ``model``, a model
    loaded already: :class:`SettingsError` unless ``device`` and the load ``options`` are the
    defaults (``"AUTO"``, ``None``), as such a model runs as it is. The task owns ``model`` from
    this call on: if this fails, ``model`` is closed."""
    try:
        given = sorted(key for key, value in options.items() if value is not None)
        if device != "AUTO":
            given.insert(0, "device")
        if given:
            raise SettingsError(
                f"{model!r} is loaded already, so the options for loading it ({', '.join(given)}) do "
                "not apply: pass them to aioinfer.load, or pass the model's path instead"
            )
        return await anyio.to_thread.run_sync(prepare)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await model.aclose()
        raise


def _as_bgr(given: Any) -> np.ndarray:
    image: np.ndarray = given
    if not isinstance(image, np.ndarray):
        raise InputDtypeError(
            f"expected an image as a numpy array (HxWx3 BGR uint8), got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise InputDtypeError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise InputShapeError(f"expected an image of shape HxWx3 (or HxW, HxWx4), got {list(image.shape)}")
    return image
