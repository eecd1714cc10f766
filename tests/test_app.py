"""The ASGI app under a real uvicorn server on 127.0.0.1, driven by a real httpx client."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator

import anyio
import httpx
import models
import numpy as np
import pytest
from servers import npy, serving, text_png

import aioinfer
from aioinfer.asgi import create_app


@pytest.mark.parametrize("max_batch_size", [8, 1], ids=["batching", "no-batching"])
async def test_64_clients_each_get_the_answer_to_their_own_input(linear_model, max_batch_size):
    app = create_app(linear_model, max_batch_size=max_batch_size, max_delay_ms=2)
    async with serving(app) as client:

        async def one_client(c: int) -> None:  # 64 clients, 8 requests each, over the shared pool
            for r in range(8):
                k = c * 8 + r
                x = np.array([[c, r, k, -k / 4]], np.float32)  # distinct for every request
                if k % 2:
                    response = await client.post("/v1/infer", json={"inputs": {"x": x.tolist()}})
                    assert response.status_code == 200, response.text
                    y = np.asarray(response.json()["outputs"]["y"], np.float32)
                else:
                    headers = {"content-type": "application/x-npy", "accept": "application/x-npy"}
                    response = await client.post("/v1/infer", content=npy(x), headers=headers)
                    assert response.status_code == 200, response.text
                    y = np.load(io.BytesIO(response.content))
                np.testing.assert_array_equal(y, models.linear_expected(x))

        await asyncio.gather(*(one_client(c) for c in range(64)))
    batcher = app.state.service.batcher
    if max_batch_size > 1:
        assert batcher.items == 512 and batcher.batches < 512  # some requests shared an inference
    else:
        assert batcher is None
    assert linear_model.stats().failed == 0


async def test_overload_answers_503_at_once_and_stays_healthy():
    async with aioinfer.load(
        models.slow_conv(64), device="CPU", config=models.EXACT, num_requests=1
    ) as model:
        app = create_app(model, max_batch_size=1, max_queue=2)
        async with serving(app) as client:

            async def call(k: int) -> tuple[int, httpx.Response]:
                x = np.full((1, 3, 64, 64), k, np.float32)
                return k, await client.post(
                    "/v1/infer", content=npy(x), headers={"content-type": "application/x-npy"}
                )

            results = await asyncio.gather(*(call(k) for k in range(32)))
            statuses = [r.status_code for _, r in results]
            assert set(statuses) == {200, 503}, statuses
            assert statuses.count(200) >= 3  # one running + max_queue waiting at least
            for k, response in results:
                if response.status_code == 503:
                    assert response.headers["retry-after"] == "1"
                    assert response.json()["error"] == "QueueFull"
                else:
                    assert response.json()["outputs"]["y"][0][0] == k  # y[:, 0] echoes the input's constant
            assert app.state.service._outstanding == 0  # every admission was released
            assert (await client.get("/health/ready")).status_code == 200
            again = await client.post(
                "/v1/infer",
                content=npy(np.full((1, 3, 64, 64), 7, np.float32)),
                headers={"content-type": "application/x-npy"},
            )
            assert again.status_code == 200 and again.json()["outputs"]["y"][0][0] == 7


async def test_clients_that_hang_up_while_waiting_are_still_served_and_their_batch_mates_answered():
    async with aioinfer.load(
        models.slow_conv(64), device="CPU", config=models.EXACT, num_requests=1
    ) as model:
        app = create_app(model, max_batch_size=8, max_delay_ms=20)
        batcher = app.state.service.batcher
        async with serving(app) as client:
            headers = {"content-type": "application/x-npy"}
            # odd clients wait 5 ms for the answer (a batch takes tens): they hang up mid-request;
            # connecting and sending have 60 s, so every request reaches the server
            impatient = httpx.Timeout(60, read=0.005)

            async def call(k: int, timeout: httpx.Timeout | float = 60) -> httpx.Response:
                body = npy(np.full((1, 3, 64, 64), k, np.float32))
                return await client.post("/v1/infer", content=body, headers=headers, timeout=timeout)

            results = await asyncio.gather(
                *(call(k, impatient if k % 2 else 60) for k in range(16)), return_exceptions=True
            )
            for k, result in enumerate(results):
                if k % 2:
                    assert isinstance(result, httpx.ReadTimeout), result  # it hung up mid-request
                else:
                    assert result.status_code == 200 and result.json()["outputs"]["y"][0][0] == k
            with anyio.fail_after(10):  # the server runs the calls of the clients that left too
                while batcher.items < 16:
                    await asyncio.sleep(0.01)
            for k in (99, 100):
                assert (await call(k)).json()["outputs"]["y"][0][0] == k
        assert batcher.items == 18
        assert model.stats().failed == 0


async def test_a_request_slower_than_the_timeout_answers_504():
    async with aioinfer.load(models.slow_conv(128, 6), device="CPU", config=models.EXACT) as model:
        app = create_app(model, timeout=0.001)
        async with serving(app) as client:
            x = np.ones((1, 3, 128, 128), np.float32)
            response = await client.post(
                "/v1/infer", content=npy(x), headers={"content-type": "application/x-npy"}
            )
            assert response.status_code == 504
            assert "within 0.001 s" in response.json()["message"]
            assert (await client.get("/health/live")).status_code == 200


def lying_npy(shape: tuple[int, ...]) -> bytes:
    """A .npy header that declares ``shape`` float32 followed by no data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return np.lib.format.magic(1, 0) + buffer.getvalue()


