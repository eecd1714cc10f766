"""Where infer requests are released when their owner dies somewhere unsafe: the requests of a pool
dropped without ``aclose()``, or a model collected on one of OpenVINO's callback threads.

Two destructors can freeze the process:

* An ``InferRequest``'s waits for the request's job to finish. On OpenVINO's own callback thread
  (where the last reference to an abandoned pool can die) that wait never ends: the thread is stuck.
* A ``CompiledModel``'s joins the device's threads while holding the GIL, and on AUTO one of those
  threads may be waiting for the GIL to release a request's Python callback. A request's destructor
  releases the GIL, so ``AsyncModel`` lets a spare request own the compiled model: the compiled model
  then always dies inside a request's destructor, never holding the GIL, and never on its own thread.

So such requests are handed to one reaper thread, which waits for each without the GIL and only then
drops it.
"""

from __future__ import annotations

import contextlib
import queue
import threading

import openvino as ov

# a Queue's put() is Python code whose frame still holds the item after waking the reaper; SimpleQueue's is C
_pending: queue.SimpleQueue[ov.InferRequest] = queue.SimpleQueue()
_state = threading.Condition(threading.RLock())  # guards _unfinished and _thread
_unfinished = 0  # buried, not yet released
_thread: threading.Thread | None = None
_callback = threading.local()  # ``active`` while this thread runs one of aioinfer's OpenVINO callbacks


def start() -> None:
    """Start the reaper thread if it is not running. Called where requests are made, never from
    :func:`bury`: that runs in destructors, in the garbage collector, where starting a thread can
    wait on what the collecting thread holds (a process froze so once, in ``Thread.start``)."""
    global _thread
    with _state:
        if _thread is None:
            _thread = threading.Thread(target=_reap, name="aioinfer-reaper", daemon=True)
            _thread.start()


def bury(owner: object, attribute: str) -> None:
    """Take the infer request ``owner.attribute`` away from ``owner`` (leaving None) and release it
    on the reaper thread (see :func:`start`) once its current job, if any, has finished.

    Safe to call from any thread, OpenVINO's callback threads included, and from ``__del__``. The
    request passes straight from ``owner`` into the queue: no frame of this thread holds it after
    the call, so it is never destroyed here, even if the reaper is done with it at once."""
    global _unfinished
    with _state:  # reentrant: a collection inside this block may bury too
        _unfinished += 1
    _pending.put(_take(owner, attribute))


def bury_all(requests: list[ov.InferRequest | None]) -> None:
    """:func:`bury` each request of ``requests`` (leaving None in its place)."""
    global _unfinished
    for index in range(len(requests)):  # no iterator may keep a reference behind (enumerate's tuple would)
        if requests[index] is not None:
            with _state:
                _unfinished += 1
            _pending.put(_take_item(requests, index))


def _take_item(requests: list[ov.InferRequest | None], index: int) -> ov.InferRequest:
    request = requests[index]
    requests[index] = None
    return request


def _take(owner: object, attribute: str) -> ov.InferRequest:
    request = getattr(owner, attribute)
    setattr(owner, attribute, None)
    return request


def join() -> None:
    """Block until every request buried so far has been released (for tests and orderly shutdowns)."""
    with _state:
        _state.wait_for(lambda: _unfinished == 0)


def on_callback_thread() -> bool:
    """Whether this thread is running an OpenVINO completion callback of aioinfer's right now."""
    return getattr(_callback, "active", False)


class _CallbackScope:
    """``with IN_CALLBACK:`` marks the current thread as running an OpenVINO callback while it lasts
    (objects collected meanwhile, even by the garbage collector, then know to go to the reaper)."""

    def __enter__(self) -> None:
        _callback.active = True

    def __exit__(self, *exc: object) -> None:
        _callback.active = False


IN_CALLBACK = _CallbackScope()


def _reap() -> None:
    global _unfinished
    while True:
        request = _pending.get()
        with contextlib.suppress(Exception):  # raised if the job failed or was cancelled: it is over
            request.wait()  # without the GIL
        del request  # idle now: its destructor returns at once (and releases the GIL meanwhile)
        with _state:
            _unfinished -= 1
            _state.notify_all()
