"""The HTTP sessions of remote models (``aioinfer._remote._sessions``: aiohttp on asyncio and uvloop,
httpx on trio) against a loopback HTTP/1.1 server written by hand that counts connections and
requests: connections are kept alive and reused, a request that a kept-alive connection lost
unanswered is sent once more on a new one, and a request a new connection lost is never sent
twice (the server may have acted on it)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import pytest
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

import aioinfer
from aioinfer import _bridge
from aioinfer._remote._model import Bounds
from aioinfer._remote._sessions import Session, session

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]  # asyncio, uvloop: aiohttp; trio: httpx
GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, anyio.IncompleteRead)


class CountingServer:
    """Answers every request ``200 ok-N`` (N: the request's number, from 1) on keep-alive
    connections, except that a request numbered in ``drop`` is read and its connection closed
    unanswered. ``connections``: accepted so far; ``requests``: the (connection, body) of each."""

    def __init__(self, drop: set[int]) -> None:
        self.drop = drop
        self.connections = 0
        self.requests: list[tuple[int, bytes]] = []
        self.heads: list[bytes] = []  # each request's head, lower case
        self.url = ""

    async def handle(self, stream: SocketStream) -> None:
        self.connections += 1
        connection = self.connections
        reader = BufferedByteReceiveStream(stream)
        async with stream:
            with contextlib.suppress(*GONE):
                while head := await reader.receive_until(b"\r\n\r\n", 2**16):
                    self.heads.append(head.lower())
                    length = next(
                        (
                            int(line.split(b":")[1])
                            for line in head.lower().split(b"\r\n")
                            if line.startswith(b"content-length:")
                        ),
                        0,
                    )
                    self.requests.append(
                        (connection, await reader.receive_exactly(length) if length else b"")
                    )
                    if len(self.requests) in self.drop:
                        return  # the connection closes, the request unanswered
                    body = b"ok-%d" % len(self.requests)
                    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))


@contextlib.asynccontextmanager
async def serving(
    drop: set[int], headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[CountingServer, Session]]:
    server = CountingServer(drop)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server.url = f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}/v2/models/m"
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, server.handle)
        client = session(
            _bridge.current().backend,
            server.url,
            headers=headers or {},
            connect_timeout=5,
            bounds=Bounds(2**20, 1000),
        )
        try:
            yield server, client
        finally:
            await client.aclose()
            tasks.cancel_scope.cancel()


async def test_connections_are_kept_alive_and_reused() -> None:
    async with serving(drop=set()) as (server, client):
        for n in range(1, 6):
            status, _, body = await client.send("POST", server.url, b"x%d" % n, {})
            assert (status, body) == (200, b"ok-%d" % n)
    assert server.connections == 1
    assert [body for _, body in server.requests] == [b"x1", b"x2", b"x3", b"x4", b"x5"]


async def test_a_request_a_kept_alive_connection_lost_is_sent_again_on_a_new_one() -> None:
    """The keep-alive race (the server closes an idle connection as the request goes out): the
    second request, on the first request's connection, is lost unanswered, then answered on a
    second connection; the caller only sees the answer."""
    async with serving(drop={2}) as (server, client):
        assert (await client.send("POST", server.url, b"a", {}))[2] == b"ok-1"
        assert (await client.send("POST", server.url, b"b", {}))[2] == b"ok-3"
    assert server.requests == [(1, b"a"), (1, b"b"), (2, b"b")]


async def test_a_request_a_new_connection_lost_is_not_sent_twice() -> None:
    async with serving(drop={1}) as (server, client):
        with pytest.raises(aioinfer.ServerConnectionError, match=r"127\.0\.0\.1"):
            await client.send("POST", server.url, b"a", {})
        assert server.requests == [(1, b"a")]
        assert (await client.send("POST", server.url, b"b", {}))[2] == b"ok-2"  # and it still works


async def test_a_request_lost_again_after_its_retry_fails() -> None:
    """Sent once more at most: lost on its kept-alive connection and on the new one, it fails."""
    async with serving(drop={2, 3}) as (server, client):
        await client.send("POST", server.url, b"a", {})
        with pytest.raises(aioinfer.ServerConnectionError):
            await client.send("POST", server.url, b"b", {})
    assert server.requests == [(1, b"a"), (1, b"b"), (2, b"b")]


async def test_a_request_lost_on_a_new_connection_after_others_is_not_sent_twice() -> None:
    """Whether a connection was reused is what counts, not whether the session has been answered
    before: after its connection is gone, a session's next request goes out on a new connection,
    and losing it there is final."""
    async with serving(drop={2, 3, 4}) as (server, client):
        await client.send("POST", server.url, b"a", {})
        with pytest.raises(aioinfer.ServerConnectionError):
            await client.send("POST", server.url, b"b", {})
        with pytest.raises(aioinfer.ServerConnectionError):
            await client.send("POST", server.url, b"c", {})
    assert server.requests == [(1, b"a"), (1, b"b"), (2, b"b"), (3, b"c")]


async def test_answers_are_asked_for_uncompressed_whatever_the_callers_headers_say() -> None:
    headers = {"Accept-Encoding": "gzip, br", "x-token": "t"}
    async with serving(drop=set(), headers=headers) as (server, client):
        assert (await client.send("POST", server.url, b"a", {}))[2] == b"ok-1"
    [head] = server.heads
    assert [line for line in head.split(b"\r\n") if line.startswith(b"accept-encoding:")] == [
        b"accept-encoding: identity"
    ]
    assert b"x-token: t" in head.split(b"\r\n")
