"""An aiohttp app that loads an ``AsyncModel`` at start-up and awaits it in a handler.

Same model, route and error answers as ``fastapi_app.py``: PP-OCR's text-orientation classifier
from the ``rapidocr`` wheel (or ``$MODEL``), concurrent requests batched by an ``aioinfer.Batcher``,
a full queue answered 503 with ``Retry-After``.

Needs the ``examples`` extra (FastAPI, aiohttp, the serve and ocr extras). From the repository's root:

    pip install ".[examples]"
    python examples/aiohttp_app.py            # or: python -m examples.aiohttp_app ($PORT, 8080)
    curl --data-binary @word.png http://127.0.0.1:8080/orientation
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio

import aioinfer

try:
    from aiohttp import web
except ModuleNotFoundError as exc:  # say which extra to install
    raise aioinfer.MissingExtraError("examples", exc.name or "aiohttp", "the web examples") from None

if not __package__:  # run as a script: import the examples as a package, from the repository's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.shared import TIMEOUT, error_answer, max_queue, model_path, preprocess, verdict

BATCHER = web.AppKey("batcher", aioinfer.Batcher)


async def model_context(app: web.Application) -> AsyncIterator[None]:
    async with (
        aioinfer.load(model_path(), device="CPU") as model,
        await aioinfer.Batcher.checked(model, max_batch_size=8, max_queue=max_queue()) as batcher,
    ):
        app[BATCHER] = batcher
        yield


@web.middleware
async def aioinfer_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except aioinfer.AioInferError as exc:
        status, body, headers = error_answer(exc)
        return web.json_response(body, status=status, headers=headers)


async def orientation(request: web.Request) -> web.Response:
    x = await anyio.to_thread.run_sync(preprocess, await request.read())
    scores = (await request.app[BATCHER].infer(x, timeout=TIMEOUT))[0][0]
    return web.json_response(verdict(scores))


def make_app() -> web.Application:
    app = web.Application(client_max_size=8 * 2**20, middlewares=[aioinfer_errors])
    app.cleanup_ctx.append(model_context)
    app.router.add_post("/orientation", orientation)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
