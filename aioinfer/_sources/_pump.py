"""Where frames are pumped from a reader into the buffer: the body of a source's reader thread
(which opens the reader, off the loop), the task that reads an async source, and how a source's own
failure (a ``CancelledError`` included) is told apart from the consumer's stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable

import anyio

from .._errors import SourceError
from ._buffer import Buffer
from ._frame import Frame
from ._reader import Reader


def run_reader(reader: Reader, buffer: Buffer) -> None:
    """Body of the reader thread: opens the reader (telling the consumer once it is open), then
    pumps its frames. However it ends (the source's end, the consumer's stop, any exception of the
    source, even one raised while closing), it releases the capture on this thread and tells the
    consumer, handing over the source's exception to be raised at its position. A consumer that
    stopped may have stopped waiting for it (an open or a read that OpenCV cannot interrupt): it
    then ends on its own once OpenCV returns, and touches nothing of the consumer's but the buffer."""
    error: BaseException | None = None
    try:
        with contextlib.ExitStack() as closing:
            closing.callback(reader.close)
            reader.open(buffer.stopped)
            if not buffer.opened():
                return  # the consumer stopped while it was opening
            frames = closing.enter_context(contextlib.closing(reader.frames(buffer.stopped)))
            for frame in frames:
                if not buffer.put(frame):
                    break
    except BaseException as exc:  # nothing cancels a thread: every exception here is the source's
        error = source_failure(reader.name, exc)
    finally:
        buffer.finish(error)


async def pump(frames: AsyncGenerator[Frame, None], buffer: Buffer, name: str) -> None:
    """The reader task of an async source: what the reader thread is to the others. However it ends,
    it tells the consumer, handing over the source's error; only the consumer's stop cancels it."""
    error: BaseException | None = None
    try:
        error = await guard_source(_hand_over(frames, buffer), name, buffer.stopped.is_set)
    finally:
        buffer.finish(error)


async def _hand_over(frames: AsyncGenerator[Frame, None], buffer: Buffer) -> None:
    async with contextlib.aclosing(frames):
        async for frame in frames:
            if not await buffer.aput(frame):
                return


def source_failure(name: str, exc: BaseException) -> BaseException:
    """What the consumer raises when source ``name`` failed with ``exc`` while nobody cancelled it:
    ``exc`` itself, except a ``CancelledError``, which would pass for a cancellation of the consumer
    or for the end of the stream: a SourceError saying so, chained to it."""
    if not isinstance(exc, asyncio.CancelledError):
        return exc
    error = SourceError(
        f"source {name} raised CancelledError although nobody cancelled it: a failure of the "
        "source, not the end of the stream"
    )
    error.__cause__ = exc
    return error


async def guard_source(
    reading: Awaitable[None], name: str, stopping: Callable[[], bool]
) -> BaseException | None:
    """Await ``reading``, a task's loop over source ``name``; return ``None`` when the source ended,
    else what the consumer must raise (:func:`source_failure`). A cancellation of the task itself is
    re-raised: on trio any ``Cancelled`` (nothing else can raise one); on asyncio a CancelledError
    while ``stopping()``, the consumer's own request (otherwise the source raised it on its own)."""
    try:
        await reading
    except GeneratorExit:  # the task itself is being destroyed
        raise
    except BaseException as exc:  # the source failed: raised to the consumer at this position
        if _cancels_the_task(exc, stopping):
            raise
        return source_failure(name, exc)
    return None


def _cancels_the_task(exc: BaseException, stopping: Callable[[], bool]) -> bool:
    cancelled = anyio.get_cancelled_exc_class()
    if cancelled is asyncio.CancelledError:
        return isinstance(exc, cancelled) and stopping()
    return isinstance(exc, cancelled)
