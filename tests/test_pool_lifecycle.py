"""Load/close cycles on real OpenVINO: no native thread left behind, no memory growth, no freeze, and
no infer request ever released on one of OpenVINO's callback threads (its destructor would wait for
that very callback, forever)."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import json
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import models
import numpy as np
import pytest

import aioinfer
from aioinfer import _reaper

HANG_S = float(os.environ.get("AIOINFER_HANG_S", 120))  # a freeze, in the child: dump its stacks, exit


def native_threads() -> int:
    """Threads of this process that Python did not start: OpenVINO's (a thread stuck forever in a
    request's destructor is one). Python's own worker threads (anyio's, the executor's) come and
    go with load and are left out."""
    started_by_python = sum(not isinstance(t, threading._DummyThread) for t in threading.enumerate())
    return len(os.listdir("/proc/self/task")) - started_by_python


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(ln for ln in status if ln.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


class ReleaseLog:
    """Records on which thread each watched infer request was destroyed."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self._refs: list[weakref.ref] = []

    def watch(self, model: aioinfer.AsyncModel) -> None:
        for request in [slot.request for slot in model._pool._slots] + [model._keeper]:
            self._refs.append(weakref.ref(request, self._died))

    def _died(self, _ref: weakref.ref) -> None:  # runs on the thread that dropped the last reference
        self.threads.append(threading.current_thread())

    def alive(self) -> int:
        return sum(ref() is not None for ref in self._refs)

    def on_openvino_threads(self) -> list[str]:
        """Releases that happened on a thread Python did not start: OpenVINO's callback threads."""
        return [t.name for t in self.threads if isinstance(t, threading._DummyThread)]


async def one_cycle(device: str, log: ReleaseLog, *, close: bool) -> None:
    model = await aioinfer.load(models.linear(), device=device, config=models.EXACT, num_requests=2)
    log.watch(model)
    xs = [np.full((1, 4), k, np.float32) for k in range(8)]
    outs = await asyncio.gather(*(model.infer(x) for x in xs))
    assert all((o[0] == models.linear_expected(x)).all() for o, x in zip(outs, xs, strict=True))
    if close:
        await model.aclose()
        assert log.alive() == 1  # aclose() returned with the pool's requests released (not the keeper)
    # else: dropped with callbacks possibly still returning, which then hold the pool's last reference


def settle() -> None:
    """Let what dropped models leave behind end: collected, reaped, their watchdogs returned (a
    watchdog ends once it sees its pool gone, within its nap)."""
    gc.collect()
    _reaper.join()
    for thread in threading.enumerate():
        if thread.name == "aioinfer-watchdog":
            thread.join(timeout=30)


async def cycles(device: str, n: int, *, close: bool) -> dict[str, object]:
    """``n`` cycles of load, 8 concurrent infers, close (or drop); what was left behind."""
    log = ReleaseLog()
    for _ in range(5):  # warm-up: OpenVINO's process-wide threads and caches
        await one_cycle(device, log, close=close)
    settle()
    threads, rss = native_threads(), rss_mb()
    for _ in range(n):
        await one_cycle(device, log, close=close)
    settle()
    return {
        "leaked_threads": native_threads() - threads,
        "rss_growth_mb": round(rss_mb() - rss, 1),
        "requests_alive": log.alive(),
        "released_on_openvino_threads": log.on_openvino_threads(),
    }


