"""The ASGI app under a real uvicorn server on 127.0.0.1, driven by a real httpx client."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import models
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from hostile import npy_header
from prometheus_client.parser import text_string_to_metric_families
from servers import npy, serving, text_png
from starlette.applications import Starlette
from starlette.routing import Mount

import aioinfer
from aioinfer._cli import build_parser
from aioinfer._cli import serve as serve_cli
from aioinfer.asgi import create_app


@pytest.mark.parametrize("max_batch_size", [8, 1], ids=["batching", "no-batching"])
async def test_64_clients_each_get_the_answer_to_their_own_input(linear_model, max_batch_size):
    app = create_app(linear_model, max_batch_size=max_batch_size, max_delay=0.002)
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
        app = create_app(model, max_batch_size=8, max_delay=0.02)
        async with serving(app) as client:
            await app.state.service.loaded.wait()  # batching decided
            batcher = app.state.service.batcher
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
    ("application/x-npy", npy_header((1, 4)), 400, "holds 0 bytes of data; its header declares 16"),
    ("application/x-npy", npy_header((10**12, 4)), 413, "max_decoded_bytes"),
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
    async with serving(create_app(linear_model, max_batch_size=4, max_delay=0.001)) as client:
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
        batching = {k: v for k, v in info["batching"].items() if k != "reason"}
        assert batching == {"mode": "auto", "enabled": True, "max_batch_size": 4, "max_delay_ms": 1}
        assert info["batching"]["reason"].startswith("probe: each row of a batch of 3 random rows")
        assert info["task"] is None and info["limits"]["max_queue"] == 256


async def test_outputs_named_like_savez_arguments_are_answered_as_npz():
    """``np.savez(file, **outputs)`` raised for an output named ``file`` (a 500 that also reset the
    keep-alive connection): outputs of any name are answered."""
    x = ops.parameter([-1, 4], np.float32, name="x")
    outputs = [ops.multiply(x, ops.constant(np.float32(2))).output(0), ops.relu(x).output(0)]
    for output, name in zip(outputs, ["file", "allow_pickle"], strict=True):
        output.get_tensor().set_names({name})
    graph = ov.Model(outputs, [x], "savez_names")
    async with (
        aioinfer.load(graph, device="CPU", config=models.EXACT) as model,
        serving(create_app(model)) as client,
    ):
        body = npy(np.array([[-1, 2, 3, 4]], np.float32))
        headers = {"content-type": "application/x-npy", "accept": "application/x-npz"}
        for _ in range(2):  # the same keep-alive client, twice
            response = await client.post("/v1/infer", content=body, headers=headers)
            assert response.status_code == 200, response.text
            archive = np.load(io.BytesIO(response.content))
            np.testing.assert_array_equal(archive["file"], [[-2, 4, 6, 8]])
            np.testing.assert_array_equal(archive["allow_pickle"], [[0, 2, 3, 4]])


async def test_loads_in_the_background_and_closes_what_it_opened():
    source = aioinfer.load(models.linear(), device="CPU", config=models.EXACT)
    app = create_app(source)
    service = app.state.service
    async with serving(app) as client:
        await service.loaded.wait()
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        # served as "model" (its name is not known before it loads); "model": its own name, once loaded
        assert ready.json() == {"status": "ready", "model": "linear", "models": {"model": "ready"}}
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
        assert bad.status_code == 415 and "not an image in an accepted format" in bad.json()["message"]
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


# -- batching only where it cannot change an answer ------------------------------------------------


def served_like_the_cli(model: ov.Model, tmp_path: Path, *flags: str) -> Starlette:
    """The app ``aioinfer serve MODEL.xml --device CPU --config INFERENCE_PRECISION_HINT=f32 *flags``
    runs (its other settings are create_app's defaults), with the model saved to ``tmp_path``."""
    path = tmp_path / f"{model.get_friendly_name()}.xml"
    ov.save_model(model, path)
    exact = ("--device", "CPU", "--config", "INFERENCE_PRECISION_HINT=f32")
    args = build_parser().parse_args(["serve", str(path), *exact, *flags])
    return create_app(
        serve_cli._open(args, {}),
        max_batch_size=args.max_batch_size,
        max_delay=args.max_delay_ms / 1e3,
        batching=args.batching,
    )


async def each_client_gets_its_own_answer(
    client: httpx.AsyncClient, expected: Callable[[np.ndarray], np.ndarray], clients: int = 64
) -> None:
    """``clients`` concurrent requests of one distinct row each; every answer is exactly ``expected(x)``."""
    xs = [np.array([[k, -k, k / 4, 1]], np.float32) for k in range(clients)]
    responses = await asyncio.gather(*(client.post("/v1/infer", json={"inputs": x.tolist()}) for x in xs))
    for x, response in zip(xs, responses, strict=True):
        assert response.status_code == 200, response.text
        np.testing.assert_array_equal(np.asarray(response.json()["outputs"]["y"], np.float32), expected(x))


def batch_sizes(metrics_text: str) -> tuple[float, float]:
    """(rows, batches) run by the batcher, from GET /metrics."""
    (family,) = [f for f in text_string_to_metric_families(metrics_text) if f.name == "aioinfer_batch_size"]
    values = {s.name: s.value for s in family.samples}
    return values["aioinfer_batch_size_sum"], values["aioinfer_batch_size_count"]


def refusal_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "served without batching" in r.getMessage()
    ]


