"""Sequences of the Open Inference Protocol: a served stateful model's streams, each a Session.

Clients mark a stream's requests with the request parameters Triton's clients send:
``sequence_id`` (a non-zero integer or a non-empty string), ``sequence_start`` (true on the first
request: a new session, the state reset) and ``sequence_end`` (true on the last: the session ends
after it). A sequence idle for longer than the idle timeout is ended, so an abandoned one does not
hold its infer request for ever.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from ._errors import DecodeError, SessionError
from ._model import AsyncModel
from ._session import Session

SequenceId = int | str


@dataclass(frozen=True)
class SequenceParams:
    """A request's place in its sequence."""

    id: SequenceId
    start: bool = False
    end: bool = False


def sequence_params(params: Mapping[str, Any]) -> SequenceParams | None:
    """The sequence parameters of a request's ``parameters``, checked; ``None`` without any."""
    if "sequence_id" not in params:
        stray = [key for key in ("sequence_start", "sequence_end") if key in params]
        if stray:
            raise DecodeError(f"{stray[0]} was sent without sequence_id: send both")
        return None
    sid = params["sequence_id"]
    if isinstance(sid, bool) or not isinstance(sid, (int, str)) or sid in (0, ""):
        raise DecodeError(f"sequence_id must be a non-zero integer or a non-empty string, got {sid!r:.50}")
    flags = {key: params.get(key, False) for key in ("sequence_start", "sequence_end")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise DecodeError(f"{key} must be a boolean, got {value!r:.50}")
    return SequenceParams(sid, flags["sequence_start"], flags["sequence_end"])


class _Open:
    __slots__ = ("busy", "last_used", "session")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.busy = 0  # requests of the sequence in progress
        self.last_used = anyio.current_time()


class Sequences:
    """The open sequences of one served model, each on its own session."""

    def __init__(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        self._open: dict[SequenceId, _Open] = {}

    def __len__(self) -> int:
        return len(self._open)

    @contextlib.asynccontextmanager
    async def session(
        self, model: AsyncModel, params: SequenceParams, timeout: float | None
    ) -> AsyncIterator[Session]:
        """The session of ``params``'s sequence for one request: a new one on ``sequence_start``
        (ending an open one of the same id), ended after the request on ``sequence_end``. Raises
        :class:`SessionError` for a sequence that is not open."""
        self.expire()
        if params.start:
            entry = _Open(await model.session(timeout=timeout))
            self._end(params.id)
            self._open[params.id] = entry
        else:
            found = self._open.get(params.id)
            if found is None:
                raise SessionError(
                    f"sequence {params.id!r} is not open: start it with sequence_start=true (a sequence "
                    f"idle for more than {self.idle_timeout:g} s is ended)"
                )
            entry = found
        entry.busy += 1
        try:
            yield entry.session
        finally:
            entry.busy -= 1
            entry.last_used = anyio.current_time()
            if params.end and self._open.get(params.id) is entry:
                self._end(params.id)

    def expire(self) -> None:
        """End the sequences idle for longer than the idle timeout."""
        now = anyio.current_time()
        for sid, entry in list(self._open.items()):
            if not entry.busy and now - entry.last_used > self.idle_timeout:
                self._end(sid)

    def close(self) -> None:
        """End every sequence (the model is closing)."""
        for sid in list(self._open):
            self._end(sid)

    def _end(self, sid: SequenceId) -> None:
        entry = self._open.pop(sid, None)
        if entry is not None:
            entry.session.end()