def run_cycles_in_child(device: str, n: int, *, close: bool) -> dict[str, object]:
    """The cycles in a child process: a freeze (every thread stuck, the GIL held) fails this test
    with the child's stacks instead of hanging the whole run."""
    argv = [sys.executable, __file__, device, str(n), "close" if close else "drop"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=HANG_S + 30, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the child froze and did not even exit: {exc.stderr}")
    assert done.returncode == 0, f"the child froze or failed:\n{done.stderr[-6000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("device", ["CPU", "AUTO"])
def test_load_close_cycles_leave_no_thread_memory_or_request_behind(device: str) -> None:
    left = run_cycles_in_child(device, 150, close=True)
    assert left["leaked_threads"] <= 1, left
    assert left["rss_growth_mb"] < 25, left
    assert left["requests_alive"] == 0, left
    assert left["released_on_openvino_threads"] == [], left


def test_models_dropped_without_aclose_are_released_by_the_reaper() -> None:
    left = run_cycles_in_child("CPU", 150, close=False)
    assert left["leaked_threads"] <= 1, left
    assert left["requests_alive"] == 0, left
    assert left["released_on_openvino_threads"] == [], left


async def test_aclose_returns_after_the_last_callback_and_the_watchdog() -> None:
    log = ReleaseLog()
    model = await aioinfer.load(models.slow_conv(size=48, layers=2), device="CPU", config=models.EXACT)
    log.watch(model)
    calls = [asyncio.create_task(model.infer(np.full((1, 3, 48, 48), i, np.float32))) for i in range(32)]
    await asyncio.sleep(0)  # one loop step: every job submitted, some running
    await model.aclose()
    assert [float(c.result()[0][0, 0]) for c in calls] == [float(i) for i in range(32)]
    assert not model._pool._watchdog.is_alive()
    assert log.alive() == 1  # only the request that owns the compiled model, until the model dies
    assert log.on_openvino_threads() == []


def test_aclose_from_another_event_loop_leaves_the_model_intact() -> None:
    loop = asyncio.new_event_loop()
    try:
        model = loop.run_until_complete(
            aioinfer.load(models.slow_conv(size=48, layers=2), device="CPU", config=models.EXACT)
        )
        call = loop.create_task(model.infer(np.full((1, 3, 48, 48), 3, np.float32)))
        loop.run_until_complete(asyncio.sleep(0))  # the job is on the device
        with pytest.raises(aioinfer.EventLoopError, match="event loop it was loaded in"):
            asyncio.run(model.aclose())
        assert not model.closed
        assert float(loop.run_until_complete(call)[0][0, 0]) == 3.0
        out = loop.run_until_complete(model.infer(np.full((1, 3, 48, 48), 4, np.float32)))
        assert float(out[0][0, 0]) == 4.0
        loop.run_until_complete(model.aclose())
        assert model.closed
    finally:
        loop.close()


def test_a_model_collected_on_a_callback_thread_is_released_by_the_reaper() -> None:
    """The garbage collector can run on OpenVINO's callback thread (it allocates) and collect a model
    there; the request that owns its compiled model must then be released on the reaper thread. The
    callback thread is stood in for by a Python thread inside the scope aioinfer's callbacks run in."""

    async def load_and_close() -> aioinfer.AsyncModel:
        model = await aioinfer.load(models.linear(), device="CPU", config=models.EXACT)
        await model.aclose()
        return model

    model = asyncio.run(load_and_close())
    # a cycle asyncio.run left behind (its task holds the result) may hold the model too: collected
    # here, it lets go, so that only ``holder`` keeps the model. Else the model dies whenever the
    # collector runs, on any thread, maybe while this thread looks at ``released_on`` (seen once)
    gc.collect()
    assert sys.getrefcount(model) == 2  # this name, and getrefcount's own argument
    released_on: list[str] = []
    ref = weakref.ref(model._keeper, lambda _: released_on.append(threading.current_thread().name))
    holder = [model]
    del model

    def collect_in_callback() -> None:
        with _reaper.IN_CALLBACK:
            holder.clear()

    thread = threading.Thread(target=collect_in_callback, name="stand-in-callback")
    thread.start()
    thread.join()
    _reaper.join()
    assert ref() is None
    assert released_on == ["aioinfer-reaper"]


if __name__ == "__main__":  # the child of run_cycles_in_child
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    device, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(json.dumps(asyncio.run(cycles(device, n, close=mode == "close"))))
