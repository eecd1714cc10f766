"""Running an app under uvicorn until SIGTERM/SIGINT, then draining it and exiting cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from ._app import Service

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    """uvicorn's server, except that a signal ends it with a clean return, not by re-raising the
    signal after shutdown (which would make a drained, orderly exit look like a kill)."""

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


async def serve(app: Starlette, *, host: str, port: int, drain_timeout: int, log_level: str = "info") -> int:
    """Serve ``app`` until a signal; stop accepting, let requests in flight finish (at most
    ``drain_timeout`` seconds), close the model. Returns 0, or 1 if the model failed to load."""
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="on", log_level=log_level, timeout_graceful_shutdown=drain_timeout
    )
    server = _Server(config)
    service: Service = app.state.service

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
