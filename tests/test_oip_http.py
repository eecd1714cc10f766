"""The Open Inference Protocol over HTTP, driven by the client users already have: NVIDIA's
``tritonclient.http`` (sync and ``aio``), JSON and binary tensors, against two exact models served
in one app (in this process on a loopback port) and against ``aioinfer serve`` as a subprocess."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import models
import numpy as np
import openvino as ov
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
from prometheus_client.parser import text_string_to_metric_families
from servers import Serving, serving
from tritonclient.utils import InferenceServerException

import aioinfer
from aioinfer.asgi import create_app

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def two_models() -> AsyncIterator[dict[str, aioinfer.AsyncModel]]:
    """``linear`` (x [?,4] f32 -> y = 2x + 1) and ``pair`` (a [2,3] f32, b [2,3] i32 -> sum, prod)."""
    async with (
        aioinfer.load(models.linear(), device="CPU", config=models.EXACT) as linear,
        aioinfer.load(models.two_in_two_out(), device="CPU", config=models.EXACT) as pair,
    ):
        yield {"linear": linear, "pair": pair}


@pytest.fixture
async def url(two_models) -> AsyncIterator[str]:
    """``host:port`` of an app serving :func:`two_models` (tritonclient takes no scheme)."""
    app = create_app(two_models)
    async with serving(app) as client:
        for service in app.state.services.values():
            await service.loaded.wait()  # batching decided
        assert (await client.get("/v2/health/ready")).status_code == 200
        yield str(client.base_url).removeprefix("http://").rstrip("/")


def linear_input(x: np.ndarray, binary: bool, cls: type = httpclient.InferInput) -> object:
    tensor = cls("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


def sync_session(url: str) -> dict[str, object]:
    """What the sync client sees: health, metadata, then JSON and binary infers (run on a thread)."""
    client = httpclient.InferenceServerClient(url)
    try:
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        a = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
        b = np.arange(-3, 3, dtype=np.int32).reshape(2, 3)
        pair_inputs = [
            httpclient.InferInput("a", [2, 3], "FP32"),
            httpclient.InferInput("b", [2, 3], "INT32"),
        ]
        pair_inputs[0].set_data_from_numpy(a, binary_data=False)
        pair_inputs[1].set_data_from_numpy(b, binary_data=True)
        prod_only = [httpclient.InferRequestedOutput("prod", binary_data=False)]
        results = {
            "live": client.is_server_live(),
            "ready": client.is_server_ready(),
            "models_ready": [client.is_model_ready(m) for m in ("linear", "pair")],
            "server": client.get_server_metadata(),
            "linear": client.get_model_metadata("linear"),
            "pair_v1": client.get_model_metadata("pair", model_version="1"),
            "json": client.infer(
                "linear",
                [linear_input(x, False)],
                outputs=[httpclient.InferRequestedOutput("y", binary_data=False)],
                request_id="r-7",
            ),
            "binary": client.infer("linear", [linear_input(x, True)]),
            "pair": client.infer("pair", pair_inputs, outputs=prod_only),
        }
        return {"x": x, "a": a, "b": b, **results}
    finally:
        client.close()


async def test_sync_client_health_metadata_and_json_and_binary_infer(url):
    got = await asyncio.to_thread(sync_session, url)
    assert got["live"] and got["ready"] and got["models_ready"] == [True, True]
    assert got["server"]["name"] == "aioinfer" and "binary_tensor_data" in got["server"]["extensions"]
    assert got["linear"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert got["linear"]["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
    assert got["pair_v1"]["versions"] == ["1"]
    assert [t["datatype"] for t in got["pair_v1"]["inputs"]] == ["FP32", "INT32"]
    expected = models.linear_expected(got["x"])
    json_result, binary_result = got["json"], got["binary"]
    assert json_result.get_response()["id"] == "r-7"
    assert "parameters" not in json_result.get_output("y")  # answered in JSON, as asked
    assert json_result.get_output("y")["datatype"] == "FP32"
    np.testing.assert_array_equal(json_result.as_numpy("y"), expected)
    assert binary_result.get_output("y")["parameters"]["binary_data_size"] == expected.nbytes
    np.testing.assert_array_equal(binary_result.as_numpy("y"), expected)
    pair = got["pair"]
    assert [o["name"] for o in pair.get_response()["outputs"]] == ["prod"]  # only what was asked
    np.testing.assert_array_equal(pair.as_numpy("prod"), got["a"] * got["b"].astype(np.float32))


async def test_256_concurrent_aio_requests_each_exact(url):
    async with aiohttpclient.InferenceServerClient(url, conn_limit=64) as client:

        async def one(k: int) -> None:
            x = np.full((1 + k % 3, 4), k, np.float32) + np.arange(4, dtype=np.float32)
            result = await client.infer("linear", [linear_input(x, k % 2 == 0, aiohttpclient.InferInput)])
            np.testing.assert_array_equal(result.as_numpy("y"), models.linear_expected(x))

        await asyncio.gather(*(one(k) for k in range(256)))


@pytest.mark.parametrize(
    ("call", "status", "says"),
    [
        (lambda c: c.get_model_metadata("nope"), "404", "unknown model 'nope'"),
        (lambda c: c.get_model_metadata("linear", model_version="2"), "404", "no version '2'"),
        (
            lambda c: c.infer("nope", [linear_input(np.zeros((1, 4), np.float32), True)]),
            "404",
            "serves ['linear', 'pair']",
        ),
        (
            lambda c: c.infer("linear", [linear_input(np.zeros((1, 5), np.float32), True)]),
            "400",
            "expected shape [?,4]",
        ),
        (lambda c: c.infer("linear", [bad_dtype()]), "400", "datatype 'FP64', expected FP32"),
        (
            lambda c: c.infer(
                "linear",
                [linear_input(np.zeros((1, 4), np.float32), True)],
                outputs=[httpclient.InferRequestedOutput("z")],
            ),
            "400",
            "unknown output 'z'",
        ),
    ],
)
async def test_errors_reach_the_client_with_their_status(url, call, status, says):
    def run() -> InferenceServerException:
        client = httpclient.InferenceServerClient(url)
        try:
            with pytest.raises(InferenceServerException) as caught:
                call(client)
            return caught.value
        finally:
            client.close()

    error = await asyncio.to_thread(run)
    assert error.status() == status and says in error.message(), (error.status(), error.message())


def bad_dtype() -> httpclient.InferInput:
    tensor = httpclient.InferInput("x", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.zeros((1, 4), np.float64))
    return tensor


async def test_overload_answers_503_with_retry_after_and_the_rest_exactly():
    async with aioinfer.load(
        models.slow_conv(64), device="CPU", config=models.EXACT, num_requests=1
    ) as model:
        app = create_app({"slow": model}, max_batch_size=1, max_queue=1)
        async with serving(app) as http:
            url = str(http.base_url).removeprefix("http://").rstrip("/")
            async with aiohttpclient.InferenceServerClient(url, conn_limit=32) as client:

                async def one(k: int) -> object:
                    x = np.full((1, 3, 64, 64), k, np.float32)
                    tensor = aiohttpclient.InferInput("x", list(x.shape), "FP32")
                    tensor.set_data_from_numpy(x)
                    try:
                        return (await client.infer("slow", [tensor])).as_numpy("y")[0, 0]
                    except InferenceServerException as exc:
                        return exc

                results = await asyncio.gather(*(one(k) for k in range(24)))
            refused = [r for r in results if isinstance(r, InferenceServerException)]
            assert refused and all(r.status() == "503" and "max_queue" in r.message() for r in refused)
            assert all(r == k for k, r in enumerate(results) if not isinstance(r, InferenceServerException))
            assert len(refused) < len(results)
            raw = await http.post("/v2/models/slow/infer", content=b"{}", headers={"x": "y"})
            assert raw.status_code == 400  # the server stays up and answers
            assert app.state.services["slow"]._outstanding == 0
            assert (await http.get("/v2/models/nope/ready")).status_code == 404
            metrics = (await http.get("/metrics")).text
    counted = {
        (s.labels["model"], s.labels["status"]): s.value
        for f in text_string_to_metric_families(metrics)
        for s in f.samples
        if s.name == "aioinfer_requests_total" and s.labels["route"].startswith("/v2/models/{name}")
    }
    served = len(results) - len(refused)
    # by model and status, under the route's template; an unknown model adds no series of its own
    assert counted == {
        ("slow", "200"): served,
        ("slow", "503"): len(refused),
        ("slow", "400"): 1,
        ("", "404"): 1,
    }


async def test_cli_serves_named_models_and_folders_and_drains_on_sigterm(tmp_path):
    (tmp_path / "dir").mkdir()
    ov.save_model(models.linear(), tmp_path / "dir" / "lin.xml")
    ov.save_model(models.two_in_two_out(), tmp_path / "two.xml")
    async with Serving(tmp_path / "dir", f"pair={tmp_path / 'two.xml'}") as server:
        await server.wait_for_line("two_by_two' ready on CPU")
        await server.wait_for_line("linear' ready on CPU")
        url = server.url.removeprefix("http://")
        async with aiohttpclient.InferenceServerClient(url) as client:
            assert await client.is_model_ready("lin") and await client.is_model_ready("pair")
            x = np.arange(8, dtype=np.float32).reshape(2, 4)
            calls = [
                asyncio.create_task(
                    client.infer("lin", [linear_input(x + k, True, aiohttpclient.InferInput)])
                )
                for k in range(16)
            ]
            done = await calls[0]  # the server is serving
            server.proc.send_signal(signal.SIGTERM)
            results = [done, *await asyncio.gather(*calls[1:])]
        for k, result in enumerate(results):
            np.testing.assert_array_equal(result.as_numpy("y"), models.linear_expected(x + k))
        assert await server.finish() == 0