@pytest.mark.parametrize(
    "how, why",
    [
        ("reshape", "output 'y' has shape [12] for a batch of 3 rows and [4] for one row"),
        ("squeeze", "its outputs do not keep the inputs' batch dimension"),
    ],
    ids=["reshape", "squeeze"],
)
async def test_a_model_that_drops_the_batch_dimension_is_served_exactly_without_batching(
    tmp_path, caplog, how, why
):
    app = served_like_the_cli(models.batch_dropped(how), tmp_path)  # [1, 4] -> [4], default settings
    async with serving(app) as client:
        await app.state.service.loaded.wait()  # loaded, batching decided
        await each_client_gets_its_own_answer(client, lambda x: models.linear_expected(x).reshape(-1))
        info = (await client.get("/v1/info")).json()
    assert info["model"]["inputs"][0]["shape"] == [-1, 4]  # made dynamic for batching, then refused
    assert info["batching"]["enabled"] is False and info["batching"]["max_batch_size"] == 1
    assert why in info["batching"]["reason"]
    (warning,) = refusal_warnings(caplog)  # logged once
    assert why in warning and "batching='on'" in warning


@pytest.mark.parametrize("born", ["batch 1 made dynamic by serve", "dynamic batch"])
async def test_a_model_whose_rows_interact_is_served_exactly_without_batching(tmp_path, caplog, born):
    async with contextlib.AsyncExitStack() as stack:
        if born == "dynamic batch":  # a model the caller loaded, with create_app's default settings
            source = aioinfer.load(models.rows_mixed([-1, 4]), device="CPU", config=models.EXACT)
            app = create_app(await stack.enter_async_context(source))
        else:
            app = served_like_the_cli(models.rows_mixed(), tmp_path)
        client = await stack.enter_async_context(serving(app))
        await app.state.service.loaded.wait()
        await each_client_gets_its_own_answer(client, models.rows_mixed_expected)
        batching = (await client.get("/v1/info")).json()["batching"]
    assert batching["enabled"] is False and batching["mode"] == "auto"
    assert batching["reason"].startswith(
        "not batch-separable: the probe found rows interacting on output 'y'"
    )
    assert len(refusal_warnings(caplog)) == 1


