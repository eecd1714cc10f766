"""What the tests of live sources run against: a TCP server on 127.0.0.1 that accepts connections
and never answers (a hung camera, a half-dead proxy), a free port, and how a test consumes a source
in a task and waits for a condition on its stats."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable

import anyio
from frames import source_threads

import aioinfer


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port of 127.0.0.1 nobody listens on (TCP, or UDP with ``socket.SOCK_DGRAM``)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HungServer:
    """Accepts TCP connections on 127.0.0.1 (``port``, a free one by default) and never sends a
    byte; ``accepted`` is set at the first connection; ``close()`` hangs up on every client."""

    def __init__(self, port: int = 0) -> None:
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self._listener.getsockname()[1]
        self.accepted = threading.Event()
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            self._clients.append(client)
            self.accepted.set()

    def close(self) -> None:
        """Stop listening and hang up on every client (idempotent)."""
        with contextlib.suppress(OSError):  # already closed
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone would not)
        self._listener.close()
        self._thread.join()
        for client in self._clients:
            client.close()


async def consume(source: aioinfer.FrameSource, until: int | None = None) -> list[aioinfer.Frame]:
    """The frames of ``source`` (opened and closed here); breaks out after ``until`` frames."""
    got: list[aioinfer.Frame] = []
    async with source as frames:
        async for frame in frames:
            got.append(frame)
            if until is not None and len(got) >= until:
                break
    return got


async def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    """Poll ``condition`` (cheap, on the loop) until it holds; TimeoutError after ``seconds``."""
    with anyio.fail_after(seconds):
        while not condition():
            await asyncio.sleep(0.02)


async def threads_end(seconds: float = 20.0) -> bool:
    """Whether every source reader thread has ended within ``seconds`` (joined off the loop)."""
    for thread in source_threads():
        await anyio.to_thread.run_sync(thread.join, seconds)
    return not source_threads()


async def give_up(
    how: str,
    source: aioinfer.FrameSource,
    consumer: asyncio.Future[object],
    resume: asyncio.Event | None = None,
) -> None:
    """End ``consumer`` (a task consuming ``source``) by ``how``: ``stop``, ``aclose``, ``cancel``, or
    ``break`` (``resume`` set: the consumer, parked on a frame, breaks out); returns once it ended."""
    if how == "stop":
        source.stop()
    elif how == "aclose":
        await source.aclose()
    elif how == "break":
        assert resume is not None
        resume.set()
    else:
        consumer.cancel()
    await asyncio.wait([consumer])  # cancelled by a hang guard, it is not cancelled with it
    assert consumer.cancelled() if how == "cancel" else consumer.exception() is None
