"""``python -m aioinfer serve`` as a real subprocess: readiness, batching reshape, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import httpx
import models
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from servers import Serving, in_flight, npy, text_png

pytestmark = pytest.mark.timeout(120)
NPY = {"content-type": "application/x-npy"}


async def held_back(body: bytes, release: asyncio.Event) -> AsyncIterator[bytes]:
    """A body whose end the client holds back: its request is in flight until ``release``."""
    yield body[:64]
    await release.wait()
    yield body[64:]


def matmul_chain(size: int = 1024, layers: int = 300) -> ov.Model:
    """``x`` [N, size, size] multiplied ``layers`` times by the identity, then summed per row:
    seconds of exact work on 2 cores, which a cancelled job stops between two products."""
    x = ops.parameter([-1, size, size], np.float32, name="x")
    identity = ops.constant(np.eye(size, dtype=np.float32))
    h = x
    for _ in range(layers):
        h = ops.matmul(h, identity, False, False)
    y = ops.reduce_sum(h, ops.constant(np.array([1, 2], np.int64)), keep_dims=False)
    return ov.Model([y.output(0)], [x], "matmul_chain")


async def test_sigterm_finishes_requests_in_flight_refuses_new_ones_and_exits_0(tmp_path):
    ov.save_model(models.slow_conv(128, 6), tmp_path / "slow.xml")
    headers = NPY
    bodies = [npy(np.full((1, 3, 128, 128), k, np.float32)) for k in range(7)]
    release = asyncio.Event()

    async with Serving(tmp_path / "slow.xml", "--max-batch-size", "1", "--num-requests", "1") as server:
        await server.wait_for_line("ready on CPU")
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            calls = [
                asyncio.create_task(client.post("/v1/infer", content=body, headers=headers))
                for body in bodies[:6]
            ]
            held = {**headers, "content-length": str(len(bodies[6]))}
            calls.append(
                asyncio.create_task(
                    client.post("/v1/infer", content=held_back(bodies[6], release), headers=held)
                )
            )
            async with httpx.AsyncClient(base_url=server.url) as probe:
                while in_flight((await probe.get("/metrics")).text) < 8:  # the 7 calls and this scrape
                    pass
            server.proc.send_signal(signal.SIGTERM)
            await server.wait_for_line("Waiting for connections to close")  # listener closed, calls running
            with pytest.raises(httpx.ConnectError):
                async with httpx.AsyncClient(base_url=server.url) as late:
                    await late.get("/health/live")
            release.set()
            responses = await asyncio.gather(*calls)
        assert [r.status_code for r in responses] == [200] * 7
        assert [r.json()["outputs"]["y"][0][0] for r in responses] == list(range(7))
        assert await server.finish() == 0
        assert "Finished server process" in "".join(server.log)


async def test_requests_still_running_at_the_drain_timeout_answer_503_not_500(tmp_path):
    """At ``--drain-timeout`` uvicorn cancelled what still ran: a 500 with a CancelledError traceback.
    Now the app answers those requests 503 itself: one running on the device, one still sending
    its body (held back by the client until the end)."""
    ov.save_model(matmul_chain(), tmp_path / "slow.xml")
    body = npy(np.ones((1, 1024, 1024), np.float32))
    args = ("--max-batch-size", "1", "--num-requests", "1", "--drain-timeout", "1", "--body-timeout", "60")
    async with Serving(tmp_path / "slow.xml", *args) as server:
        await server.wait_for_line("ready on CPU")
        reader, writer = await server.stalled("/v1/infer", len(body), body[:64])
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            running = asyncio.create_task(client.post("/v1/infer", content=body, headers=NPY))
            while (await client.get("/v1/info")).json()["stats"]["running"] < 1:
                pass
            while in_flight((await client.get("/metrics")).text) < 3:  # the two and this scrape
                pass
            server.proc.send_signal(signal.SIGTERM)
            answer = await running
            sending = await reader.read()  # to the end: the server closes the connection
        writer.close()
        assert answer.status_code == 503, answer.text
        assert "did not finish within its drain timeout" in answer.json()["message"]
        assert answer.headers["retry-after"] == "1"
        assert sending.startswith(b"HTTP/1.1 503 "), sending[:300]
        assert b"did not finish within its drain timeout" in sending and b"retry-after: 1" in sending
        assert await server.finish() == 0
        log = "".join(server.log)
        assert "CancelledError" not in log and "Exception in ASGI application" not in log


async def test_static_batch_of_one_is_reshaped_for_batching_and_sigint_exits_0(tmp_path):
    ov.save_model(models.linear([1, 4]), tmp_path / "linear1.xml")
    async with Serving(tmp_path / "linear1.xml", "--max-batch-size", "4", "--max-delay-ms", "5") as server:
        await server.wait_for_line("ready on CPU")
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            info = (await client.get("/v1/info")).json()
            assert info["model"]["inputs"][0]["shape"] == [-1, 4]
            assert info["batching"]["enabled"] and info["batching"]["max_batch_size"] == 4
            xs = [np.array([[k, -k, k / 2, 1]], np.float32) for k in range(12)]
            responses = await asyncio.gather(
                *(client.post("/v1/infer", json={"inputs": x.tolist()}) for x in xs)
            )
            for x, r in zip(xs, responses, strict=True):
                np.testing.assert_array_equal(
                    np.asarray(r.json()["outputs"]["y"], np.float32), models.linear_expected(x)
                )
            assert (await client.get("/health/ready")).status_code == 200
        server.proc.send_signal(signal.SIGINT)
        assert await server.finish() == 0


async def test_a_model_that_cannot_load_exits_1_with_the_reason(tmp_path):
    async with Serving(tmp_path / "missing.xml") as server:
        assert await server.finish() == 1
    assert "ModelNotFoundError" in "".join(server.log) and "missing.xml" in "".join(server.log)


async def test_serve_an_ocr_task_with_the_bundled_models():
    async with Serving("--task", "ocr") as server:  # no MODEL: the PP-OCR models in rapidocr
        await server.wait_for_line("ready on CPU")
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            png = text_png("hello world")
            response = await client.post("/v1/predict", files={"image": ("line.png", png, "image/png")})
            assert response.status_code == 200, response.text
            assert [line["text"] for line in response.json()["lines"]] == ["hello world"]
            assert (await client.get("/v1/settings")).json()["use_cls"] is True
        server.proc.send_signal(signal.SIGTERM)
        assert await server.finish() == 0