BAD_REQUESTS = [
    # (content-type, body, status, words the message must contain)
    ("application/json", b"{not json", 400, "not valid JSON"),
    ("application/json", b'{"x": [[1, 2, 3, 4]]}', 400, '{"inputs": ...}'),
    ("application/json", b'{"inputs": [[1, 2, 3]]}', 422, "expected shape [?,4], got [1, 3]"),
    ("application/json", b'{"inputs": [1, 2, 3, 4]}', 422, "expected shape [?,4], got [4]"),
    (
        "application/json",
        b'{"inputs": [["a", "b", "c", "d"]]}',
        422,
        "cannot be converted to the model's float32",
    ),
    ("application/json", b'{"inputs": [[1, 2], [3]]}', 422, "cannot make an array of list"),
    ("application/json", b'{"inputs": {"z": [[1, 2, 3, 4]]}}', 422, "no input 'z'; its inputs are ['x']"),
    ("application/x-npy", b"\x93NUMPY garbage", 400, "not a .npy array"),
    ("application/x-npy", npy(np.zeros((1, 4), np.complex64)), 422, "complex64"),
    ("application/x-npy", lying_npy((1, 4)), 400, "not a .npy array"),
    ("application/x-npy", lying_npy((10**12, 4)), 400, "not a .npy array"),
    ("application/json", b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "not valid JSON"),
    ("text/plain", b"1 2 3 4", 415, "application/json"),
    ("application/json", b'{"inputs": [' + b"0," * 200_000 + b"0]}", 413, "at most 262144"),
]


async def test_bad_requests_answer_4xx_with_what_was_expected(linear_model):
    app = create_app(linear_model, max_body_bytes=256 * 1024)
    async with serving(app) as client:
        for content_type, body, status, words in BAD_REQUESTS:
            response = await client.post("/v1/infer", content=body, headers={"content-type": content_type})
            assert response.status_code == status, (body[:40], response.text)
            assert words in response.json()["message"], response.text
        assert (await client.post("/v1/predict", content=b"")).status_code == 404  # a bare model has no task
        assert (await client.get("/v1/settings")).status_code == 404
        assert (await client.get("/v1/nothing")).status_code == 404
        response = await client.post("/v1/infer", json={"inputs": [[1, 2, 3, 4]]})
        assert response.json() == {"outputs": {"y": [[3.0, 5.0, 7.0, 9.0]]}}
    assert linear_model.stats().failed == 0


async def test_npz_in_and_out_and_info(linear_model):
    async with serving(create_app(linear_model, max_batch_size=4, max_delay_ms=1)) as client:
        buffer = io.BytesIO()
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        np.savez(buffer, x=x)
        response = await client.post(
            "/v1/infer",
            content=buffer.getvalue(),
            headers={"content-type": "application/x-npz", "accept": "application/x-npz"},
        )
        assert response.status_code == 200
        np.testing.assert_array_equal(np.load(io.BytesIO(response.content))["y"], models.linear_expected(x))
        info = (await client.get("/v1/info")).json()
        assert info["model"]["inputs"][0]["shape"] == [-1, 4]
        assert info["batching"] == {"enabled": True, "max_batch_size": 4, "max_delay_ms": 1}
        assert info["task"] is None and info["limits"]["max_queue"] == 256


