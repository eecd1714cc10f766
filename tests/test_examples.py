"""The web examples, run for real: FastAPI under uvicorn, aiohttp under its own server, on 127.0.0.1.
They are imported as uvicorn imports ``examples.fastapi_app:app`` from the repository's root, and
started by the commands their docstrings give."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from aiohttp import web
from servers import Serving, serving
from uvicorn.importer import import_from_string

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))  # the current directory, as uvicorn puts it on sys.path from the root

from examples import aiohttp_app  # noqa: E402

fastapi_app = import_from_string("examples.fastapi_app:app")


def text_png(text: str, *, upside_down: bool = False) -> bytes:
    image = np.full((48, 192, 3), 255, np.uint8)
    cv2.putText(image, text, (6, 34), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0), 2)
    if upside_down:
        image = cv2.rotate(image, cv2.ROTATE_180)
    return cv2.imencode(".png", image)[1].tobytes()


async def check_orientation(client: httpx.AsyncClient) -> None:
    upright, flipped = text_png("hello world"), text_png("hello world", upside_down=True)
    answers = await asyncio.gather(
        *(client.post("/orientation", content=body) for body in [upright, flipped] * 8)
    )
    assert [r.status_code for r in answers] == [200] * 16
    assert [r.json()["rotation"] for r in answers] == ["0", "180"] * 8
    bad = await client.post("/orientation", content=b"not an image")
    assert bad.status_code == 400 and bad.json()["error"] == "DecodeError" and "PNG or JPEG" in bad.text


async def test_fastapi_example_classifies_concurrent_uploads() -> None:
    async with serving(fastapi_app) as client:
        await check_orientation(client)
        info = await client.get("/model/v1/info")  # the aioinfer app mounted beside the route
        assert info.status_code == 200 and info.json()["model"]["num_requests"] >= 1


async def aiohttp_client(app: web.Application) -> tuple[web.AppRunner, httpx.AsyncClient]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60)


async def test_aiohttp_example_classifies_concurrent_uploads() -> None:
    runner, client = await aiohttp_client(aiohttp_app.make_app())
    try:
        async with client:
            await check_orientation(client)
    finally:
        await runner.cleanup()


async def test_aiohttp_example_answers_503_with_retry_after_when_its_queue_is_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAX_QUEUE", "0")  # every request finds the batcher's queue full
    runner, client = await aiohttp_client(aiohttp_app.make_app())
    try:
        async with client:
            answer = await client.post("/orientation", content=text_png("hello"))
    finally:
        await runner.cleanup()
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert answer.json()["error"] == "QueueFull"


@pytest.mark.parametrize(
    ("command", "max_queue", "status"),
    [
        ([sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", "0"], "64", 200),
        ([sys.executable, "examples/fastapi_app.py"], "0", 503),  # every request finds the queue full
    ],
    ids=["uvicorn-module-path", "script"],
)
async def test_fastapi_example_runs_by_the_commands_of_its_docstring(
    command: list[str], max_queue: str, status: int
) -> None:
    env = {**os.environ, "PORT": "0", "MAX_QUEUE": max_queue}
    async with Serving(command=command, cwd=ROOT, env=env) as server, httpx.AsyncClient() as client:
        answer = await client.post(f"{server.url}/orientation", content=text_png("hello world"), timeout=60)
    assert answer.status_code == status, answer.text
    if status == 503:
        assert answer.headers["Retry-After"] == "1" and answer.json()["error"] == "QueueFull"
    else:
        assert answer.json()["rotation"] == "0"
