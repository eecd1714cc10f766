"""HTTP/1.1 keep-alive sessions for the Open Inference Protocol's client: one request at a time per
connection, as many connections as requests in flight, each answer read whole within
``max_answer_bytes`` (as declared and as read) and nothing past it. Answers are asked for and
taken uncompressed only: tensors hardly compress, and a compressed body's decoded size is only
known once decoded. On asyncio (and uvloop) on aiohttp, whose C parser costs a third of httpx's CPU
a request; on trio on httpx. Redirects are not followed (they would send the tensors wherever a
server says). A request sent on a kept-alive connection that the server closed as it
went out (no answer came) is sent once more on a new connection; any other failure is not
retried."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from types import SimpleNamespace
from typing import Any, Protocol

from .._errors import InferenceError, ServerConnectionError
from ._model import Bounds

KEEPALIVE_S = 2.0  # an idle connection is closed after this many seconds
IDENTITY = {"accept-encoding": "identity"}  # over the caller's headers: see the module's doc
Answer = tuple[int, Mapping[str, str], bytes]  # status, headers, body


class Session(Protocol):
    """Requests to one server."""

    async def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        """The server's answer; :class:`TooLargeError` past ``max_answer_bytes``,
        :class:`ServerConnectionError` if the server cannot be reached or the connection is lost."""
        ...

    async def aclose(self) -> None:
        """Close every connection. Idempotent."""
        ...


def session(
    backend: str, url: str, *, headers: Mapping[str, str], connect_timeout: float, bounds: Bounds
) -> Session:
    """A session to the server of ``url`` for the event loop ``backend`` (``asyncio``, ``trio``)."""
    if backend == "asyncio":
        return AiohttpSession(url, headers=headers, connect_timeout=connect_timeout, bounds=bounds)
    return HttpxSession(url, headers=headers, connect_timeout=connect_timeout, bounds=bounds)


class AiohttpSession:
    """A :class:`Session` on one ``aiohttp.ClientSession``, its connections pooled by aiohttp."""

    def __init__(
        self, url: str, *, headers: Mapping[str, str], connect_timeout: float, bounds: Bounds
    ) -> None:
        import aiohttp

        self._url = url
        self._bounds = bounds
        self._errors = aiohttp.ClientError
        self._stale = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
        tracing = aiohttp.TraceConfig()
        tracing.on_connection_reuseconn.append(_reused)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S),
            # connect: name resolution and connecting (no pool to wait for: limit=0)
            timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout),
            headers=_identity(headers),
            trace_configs=[tracing],
            auto_decompress=False,
        )

    async def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        sent = SimpleNamespace(reused=False)  # set by _reused
        try:
            try:
                return await self._send(method, url, body, headers, sent)
            except self._stale:
                if not sent.reused:
                    raise
                return await self._send(method, url, body, headers, SimpleNamespace(reused=False))
        except self._errors as exc:
            raise ServerConnectionError(f"cannot reach {self._url}: {exc!r}") from exc

    async def _send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], sent: SimpleNamespace
    ) -> Answer:
        async with self._session.request(
            method, url, data=body, headers=headers, trace_request_ctx=sent, allow_redirects=False
        ) as response:
            try:
                return response.status, response.headers, await self._read(response)
            except BaseException:
                response.close()  # not given back to the pool: its answer was not read whole
                raise

    async def _read(self, response: Any) -> bytes:
        if response.content_length is not None and "content-encoding" not in response.headers:
            self._bounds.check_bytes(response.content_length)
            return await response.read()  # type: ignore[no-any-return]  # no more than declared
        return await read_within(response.headers, response.content.iter_any(), self._bounds)

    async def aclose(self) -> None:
        await self._session.close()


async def read_within(headers: Mapping[str, str], chunks: AsyncIterator[bytes], bounds: Bounds) -> bytes:
    """The body of an answer with ``headers`` from its raw ``chunks``, refused as soon as it is
    declared or read over ``bounds.max_answer_bytes`` (:class:`TooLargeError`), or if it is
    compressed (:class:`InferenceError`)."""
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise InferenceError(
            f"the server compressed its answer (Content-Encoding: {encoding[:40]}) though this client "
            "asks for and reads only uncompressed ones (Accept-Encoding: identity)"
        )
    declared = headers.get("content-length", "")
    if declared.isdigit():
        bounds.check_bytes(int(declared))
    body, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        bounds.check_bytes(size)
        body.append(chunk)
    return b"".join(body)


def _identity(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` asking for uncompressed answers, whatever encoding they asked for."""
    return {**{k: v for k, v in headers.items() if k.lower() != "accept-encoding"}, **IDENTITY}


async def _reused(session: Any, context: Any, params: Any) -> None:
    """aiohttp's trace hook of a request sent on a kept-alive connection."""
    context.trace_request_ctx.reused = True


async def _connected(sent: SimpleNamespace, event: str, info: Any) -> None:
    """httpcore's trace hook: a request that opens a connection was not sent on a reused one."""
    if event.startswith("connection.connect_"):  # connect_tcp, connect_unix_socket: .started
        sent.reused = False


@functools.cache
def _tls_context() -> Any:
    """httpx's verifying TLS context, made once a process: each takes ~30 ms of CPU, and every
    ``httpx.AsyncClient`` made without one makes its own."""
    import httpx

    return httpx.create_ssl_context()


class HttpxSession:
    """A :class:`Session` on ``httpx.AsyncClient`` objects of one connection each, made as needed
    and kept for the next request. (httpx's shared pool scans all its connections, polling each
    socket, for every request it assigns, which at 64 connections costs more than the request.)"""

    def __init__(
        self, url: str, *, headers: Mapping[str, str], connect_timeout: float, bounds: Bounds
    ) -> None:
        import httpx

        self._url = url
        self._bounds = bounds
        self._transport_error = httpx.TransportError
        self._stale = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
        self._options: dict[str, Any] = {
            "headers": _identity(headers),
            "timeout": httpx.Timeout(None, connect=connect_timeout),
            # idle connections are dropped here before a server does (uvicorn after 5 s, httpx's
            # own default too): a request sent as the server closes its connection fails
            "limits": httpx.Limits(
                max_connections=1, max_keepalive_connections=1, keepalive_expiry=KEEPALIVE_S
            ),
            "verify": _tls_context(),
        }
        self._clients: list[Any] = []  # every one made, idle or not
        self._idle: list[Any] = []

    async def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        client = self._client()
        sent = SimpleNamespace(reused=True)  # until httpcore's trace says it connected
        request = client.build_request(
            method,
            url,
            content=body,
            headers=headers,
            extensions={"trace": functools.partial(_connected, sent)},
        )
        try:
            try:
                response = await client.send(request, stream=True)
            except self._stale:
                if not sent.reused:
                    raise
                response = await client.send(request, stream=True)
            try:
                answer = await self._read(response)
            finally:
                await response.aclose()
        except self._transport_error as exc:
            raise ServerConnectionError(f"cannot reach {self._url}: {exc!r}") from exc
        finally:
            self._idle.append(client)
        return response.status_code, response.headers, answer

    async def _read(self, response: Any) -> bytes:
        return await read_within(response.headers, response.aiter_raw(), self._bounds)

    def _client(self) -> Any:
        """An idle client (its connection open, if the server kept it), or a new one."""
        if self._idle:
            return self._idle.pop()
        import httpx

        client = httpx.AsyncClient(**self._options)
        self._clients.append(client)
        return client

    async def aclose(self) -> None:
        clients, self._clients, self._idle = self._clients, [], []
        for client in clients:
            await client.aclose()