async def test_a_separable_model_is_still_batched_and_exact(tmp_path):
    app = served_like_the_cli(models.linear([1, 4]), tmp_path, "--max-delay-ms", "50")
    async with serving(app) as client:
        await app.state.service.loaded.wait()  # loaded, batching decided
        await each_client_gets_its_own_answer(client, models.linear_expected)
        rows, batches = batch_sizes((await client.get("/metrics")).text)
        batching = (await client.get("/v1/info")).json()["batching"]
    assert rows == 64 and batches < 64  # requests shared inferences
    assert batching["enabled"] is True and batching["max_batch_size"] == 8
    assert batching["reason"].startswith("probe: each row of a batch of 3 random rows matched")


async def test_the_user_can_declare_a_model_batch_separable():
    async with aioinfer.load(models.rows_mixed([-1, 4]), device="CPU", config=models.EXACT) as model:
        app = create_app(model, batching="on", max_delay=0.05)
        async with serving(app) as client:
            xs = [[k, 0, 0, 0] for k in range(16)]
            responses = await asyncio.gather(*(client.post("/v1/infer", json={"inputs": [x]}) for x in xs))
            assert [r.status_code for r in responses] == [200] * 16
            batching = (await client.get("/v1/info")).json()["batching"]
        batcher = app.state.service.batcher
    assert batching["enabled"] is True and batching["mode"] == "on"
    assert batching["reason"] == "declared batch-separable by the caller (no probe)"
    assert batcher.items == 16 and batcher.batches < 16  # batched as asked (the answers mix: declared)
    assert model.stats().completed == batcher.batches  # no probe ran


async def test_a_declared_model_whose_outputs_cannot_be_split_is_served_alone_from_then_on(caplog):
    source = aioinfer.load(models.batch_dropped("reshape", [-1, 4]), device="CPU", config=models.EXACT)
    async with source as model:
        app = create_app(model, batching="on", max_delay=0.02)
        async with serving(app) as client:
            await each_client_gets_its_own_answer(client, lambda x: models.linear_expected(x).reshape(-1))
            batching = (await client.get("/v1/info")).json()["batching"]
    assert batching["enabled"] is False
    assert batching["reason"].startswith("turned off while serving: output 'y' came back with shape [")
    assert sum("batching is off from now on" in r.getMessage() for r in caplog.records) == 1


async def test_the_user_can_turn_batching_off(tmp_path, caplog):
    app = served_like_the_cli(models.linear([1, 4]), tmp_path, "--batching", "off")
    async with serving(app) as client:
        await app.state.service.loaded.wait()  # loaded, batching decided
        await each_client_gets_its_own_answer(client, models.linear_expected)
        info = (await client.get("/v1/info")).json()
    assert info["model"]["inputs"][0]["shape"] == [1, 4]  # not reshaped: no batching wanted
    assert info["batching"] == {
        "mode": "off",
        "enabled": False,
        "max_batch_size": 1,
        "max_delay_ms": 0,
        "reason": "turned off by the user (batching='off')",
    }
    assert info["stats"]["completed"] == 64  # no probe ran
    assert not refusal_warnings(caplog)
    with pytest.raises(ValueError, match="batching must be one of 'auto', 'on', 'off', got 'yes'"):
        create_app(aioinfer.load(models.linear()), batching="yes")


async def test_not_ready_until_the_batching_decision_is_made():
    async with aioinfer.load(models.linear(), device="CPU", config=models.EXACT) as model:
        app = create_app(model)
        service = app.state.service
        assert service.model is model and not service.ready  # compiled, not yet probed
        parent = Starlette(routes=[Mount("/ml", app)])  # mounted: no lifespan starts the probe
        async with serving(parent) as client:
            first = await client.get("/ml/health/ready")  # starts it
            assert first.status_code == 503 and first.json()["status"] == "loading"
            await service.decided()
            assert (await client.get("/ml/health/ready")).status_code == 200
            assert service.batcher is not None and model.stats().completed == 4  # the probe's runs
