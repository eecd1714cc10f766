"""A FastAPI app that loads an ``AsyncModel`` in its lifespan and awaits it in a route.

The model is PP-OCR's text-orientation classifier shipped in the ``rapidocr`` wheel (or any model
given by ``$MODEL`` with the same [N,3,48,192] input). Concurrent requests are grouped into batches
by an ``aioinfer.Batcher``; image decoding runs on a worker thread, so the event loop only
awaits. The full aioinfer API (``/v1/infer``, ``/v1/info``, ``/metrics``...) is mounted at ``/model``.

    python examples/fastapi_app.py
    curl --data-binary @word.png http://127.0.0.1:8000/orientation
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI, HTTPException, Request
from orientation import model_path, preprocess, verdict

import aioinfer
from aioinfer.asgi import create_app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with (
        aioinfer.load(model_path(), device="CPU") as model,
        aioinfer.Batcher(model, max_batch_size=8) as batcher,
    ):
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
    return verdict(scores)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
