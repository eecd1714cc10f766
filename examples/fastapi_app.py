"""A FastAPI app that loads an ``AsyncModel`` in its lifespan and awaits it in a route.

The model is PP-OCR's text-orientation classifier shipped in the ``rapidocr`` wheel (or any model
given by ``$MODEL`` with the same [N,3,48,192] input). Concurrent requests are grouped into batches
by an ``aioinfer.asgi.Batcher``; image decoding runs on a worker thread, so the event loop only
awaits. The full aioinfer API (``/v1/infer``, ``/v1/info``, ``/metrics``...) is mounted at ``/model``.

    uvicorn examples.fastapi_app:app
    curl --data-binary @word.png http://127.0.0.1:8000/orientation
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
from collections.abc import AsyncIterator

import anyio
import cv2
import numpy as np
from fastapi import FastAPI, HTTPException, Request

import aioinfer
from aioinfer.asgi import Batcher, create_app

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


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    path = os.environ.get("MODEL", default_model())
    async with aioinfer.load(path, device="CPU") as model, Batcher(model, max_batch_size=8) as batcher:
        app.state.batcher = batcher
        app.mount("/model", create_app(model))
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/orientation")
async def orientation(request: Request) -> dict[str, object]:
    try:
        x = await anyio.to_thread.run_sync(preprocess, await request.body())
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    scores = (await request.app.state.batcher.infer(x))[0][0]
    best = int(np.argmax(scores))
    return {"rotation": LABELS[best], "score": float(scores[best])}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
