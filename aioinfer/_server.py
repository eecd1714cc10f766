"""Running an app under uvicorn until SIGTERM/SIGINT, then draining it and exiting cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from ._app import Service

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# seconds between the app answering 503 to what still runs at the drain timeout and uvicorn
# cancelling what is left (which would answer 500): the 503s take milliseconds
ABORT_GRACE = 5


class _Server(uvicorn.Server):
    """uvicorn's server, except that a signal ends it with a clean return, not by re-raising the
    signal after shutdown (which would make a drained, orderly exit look like a kill), and that
    requests still running at the drain timeout are answered 503 by the app rather than cancelled
    by uvicorn (a 500 with a ``CancelledError`` traceback)."""

    def __init__(self, config: uvicorn.Config, service: Service, drain_timeout: float) -> None:
        super().__init__(config)
        self.service = service
        self.drain_timeout = drain_timeout

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown (stop accepting, wait for the requests in flight), with the app's
        requests still running after ``drain_timeout`` seconds ended with a 503."""
        deadline = asyncio.get_running_loop().call_later(self.drain_timeout, self.service.abort)
        try:
            await super().shutdown(sockets)
        finally:
            deadline.cancel()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)


async def serve(
    app: Starlette, *, host: str, port: int, drain_timeout: float, log_level: str = "info"
) -> int:
    """Serve ``app`` until a signal; stop accepting, let requests in flight finish (at most
    ``drain_timeout`` seconds; those still running then answer 503), close the model. Returns 0, or 1
    if the model failed to load."""
    service: Service = app.state.service
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_level=log_level,
        timeout_graceful_shutdown=math.ceil(drain_timeout + ABORT_GRACE),
    )
    server = _Server(config, service, drain_timeout)

    async def stop_if_load_fails() -> None:
        await service.loaded.wait()
        if service.load_error:
            server.should_exit = True

    watcher = asyncio.create_task(stop_if_load_fails())
    try:
        await server.serve()
    finally:
        watcher.cancel()
    return 1 if service.load_error or not server.started else 0
