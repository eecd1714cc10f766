"""The server's bounds against slow or piled-up clients (aioinfer/_server.py): a request's headers
must arrive within ``header_timeout`` seconds, and at most ``max_connections`` connections are open;
on a real uvicorn on loopback, over raw sockets, with both of uvicorn's HTTP/1.1 parsers. And the
app's bound on the work of JSON (``max_json_values``), which holds the GIL while it is parsed or
built, so every other request waits for it: JSON bodies and answers beyond it are refused (413),
binary tensors are not bound by it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import models
import numpy as np
import openvino as ov
import pytest
import uvicorn
from servers import Serving, npy, serving

import aioinfer
from aioinfer._cli import main
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


# -- max_json_values: what JSON may cost, in and out ----------------------------------------------

JSON_LIMIT = 1000  # small, so that the bodies stay small and the tests fast


@pytest.fixture
async def wide_model() -> AsyncIterator[aioinfer.AsyncModel]:
    """``y = 2x + 1`` on ``x`` [1, ?] f32: one row of any length."""
    async with aioinfer.load(models.linear([1, -1]), device="CPU", config=models.EXACT) as model:
        yield model


def v1_json(n: int) -> bytes:
    """``{"inputs": [[0.5, ...]]}`` with ``n`` values: n + 4 counted (the top value, the key,
    its value and the row)."""
    return b'{"inputs": [[' + b",".join([b"0.5"] * n) + b"]]}"


def v2_json(n: int) -> bytes:
    """An OIP request of ``x`` [1, n] as flat JSON ``data``: n + 14 values counted (the top value,
    the keys, the lists, the two dimensions)."""
    x = {"name": "x", "shape": [1, n], "datatype": "FP32", "data": [0.5] * n}
    return json.dumps({"inputs": [x]}).encode()


def v2_binary(x: np.ndarray, binary_out: bool) -> tuple[bytes, dict[str, str]]:
    """An OIP request of ``x`` as binary tensor data, its output ``y`` asked binary or JSON."""
    tensor = {
        "name": "x",
        "shape": list(x.shape),
        "datatype": "FP32",
        "parameters": {"binary_data_size": x.nbytes},
    }
    outputs = [{"name": "y", "parameters": {"binary_data": binary_out}}]
    head = json.dumps({"inputs": [tensor], "outputs": outputs}).encode()
    return head + x.tobytes(), {"inference-header-content-length": str(len(head))}


def assert_refused(response: httpx.Response, *words: str) -> None:
    """A 413 whose message (``/v1``: ``message``; ``/v2``: ``error``) has all of ``words``."""
    assert response.status_code == 413, response.text[:300]
    body = response.json()
    message = body.get("message", body["error"])
    for word in words:
        assert word in message, (word, message)


async def test_a_json_body_over_max_json_values_is_refused_413_and_one_at_it_is_served(wide_model):
    app = create_app(wide_model, max_json_values=JSON_LIMIT, batching="off")
    async with serving(app) as client:
        at_limit = await client.post("/v1/infer", content=v1_json(JSON_LIMIT - 4))
        assert at_limit.status_code == 200, at_limit.text[:300]
        assert at_limit.json()["outputs"]["y"] == [[2.0] * (JSON_LIMIT - 4)]
        over = await client.post("/v1/infer", content=v1_json(JSON_LIMIT - 3))
        assert_refused(over, "1001 values", "max_json_values=1000", "application/x-npy")
        assert (await client.get("/health/live")).status_code == 200
        again = await client.post("/v1/infer", content=v1_json(3))
        assert again.json() == {"outputs": {"y": [[2.0, 2.0, 2.0]]}}

        infer = "/v2/models/linear/infer"
        at_limit = await client.post(infer, content=v2_json(JSON_LIMIT - 14))
        assert at_limit.status_code == 200, at_limit.text[:300]
        assert at_limit.json()["outputs"][0]["data"] == [2.0] * (JSON_LIMIT - 14)
        over = await client.post(infer, content=v2_json(JSON_LIMIT - 13))
        assert_refused(over, "1001 values", "max_json_values=1000", "binary_data_size")
        assert (await client.get("/v2/health/ready")).status_code == 200
        again = await client.post(infer, content=v2_json(2))
        assert again.json()["outputs"][0]["data"] == [2.0, 2.0]
        assert (await client.get("/v1/info")).json()["limits"]["max_json_values"] == JSON_LIMIT
    assert wide_model.stats().failed == 0


async def test_binary_tensors_are_not_bound_by_max_json_values_but_json_answers_are(wide_model):
    app = create_app(wide_model, max_json_values=JSON_LIMIT, batching="off")
    x = np.arange(100_000, dtype=np.float32).reshape(1, -1) / 8  # 100x the limit
    async with serving(app) as client:
        body, headers = v2_binary(x, binary_out=True)  # its JSON header holds 22 values
        answer = await client.post("/v2/models/linear/infer", content=body, headers=headers)
        assert answer.status_code == 200, answer.text[:300]
        length = int(answer.headers["inference-header-content-length"])
        np.testing.assert_array_equal(np.frombuffer(answer.content[length:], np.float32), 2 * x[0] + 1)
        body, headers = v2_binary(x, binary_out=False)
        refused = await client.post("/v2/models/linear/infer", content=body, headers=headers)
        assert_refused(refused, "100000 values", "max_json_values=1000", "binary_data")

        npy_in = {"content-type": "application/x-npy"}
        answer = await client.post(
            "/v1/infer", content=npy(x), headers={**npy_in, "accept": "application/x-npy"}
        )
        assert answer.status_code == 200, answer.text[:300]
        np.testing.assert_array_equal(np.load(io.BytesIO(answer.content)), 2 * x + 1)
        refused = await client.post("/v1/infer", content=npy(x), headers=npy_in)  # answered as JSON
        assert_refused(refused, "outputs hold 100000 values", "max_json_values=1000", "application/x-npz")
        assert (await client.get("/health/live")).status_code == 200


async def test_patch_settings_is_bound_by_max_json_values():
    async with models.channel_task() as task, serving(create_app(task, max_json_values=JSON_LIMIT)) as client:
        bomb = b'{"top_k": [' + b",".join([b"1"] * JSON_LIMIT) + b"]}"
        assert_refused(await client.patch("/v1/settings", content=bomb), "max_json_values=1000")
        patched = await client.patch("/v1/settings", json={"top_k": 2})
        assert patched.status_code == 200 and patched.json()["top_k"] == 2


async def test_serve_max_json_values_flag_reaches_the_app(tmp_path):
    ov.save_model(models.linear(), tmp_path / "linear.xml")  # x [?, 4]
    async with (
        Serving(tmp_path / "linear.xml", "--max-json-values", "1000") as server,
        httpx.AsyncClient(base_url=server.url, timeout=60) as client,
    ):
        await server.wait_for_line("ready on CPU")
        assert (await client.get("/v1/info")).json()["limits"]["max_json_values"] == 1000
        rows = json.dumps({"inputs": [[1, 2, 3, 4]] * 200}).encode()  # 5 x 200 + 3 values
        refused = await client.post("/v1/infer", content=rows)
        assert_refused(refused, "1003 values", "max_json_values=1000")
        served = await client.post("/v1/infer", json={"inputs": [[1, 2, 3, 4]] * 199})  # 998
        assert served.status_code == 200 and served.json()["outputs"]["y"][198] == [3, 5, 7, 9]


@pytest.mark.parametrize("value", [0, -1, "x", 2.5, True])
async def test_create_app_refuses_a_max_json_values_that_bounds_nothing(linear_model, value):
    with pytest.raises(ValueError, match=rf"^max_json_values must be an integer >= 1, got {value!r}$"):
        create_app(linear_model, max_json_values=value)
    assert create_app(linear_model).state.service.max_json_values == 300_000  # the default


@pytest.mark.parametrize("text", ["0", "-1", "x", "2.5"])
def test_serve_refuses_a_max_json_values_that_is_not_a_positive_integer(text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "m.xml", "--max-json-values", text])
    assert exit_info.value.code == 2
    assert "argument --max-json-values: expected an integer" in capsys.readouterr().err
