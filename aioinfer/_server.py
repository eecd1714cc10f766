"""Running an app under uvicorn until SIGTERM/SIGINT, then draining it and exiting cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import math
import signal
import socket
from collections.abc import Iterator
from typing import Any, ClassVar

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from ._app import Service
from ._checks import check_positive

SIGNALS = (signal.SIGINT, signal.SIGTERM)
log = logging.getLogger("aioinfer.serve")
# seconds between the app answering 503 to what still runs at the drain timeout and uvicorn
# cancelling what is left (which would answer 500): the 503s take milliseconds
ABORT_GRACE = 5
HEADER_TIMEOUT = 10.0  # seconds for a request's headers to arrive: a slow client is cut off then
MAX_CONNECTIONS = 1000  # connections open at once; those beyond are answered 503 and closed
_BUSY_TEXT = b"too many connections open (max_connections); retry later"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"retry-after: 1\r\ncontent-length: %d\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT)
)


class _Limited(asyncio.Protocol):
    """What uvicorn's HTTP/1.1 protocols lack against slow or piled-up clients (a mixin before one
    of them): a connection whose request headers are not all in ``header_timeout`` seconds after
    it opens, or after the first byte of a later request, is closed (a body has the app's
    ``body_timeout``; the idle time between requests uvicorn's keep-alive timeout); a connection
    beyond ``max_connections`` open ones is answered 503 and closed at once."""

    header_timeout: ClassVar[float] = HEADER_TIMEOUT
    max_connections: ClassVar[int] = MAX_CONNECTIONS
    # uvicorn's, set by the protocol this is mixed into
    transport: asyncio.Transport
    connections: set[Any]
    cycle: Any
    _headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("refused a connection: %d are open already (max_connections)", self.max_connections)
            self.transport.write(_BUSY)
            self.transport.close()
            return
        self._expect_headers()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if (
            self.cycle is not cycle
            or self.transport.is_closing()
            or self.transport.get_protocol() is not self
        ):
            self._headers_came()  # a request's headers are all in (or the connection is done)
        elif self._headers_due is None and (cycle is None or cycle.response_complete):
            self._expect_headers()  # the first bytes of a later request

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_came()
        super().connection_lost(exc)

    def _expect_headers(self) -> None:
        self._headers_due = asyncio.get_running_loop().call_later(self.header_timeout, self._headers_late)

    def _headers_came(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _headers_late(self) -> None:
        self._headers_due = None
        peer = self.transport.get_extra_info("peername")
        log.info(
            "closed the connection from %s: its request headers did not arrive within %g s (header_timeout)",
            peer,
            self.header_timeout,
        )
        self.transport.close()


def http_protocol(
    header_timeout: float = HEADER_TIMEOUT, max_connections: int = MAX_CONNECTIONS, parser: str = "auto"
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (``uvicorn.Config(http=...)``) bounded by ``header_timeout`` and
    ``max_connections`` (see :class:`_Limited`); ``parser``: ``"httptools"``, ``"h11"``, or
    ``"auto"`` (httptools when installed, as uvicorn's own choice). A limit that is not a finite
    number > 0 (an integer for ``max_connections``) raises ``ValueError`` naming it."""
    if parser == "auto":
        parser = "h11" if importlib.util.find_spec("httptools") is None else "httptools"
    base: type[asyncio.Protocol]
    if parser == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    elif parser == "h11":
        base = H11Protocol
    else:
        raise ValueError(f"parser must be 'auto', 'httptools' or 'h11', got {parser!r}")
    limits = {
        "header_timeout": check_positive("header_timeout", header_timeout),
        "max_connections": check_positive("max_connections", max_connections, integer=True),
    }
    return type(f"Limited{base.__name__}", (_Limited, base), limits)


class _Server(uvicorn.Server):
    """uvicorn's server, except that a signal ends it with a clean return, not by re-raising the
    signal after shutdown (which would make a drained, orderly exit look like a kill), and that
    requests still running at the drain timeout are answered 503 by the app rather than cancelled
    by uvicorn (a 500 with a ``CancelledError`` traceback)."""

    def __init__(
        self, config: uvicorn.Config, services: list[Service], drain_timeout: float, grpc_server: Any = None
    ) -> None:
        super().__init__(config)
        self.services = services
        self.drain_timeout = drain_timeout
        self.grpc_server = grpc_server  # a grpc.aio.Server drained with the HTTP requests, if any

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown (stop accepting, wait for the requests in flight), with the app's
        requests still running after ``drain_timeout`` seconds ended with a 503."""
        deadline = asyncio.get_running_loop().call_later(self.drain_timeout, self.abort)
        try:
            await super().shutdown(sockets)
        finally:
            deadline.cancel()

    async def _wait_tasks_to_complete(self) -> None:
        """uvicorn's wait for the HTTP requests in flight, beside the gRPC server's drain (it stops
        accepting at once): both end before the models close."""
        grace = self.drain_timeout + ABORT_GRACE / 2  # after abort() has answered what is left
        stopping = [self.grpc_server.stop(grace)] if self.grpc_server is not None else []
        await asyncio.gather(super()._wait_tasks_to_complete(), *stopping)

    def abort(self) -> None:
        """End every model's requests still running with a 503."""
        for service in self.services:
            service.abort()

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


async def _start_grpc(app: Starlette, host: str, port: int) -> Any:
    """The app's models served over gRPC on ``host:port`` (started), messages bounded by the
    largest ``max_body_bytes``; RuntimeError if it cannot bind."""
    from . import _grpc

    limit = max(s.max_body_bytes for s in app.state.services.values())
    grpc_server, bound = _grpc.server(app.state.services, f"{host}:{port}", limit)
    await grpc_server.start()
    log.info("gRPC (inference.GRPCInferenceService) running on %s:%d", host, bound)
    return grpc_server


async def serve(
    app: Starlette,
    *,
    host: str,
    port: int,
    drain_timeout: float,
    log_level: str = "info",
    grpc_port: int | None = None,
    header_timeout: float = HEADER_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> int:
    """Serve ``app`` until a signal; stop accepting, let requests in flight finish (at most
    ``drain_timeout`` seconds; those still running then answer 503), close the models. Returns 0, or 1
    if a model failed to load (the server then stops at once). With ``grpc_port``, the Open Inference
    Protocol's gRPC service on that port too (0: any free one), over the same models, drained alike.
    A connection whose request headers take longer than ``header_timeout`` seconds is closed, one
    beyond ``max_connections`` open ones answered 503 (see :func:`http_protocol`)."""
    services: list[Service] = list(app.state.services.values())
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http_protocol(header_timeout, max_connections),
        lifespan="on",
        log_level=log_level,
        timeout_graceful_shutdown=math.ceil(drain_timeout + ABORT_GRACE),
    )
    try:
        grpc_server = await _start_grpc(app, host, grpc_port) if grpc_port is not None else None
    except RuntimeError as exc:  # grpc's "Failed to bind": the port is taken or not ours
        log.error("cannot serve gRPC on %s:%s: %s", host, grpc_port, exc)
        return 1
    server = _Server(config, services, drain_timeout, grpc_server)

    async def stop_if_load_fails() -> None:
        for service in services:
            await service.loaded.wait()
            if service.load_error:
                server.should_exit = True

    watcher = asyncio.create_task(stop_if_load_fails())
    try:
        await server.serve()
    finally:
        watcher.cancel()
        if grpc_server is not None:
            await grpc_server.stop(0)  # already stopped after a drain; at once if uvicorn failed
    failed = any(service.load_error for service in services)
    return 1 if failed or not server.started else 0
