"""A real uvicorn server on a free loopback port, for the tests that talk HTTP, and the bodies
they send."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
from collections.abc import AsyncIterator
from typing import Any

import cv2
import httpx
import numpy as np
import uvicorn


def npy(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a .npy file."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def text_png(text: str) -> bytes:
    """A PNG of one line of black ``text`` on white, 320x48: what PP-OCR reads back exactly."""
    image = np.full((48, 320, 3), 255, np.uint8)
    cv2.putText(image, text, (8, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    return cv2.imencode(".png", image)[1].tobytes()


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app`` under uvicorn on a free loopback port; yield a client bound to it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)  # connections wait in the backlog until uvicorn accepts: no start-up race
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        async with httpx.AsyncClient(
            base_url=url, timeout=60, limits=httpx.Limits(max_connections=128)
        ) as client:
            yield client
    finally:
        server.should_exit = True
        await task
        sock.close()
