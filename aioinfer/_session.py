"""``Session``: one infer request pinned to a stream of calls, for models that keep state.

OpenVINO keeps a stateful model's state (ReadValue/Assign variables: a streaming recognizer, an RNN
over frames, a token cache) in the infer request. A session reserves one request of the model's
pool, resets its state, runs the stream's calls on it in the order they are made, and gives it back
when it ends (however it ends: exit, cancellation, or garbage collection of an abandoned one).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
from anyio.abc import AsyncResource

from ._errors import ClosedError, SessionError
from ._inputs import Inputs
from ._outputs import Outputs
from ._runner import Arrays

if TYPE_CHECKING:
    from ._model import AsyncModel
    from ._pool import RequestPool, _Slot


class Session(AsyncResource):
    """Calls that share one infer request, and so the model's state. Made by
    :meth:`AsyncModel.session`; use as ``async with model.session() as s: y = await s.infer(x)``."""

    def __init__(self, model: AsyncModel, pool: RequestPool, slot: _Slot) -> None:
        self.model = model
        self._pool = pool
        self._slot: _Slot | None = slot
        slot.request.reset_state()

    async def infer(self, inputs: Inputs, *, timeout: float | None = None) -> Outputs:
        """Run the model on ``inputs`` with this session's state, after the session's earlier calls.
        As :meth:`AsyncModel.infer`; a call given up while it ran (cancelled, timed out) leaves the
        state unknown: the next call raises :class:`SessionError` until :meth:`reset`."""
        self._live()
        return await self.run_adapted(self.model.adapt(inputs), timeout)

    __call__ = infer

    async def run_adapted(self, arrays: Arrays, timeout: float | None = None) -> Outputs:
        """:meth:`infer` for ``arrays`` made by the model's ``adapt`` (not checked again)."""
        slot = self._live()
        if slot.tainted:
            raise SessionError(
                "a call of this session was given up while it ran (cancelled or timed out): the "
                "state is unknown; call reset() or start a new session"
            )
        return await self._pool.run(arrays, timeout, slot)

    async def state(self) -> dict[str, np.ndarray]:
        """A copy of the session's state variables by name (empty for a model without state), once
        the calls already made are over."""
        request = await self._settled_request()
        return {s.name: np.array(s.state.data) for s in request.query_state()}

    async def reset(self) -> None:
        """Set the state back to the model's initial values, as at the session's start, once the
        calls already made are over (and clear the unknown state of a call given up)."""
        request = await self._settled_request()
        request.reset_state()
        self._live().tainted = False

    @property
    def closed(self) -> bool:
        return self._slot is None

    async def aclose(self) -> None:
        """End the session: its request goes back to the pool once the calls already made are
        over. Idempotent."""
        self.end()

    def end(self) -> None:
        """:meth:`aclose` without awaiting: usable from synchronous code."""
        slot, self._slot = self._slot, None
        if slot is not None:
            self._pool.unreserve(slot)

    def __del__(self) -> None:
        # abandoned without aclose(): the loop gives the request back. Not here: the garbage
        # collector may run this on a thread that holds the pool's lock (not reentrant)
        slot = getattr(self, "_slot", None)
        if slot is not None:
            self._pool._bridge.call_soon_threadsafe(functools.partial(self._pool.unreserve, slot))

    def _live(self) -> _Slot:
        if self._slot is None:
            raise SessionError("the session has ended: open a new one with model.session()")
        return self._slot

    async def _settled_request(self) -> Any:
        slot = self._live()
        await self._pool.settle(slot)
        if self._live().request is None:
            raise ClosedError("the model is closed: its requests and their state are released")
        return slot.request

    def __repr__(self) -> str:
        return f"<Session of {self.model.info.name!r} ({'ended' if self.closed else 'open'})>"


class SessionCalls:
    """``infer`` through one session of a model, opened at the first call (``map(session=True)``
    makes one call at a time); :meth:`end` ends it."""

    def __init__(self, model: AsyncModel) -> None:
        self._model = model
        self._session: Session | None = None
        self._ended = False

    async def __call__(self, inputs: Inputs) -> Outputs:
        if self._session is None:
            if self._ended:
                raise SessionError("the map's session has ended")
            self._session = await self._model.session()
        return await self._session.infer(inputs)

    def end(self) -> None:
        self._ended = True
        if self._session is not None:
            self._session.end()
