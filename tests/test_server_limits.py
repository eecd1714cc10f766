"""The server's bounds against slow or piled-up clients (aioinfer/_server.py): a request's headers
must arrive within ``header_timeout`` seconds, and at most ``max_connections`` connections are open;
on a real uvicorn on loopback, over raw sockets, with both of uvicorn's HTTP/1.1 parsers."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import models
import openvino as ov
import pytest
import uvicorn
from servers import Serving

from aioinfer.asgi import create_app, http_protocol  # public: for users of their own uvicorn

pytestmark = pytest.mark.timeout(120)
PARSERS = ["httptools", "h11"]
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def limited(
    app: Any, parser: str, header_timeout: float, max_connections: int = 100
) -> AsyncIterator[int]:
    """``app`` under uvicorn with :func:`http_protocol`'s bounds, on a free loopback port (yielded)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections wait in the backlog until uvicorn accepts: no start-up race
    protocol = http_protocol(header_timeout, max_connections, parser)
    server = uvicorn.Server(uvicorn.Config(app, http=protocol, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


async def get(connection: Connection, path: str = "/health/live") -> int:
    """The status of ``GET path`` on ``connection``, its whole answer read (the connection stays open)."""
    reader, writer = connection
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    assert length is not None, head
    await reader.readexactly(int(length.group(1)))
    return int(head.split()[1])


async def trickle(writer: asyncio.StreamWriter, text: bytes) -> None:
    """Send ``text`` one byte at a time, 20 ms apart, until it is sent or the server hangs up."""
    with contextlib.suppress(OSError):
        for byte in text:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.02)  # the pace of a slow client, not a synchronization


async def hang_up(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection (waits for the close; a server that
    has not closed it after 30 s fails the test here rather than at its timeout)."""
    try:
        async with asyncio.timeout(30):
            return await reader.read()
    except ConnectionResetError:
        return b""
    except TimeoutError:
        raise AssertionError("the server kept the connection open") from None


SLOW_HEADERS = b"GET /health/live HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 5000  # never ends


@pytest.mark.parametrize("parser", PARSERS)
async def test_headers_trickled_past_the_header_timeout_close_the_connection_others_are_served(
    linear_model, parser
):
    async with limited(create_app(linear_model), parser, header_timeout=0.5) as port:
        kept = await asyncio.open_connection("127.0.0.1", port)
        assert await get(kept) == 200
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
        trickling = asyncio.create_task(trickle(slow_writer, SLOW_HEADERS))
        silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", port)  # sends nothing
        other = await asyncio.open_connection("127.0.0.1", port)
        assert [await get(other) for _ in range(3)] == [200] * 3  # served while the slow ones hang
        assert await hang_up(slow_reader) == b""  # closed, with no answer
        assert await hang_up(silent_reader) == b""
        trickling.cancel()
        # a keep-alive connection idle for longer than the header timeout between its requests is
        # still served (uvicorn's keep-alive timeout, 5 s, governs that idle time) ...
        assert await get(kept) == 200
        # ... but the headers of a later request on it are bounded as well
        kept_reader, kept_writer = kept
        trickling = asyncio.create_task(trickle(kept_writer, SLOW_HEADERS))
        assert await hang_up(kept_reader) == b""
        trickling.cancel()
        for writer in (slow_writer, silent_writer, other[1], kept_writer):
            writer.close()


@pytest.mark.parametrize("parser", PARSERS)
async def test_a_connection_beyond_max_connections_is_answered_503_and_closed(linear_model, parser):
    async with limited(create_app(linear_model), parser, header_timeout=30, max_connections=3) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for connection in held:
            assert await get(connection) == 200  # each is open on the server's side
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        refused = await hang_up(reader)
        assert refused.startswith(b"HTTP/1.1 503 ") and b"max_connections" in refused
        assert b"retry-after: 1" in refused.lower()
        assert [await get(connection) for connection in held] == [200] * 3  # the open ones go on
        for _, held_writer in held:
            held_writer.close()
        writer.close()


async def test_serve_header_timeout_flag_closes_a_connection_whose_headers_never_end(tmp_path):
    ov.save_model(models.linear(), tmp_path / "linear.xml")
    async with Serving(tmp_path / "linear.xml", "--header-timeout", "0.5") as server:
        host, port = server.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(SLOW_HEADERS[:40])  # the start of a request, then nothing
        await writer.drain()
        other = await asyncio.open_connection(host, int(port))
        assert await get(other, "/health/live") == 200
        assert await hang_up(reader) == b""
        await server.wait_for_line("did not arrive within 0.5 s (header_timeout)")
        assert await get(other, "/health/live") == 200
        writer.close()
        other[1].close()


@pytest.mark.parametrize(
    ("limits", "named"),
    [
        ({"header_timeout": float("nan")}, "header_timeout"),
        ({"header_timeout": 0}, "header_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": 2.5}, "max_connections"),
    ],
)
def test_http_protocol_refuses_limits_that_bound_nothing(limits: dict[str, float], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        http_protocol(**limits)  # type: ignore[arg-type]
