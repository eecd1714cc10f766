"""An aiohttp app that loads an ``AsyncModel`` at start-up and awaits it in a handler.

Same model and route as ``fastapi_app.py``: PP-OCR's text-orientation classifier from the
``rapidocr`` wheel (or ``$MODEL``), concurrent requests batched by an ``aioinfer.Batcher``.

    python examples/aiohttp_app.py
    curl --data-binary @word.png http://127.0.0.1:8080/orientation
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from aiohttp import web
from orientation import model_path, preprocess, verdict

import aioinfer

BATCHER = web.AppKey("batcher", aioinfer.Batcher)


async def model_context(app: web.Application) -> AsyncIterator[None]:
    async with (
        aioinfer.load(model_path(), device="CPU") as model,
        aioinfer.Batcher(model, max_batch_size=8) as batcher,
    ):
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
    return web.json_response(verdict(scores))


def make_app() -> web.Application:
    app = web.Application(client_max_size=8 * 2**20)
    app.cleanup_ctx.append(model_context)
    app.router.add_post("/orientation", orientation)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=8080)
