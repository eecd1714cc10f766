"""An aiohttp app that loads an ``AsyncModel`` at start-up and awaits it in a handler.

Same model and route as ``fastapi_app.py``: PP-OCR's text-orientation classifier from the
``rapidocr`` wheel (or ``$MODEL``), concurrent requests batched by an ``aioinfer.asgi.Batcher``.

    python examples/aiohttp_app.py
    curl --data-binary @word.png http://127.0.0.1:8080/orientation
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import AsyncIterator

import anyio
import cv2
import numpy as np
from aiohttp import web

import aioinfer
from aioinfer.asgi import Batcher

LABELS = ("0", "180")  # the text's rotation in degrees


def default_model() -> str:
    models = importlib.resources.files("rapidocr") / "models"
    return str(next(p for p in models.iterdir() if p.name.startswith("ch_ppocr_mobile_v2.0_cls")))


def preprocess(data: bytes) -> np.ndarray:
    """Encoded image bytes to the classifier's [1,3,48,192] input; raises ValueError if not an image."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise ValueError("the body is not an image OpenCV can decode (send PNG or JPEG bytes)")
    resized = cv2.resize(image, (192, 48)).astype(np.float32)
    return ((resized / 127.5 - 1.0).transpose(2, 0, 1))[None]


BATCHER = web.AppKey("batcher", Batcher)


async def model_context(app: web.Application) -> AsyncIterator[None]:
    path = os.environ.get("MODEL", default_model())
    async with aioinfer.load(path, device="CPU") as model, Batcher(model, max_batch_size=8) as batcher:
        app[BATCHER] = batcher
        yield


async def orientation(request: web.Request) -> web.Response:
    try:
        x = await anyio.to_thread.run_sync(preprocess, await request.read())
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    try:
        scores = (await request.app[BATCHER].infer(x))[0][0]
    except aioinfer.QueueFull:
        raise web.HTTPServiceUnavailable(headers={"Retry-After": "1"}) from None
    best = int(np.argmax(scores))
    return web.json_response({"rotation": LABELS[best], "score": float(scores[best])})


def make_app() -> web.Application:
    app = web.Application(client_max_size=8 * 2**20)
    app.cleanup_ctx.append(model_context)
    app.router.add_post("/orientation", orientation)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=8080)