async def test_loads_in_the_background_and_closes_what_it_opened():
    source = aioinfer.load(models.linear(), device="CPU", config=models.EXACT)
    app = create_app(source)
    service = app.state.service
    async with serving(app) as client:
        await service.loaded.wait()
        ready = await client.get("/health/ready")
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "model": "linear"}
        response = await client.post("/v1/infer", json={"inputs": [[0, 0, 0, 1]]})
        assert response.json()["outputs"]["y"] == [[1.0, 1.0, 1.0, 3.0]]
    assert service.model.closed  # the app loaded it, so the app closed it


async def test_a_model_that_fails_to_load_is_reported_not_ready(tmp_path):
    app = create_app(aioinfer.load(tmp_path / "missing.xml", device="CPU"))
    async with serving(app) as client:
        await app.state.service.loaded.wait()
        ready = await client.get("/health/ready")
        assert ready.status_code == 503 and "ModelNotFoundError" in ready.json()["error"]
        response = await client.post("/v1/infer", json={"inputs": [[1, 2, 3, 4]]})
        assert response.status_code == 503 and "missing.xml" in response.json()["message"]
        assert (await client.get("/health/live")).status_code == 200


# -- a real task: PP-OCR from the rapidocr wheel ------------------------------------------------


async def test_predict_and_settings_of_an_ocr_task():
    import aioinfer.tasks

    app = create_app(aioinfer.tasks.load(None, task="ocr", device="CPU"))
    async with serving(app) as client:
        await app.state.service.loaded.wait()
        png = text_png("hello world")
        response = await client.post("/v1/predict", content=png, headers={"content-type": "image/png"})
        assert response.status_code == 200, response.text
        assert [line["text"] for line in response.json()["lines"]] == ["hello world"]
        form = await client.post("/v1/predict", files={"image": ("a.png", png, "image/png")})
        assert form.json() == response.json()
        bad = await client.post(
            "/v1/predict", content=b"not an image", headers={"content-type": "image/jpeg"}
        )
        assert bad.status_code == 400 and "not an image OpenCV can decode" in bad.json()["message"]
        no_file = await client.post("/v1/predict", files={"note": (None, "text only")})
        assert no_file.status_code == 400 and "no file" in no_file.json()["message"]

        settings = (await client.get("/v1/settings")).json()
        assert settings["text_score"] == 0.5
        above = round(min(1.0, response.json()["lines"][0]["score"] + 1e-3), 6)  # the line no longer passes
        patched = await client.patch("/v1/settings", json={"text_score": above})
        assert patched.status_code == 200 and patched.json() == {**settings, "text_score": above}
        wrong = await client.patch("/v1/settings", json={"sharpness": 3})
        assert wrong.status_code == 422 and "unknown setting 'sharpness'" in wrong.json()["message"]
        assert (await client.patch("/v1/settings", content=b"[1]")).status_code == 400
        strict = await client.post("/v1/predict", content=png, headers={"content-type": "image/png"})
        assert strict.status_code == 200 and strict.json()["lines"] == []  # the new setting took effect
        assert (await client.get("/v1/info")).json()["task"]["task"] == "ocr"


async def test_mounted_in_a_fastapi_app_that_owns_the_model():
    from fastapi import FastAPI

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with aioinfer.load(models.linear(), device="CPU", config=models.EXACT) as model:
            app.mount("/ml", create_app(model, max_batch_size=4))  # a mounted app gets no lifespan
            yield

    parent = FastAPI(lifespan=lifespan)

    @parent.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    async with serving(parent) as client:
        xs = [[k, 1, 2, 3] for k in range(8)]
        responses = await asyncio.gather(*(client.post("/ml/v1/infer", json={"inputs": [x]}) for x in xs))
        assert [r.json()["outputs"]["y"][0][0] for r in responses] == [2 * k + 1 for k in range(8)]
        assert (await client.get("/ml/health/ready")).status_code == 200
        assert (await client.get("/hello")).json() == {"hello": "world"}
