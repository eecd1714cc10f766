"""The web examples, run for real: FastAPI under uvicorn, aiohttp under its own server, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import cv2
import httpx
import numpy as np
from aiohttp import web
from servers import serving

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))

import aiohttp_app
import fastapi_app


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
    assert bad.status_code == 400 and "PNG or JPEG" in bad.text


async def test_fastapi_example_classifies_concurrent_uploads() -> None:
    async with serving(fastapi_app.app) as client:
        await check_orientation(client)
        info = await client.get("/model/v1/info")  # the aioinfer app mounted beside the route
        assert info.status_code == 200 and info.json()["model"]["num_requests"] >= 1


async def test_aiohttp_example_classifies_concurrent_uploads() -> None:
    runner = web.AppRunner(aiohttp_app.make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            await check_orientation(client)
    finally:
        await runner.cleanup()
