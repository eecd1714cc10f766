"""``python -m aioinfer serve`` as a real subprocess: readiness, batching reshape, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import models
import numpy as np
import openvino as ov
import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import npy, text_png

pytestmark = pytest.mark.timeout(120)


class Serving:
    """``async with Serving(*args) as server``: ``aioinfer serve *args`` as a subprocess on CPU,
    exact f32, a free port, entered once it listens; killed at exit if it still runs."""

    def __init__(self, *args: str | Path) -> None:
        self.args = args
        self.proc: asyncio.subprocess.Process  # started by __aenter__
        self.log: list[str] = []
        self.url = ""

    async def __aenter__(self) -> Serving:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aioinfer",
            "serve",
            *map(str, self.args),
            "--device",
            "CPU",
            "--port",
            "0",
            "--config",
            "INFERENCE_PRECISION_HINT=f32",
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            running = await self.wait_for_line("Uvicorn running on")
        except BaseException:
            await self.__aexit__()
            raise
        self.url = re.search(r"http://\S+", running).group(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def wait_for_line(self, text: str) -> str:
        """Read the log until a line containing ``text`` (or the end of the log: then fail)."""
        for line in self.log:
            if text in line:
                return line
        while line := (await self.proc.stderr.readline()).decode():
            self.log.append(line)
            if text in line:
                return line
        raise AssertionError(f"the server exited without logging {text!r}:\n{''.join(self.log)}")

    async def finish(self) -> int:
        rest = await self.proc.stderr.read()
        self.log.append(rest.decode())
        return await self.proc.wait()


def in_flight(metrics_text: str) -> float:
    (family,) = [
        f for f in text_string_to_metric_families(metrics_text) if f.name == "aioinfer_requests_in_flight"
    ]
    return family.samples[0].value


async def test_sigterm_finishes_requests_in_flight_refuses_new_ones_and_exits_0(tmp_path):
    ov.save_model(models.slow_conv(128, 6), tmp_path / "slow.xml")
    headers = {"content-type": "application/x-npy"}
    bodies = [npy(np.full((1, 3, 128, 128), k, np.float32)) for k in range(7)]
    release = asyncio.Event()

    async def held_back(body: bytes) -> AsyncIterator[bytes]:
        """A body whose end the client holds back: its request is in flight until ``release``."""
        yield body[:64]
        await release.wait()
        yield body[64:]

    async with Serving(tmp_path / "slow.xml", "--max-batch-size", "1", "--num-requests", "1") as server:
        await server.wait_for_line("ready on CPU")
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            calls = [
                asyncio.create_task(client.post("/v1/infer", content=body, headers=headers))
                for body in bodies[:6]
            ]
            held = {**headers, "content-length": str(len(bodies[6]))}
            calls.append(
                asyncio.create_task(client.post("/v1/infer", content=held_back(bodies[6]), headers=held))
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
