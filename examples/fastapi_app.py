"""A FastAPI app that loads an ``AsyncModel`` in its lifespan and awaits it in a route.

The model is PP-OCR's text-orientation classifier shipped in the ``rapidocr`` wheel (or any model
given by ``$MODEL`` with the same [N,3,48,192] input). Concurrent requests are grouped into batches
by an ``aioinfer.Batcher`` (after its probe has shown that batching leaves the answers unchanged);
image decoding runs on a worker thread, so the event loop only awaits. aioinfer's errors answer
as HTTP statuses: a full queue 503 with ``Retry-After``, a timeout 504, an undecodable body 400, an
input the model cannot take 422. The full aioinfer API (``/v1/infer``, ``/v1/info``, ``/metrics``...)
is mounted at ``/model``.

Needs the ``examples`` extra (FastAPI, aiohttp, the serve and ocr extras). From the repository's root:

    pip install ".[examples]"
    uvicorn examples.fastapi_app:app          # or: python examples/fastapi_app.py ($PORT, 8000)
    curl --data-binary @word.png http://127.0.0.1:8000/orientation
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

import aioinfer

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from aioinfer.asgi import create_app
except ModuleNotFoundError as exc:  # say which extra to install
    raise aioinfer.MissingExtraError("examples", exc.name or "fastapi", "the web examples") from None

if not __package__:  # run as a script: import the examples as a package, from the repository's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.shared import HTTP_STATUS, TIMEOUT, error_answer, max_queue, model_path, preprocess, verdict


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with (
        aioinfer.load(model_path(), device="CPU") as model,
        await aioinfer.Batcher.checked(model, max_batch_size=8, max_queue=max_queue()) as batcher,
    ):
        app.state.batcher = batcher
        app.mount("/model", create_app(model))
        yield


async def aioinfer_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, aioinfer.AioInferError)  # registered for aioinfer's errors only
    status, body, headers = error_answer(exc)
    return JSONResponse(body, status, headers=headers)


app = FastAPI(lifespan=lifespan, exception_handlers=dict.fromkeys(HTTP_STATUS, aioinfer_error))


@app.post("/orientation")
async def orientation(request: Request) -> dict[str, object]:
    x = await anyio.to_thread.run_sync(preprocess, await request.body())
    scores = (await request.app.state.batcher.infer(x, timeout=TIMEOUT))[0][0]
    return verdict(scores)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
