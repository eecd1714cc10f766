"""``/health/ready`` with several models: ready only when every one is, as ``/v2/health/ready``,
with each model's status; on a real uvicorn, models really loading, failing and closed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import models
import pytest
from servers import serving

import aioinfer
from aioinfer.asgi import create_app

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def loaded_once(gate: asyncio.Event) -> AsyncIterator[Any]:
    """A source that starts loading its model only once ``gate`` is set: a model still loading."""
    await gate.wait()
    async with aioinfer.load(models.linear(), device="CPU", config=models.EXACT) as model:
        yield model


async def until_ready(client: httpx.AsyncClient, name: str) -> None:
    while (await client.get(f"/v2/models/{name}/ready")).status_code != 200:
        pass  # each request lets the app's lifespan go on: its batching decision


async def readiness(client: httpx.AsyncClient) -> tuple[int, dict[str, Any], int]:
    """``/health/ready``'s status and body, and ``/v2/health/ready``'s status."""
    v1 = await client.get("/health/ready")
    return v1.status_code, v1.json(), (await client.get("/v2/health/ready")).status_code


async def test_health_ready_waits_for_every_model_and_turns_503_when_one_is_closed(linear_model):
    gate = asyncio.Event()
    app = create_app({"first": linear_model, "second": loaded_once(gate)})
    async with serving(app) as client:
        try:
            await until_ready(client, "first")
            status, body, v2 = await readiness(client)
        finally:
            gate.set()  # a shutdown waits for the loading to end
        assert (status, v2) == (503, 503)  # the first model alone is not enough
        assert body == {"status": "loading", "error": None, "models": {"first": "ready", "second": "loading"}}
        await app.state.services["second"].loaded.wait()
        status, body, v2 = await readiness(client)
        assert (status, v2) == (200, 200)
        assert body == {"status": "ready", "model": "linear", "models": {"first": "ready", "second": "ready"}}
        await linear_model.aclose()  # its owner closed it: that model cannot answer any more
        status, body, v2 = await readiness(client)
        assert (status, v2) == (503, 503)
        assert body["status"] == "closed" and body["models"] == {"first": "closed", "second": "ready"}
        answer = await client.post("/v2/models/second/infer", json=_one_row())
        assert answer.status_code == 200  # the other model still serves


async def test_health_ready_names_the_model_that_failed_to_load(linear_model, tmp_path):
    app = create_app({"good": linear_model, "broken": aioinfer.load(tmp_path / "missing.xml", device="CPU")})
    async with serving(app) as client:
        await until_ready(client, "good")
        await app.state.services["broken"].loaded.wait()
        status, body, v2 = await readiness(client)
        assert (status, v2) == (503, 503)
        assert body["status"] == "failed" and body["models"] == {"good": "ready", "broken": "failed"}
        assert body["error"].startswith("broken: ModelNotFoundError") and "missing.xml" in body["error"]
        assert (await client.post("/v1/infer", json={"inputs": [[1, 2, 3, 4]]})).status_code == 200


def _one_row() -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
