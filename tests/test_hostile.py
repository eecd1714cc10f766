"""Hostile clients against a real ``aioinfer serve`` subprocess on 127.0.0.1: compression and image
bombs, headers that lie, malformed containers and wrong content types each get a 4xx with a message,
the same keep-alive client keeps working, /health/live keeps answering, and the server's peak
memory (read from /proc) stays bounded; clients that send their bodies slowly cannot take the
queue from the others."""

from __future__ import annotations

import asyncio
import bz2
import functools
import io
from typing import NamedTuple

import httpx
import models
import numpy as np
import openvino as ov
import pytest
from hostile import (
    Member,
    declaring,
    encoded,
    member,
    npy_header,
    png_bomb,
    png_lying_chunk,
    tiff,
    zip_archive,
)
from prometheus_client.parser import text_string_to_metric_families
from servers import Serving, in_flight, npy, text_png

pytestmark = pytest.mark.timeout(120)

CEILING_MB = 300  # what the whole corpus may add to the server's peak memory
NPZ, NPY, JSON = "application/x-npz", "application/x-npy", "application/json"


class Case(NamedTuple):
    name: str
    method: str
    path: str
    content_type: str
    body: bytes
    status: int
    words: str  # the message must contain them


def infer(name: str, content_type: str, body: bytes, status: int, words: str) -> Case:
    return Case(name, "POST", "/v1/infer", content_type, body, status, words)


def predict(name: str, body: bytes, status: int, words: str, content_type: str = "image/png") -> Case:
    return Case(name, "POST", "/v1/predict", content_type, body, status, words)


def form(file: bytes) -> bytes:
    """A multipart/form-data body (boundary ``b``) with ``file`` as the field ``image``."""
    head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
    return head + b"Content-Type: image/png\r\n\r\n" + file + b"\r\n--b--\r\n"


@functools.cache
def corpus() -> tuple[Case, ...]:
    raw = npy(np.zeros((1, 3, 8, 8), np.float32))
    stored = member("x.npy", raw)
    objects = io.BytesIO()
    np.savez(objects, x=np.array([None, {}], dtype=object))
    deflate_bomb = zip_archive([member("x.npy", npy_header((2**29,)), 2**31)])  # 2 MB -> 2 GiB
    lying = zip_archive([member("x.npy", npy_header((1, 4)), 2**30)])  # 16 bytes declared, 1 GiB inside
    bz2_data = bz2.compress(npy_header((2**24,)) + bytes(2**26))
    bz2_bomb = zip_archive([Member("x.npy", bz2_data, 128 + 2**26, 0, method=12)])
    many = zip_archive([member(f"{i}", b"") for i in range(2000)])
    lists = b"[]," * 5_500_000 + b"[]"  # 16 MB that take 600 MB as Python lists
    multipart = "multipart/form-data; boundary=b"
    return (
        infer("npz deflate bomb", NPZ, deflate_bomb, 413, "max_decoded_bytes"),
        infer("npz lying header", NPZ, lying, 400, "more data than the 16 bytes"),
        infer("npz bzip2 member", NPZ, bz2_bomb, 415, "only stored or deflated"),
        infer("npz object member", NPZ, objects.getvalue(), 400, "Python objects"),
        infer("npz cut member", NPZ, zip_archive([stored._replace(data=stored.data[:30])]), 400, "x.npy"),
        infer("npz bad crc", NPZ, zip_archive([stored._replace(crc=stored.crc ^ 1)]), 400, "CRC"),
        infer("npz cut zip", NPZ, zip_archive([stored])[:-30], 400, "not a valid .npz"),
        infer("npz 2000 members", NPZ, many, 413, "more than 1024 members"),
        infer("npy header (10**12, 4)", NPY, npy_header((10**12, 4)), 413, "max_decoded_bytes"),
        infer("npy header (2**28, 4)", NPY, npy_header((2**28, 4)), 413, "max_decoded_bytes"),
        infer("npy short data", NPY, raw[:-4], 400, "its header declares 768"),
        infer("npy object dtype", NPY, npy_header((2,), "|O") + bytes(16), 400, "Python objects"),
        infer("JSON lists", JSON, b'{"inputs": [' + lists + b"]}", 413, "values"),
        infer("JSON nested", JSON, b"[" * 100_000 + b"]" * 100_000, 400, "not valid JSON"),
        infer("text/plain", "text/plain", b"1 2 3", 415, "send application/json"),
        infer("PNG as tensors", "image/png", text_png("x"), 415, "'image/png'"),
        infer("JSON sent as npz", NPZ, b'{"inputs": [1]}', 400, "not a .npy array"),
        infer("body over 16 MiB", NPY, bytes(17 * 2**20), 413, "at most 16777216"),
        Case("settings bomb", "PATCH", "/v1/settings", JSON, b"[" + lists + b"]", 413, "values"),
        Case("settings list", "PATCH", "/v1/settings", JSON, b"[1]", 400, "JSON object"),
        predict("PNG bomb", png_bomb(30000, 30000), 413, "30000x30000 PNG"),  # 2.6 MB -> 2.7 GB
        predict("PNG of 50000x50000", declaring("PNG", 50000, 50000), 413, "50000x50000 PNG"),
        predict("PNG chunk of 4 GiB", png_lying_chunk(), 400, "'IDAT' chunk at byte 33"),
        predict("JPEG of 30000x30000", declaring("JPEG", 30000, 30000), 413, "30000x30000 JPEG"),
        predict("TIFF of huge tiles", tiff(16, 16, tile=16000), 413, "in tiles of 256000000"),
        *[
            predict(f"{fmt} of 16384x16384", declaring(fmt, 16384, 16384), 413, f"16384x16384 {fmt}")
            for fmt in ("BMP", "WebP", "GIF", "PNM", "TIFF")
        ],
        predict("AVIF", encoded(".avif", np.zeros((16, 16, 3), np.uint8)), 415, "accepted format"),
        predict("garbage", b"\x00garbage" * 100, 415, "accepted format"),
        predict("empty", b"", 400, "empty (0 bytes)"),
        predict("cut PNG", text_png("hello")[:300], 400, "'IDAT' chunk at byte 33"),
        predict(
            "PNG of bad pixels", text_png("hello")[:41] + bytes(len(text_png("hello")) - 41), 400, "decoded"
        ),
        predict("form with a PNG bomb", form(png_bomb(30000, 30000)), 413, "30000x30000", multipart),
        predict("form without a file", b"--b--\r\n", 400, "no file", multipart),
    )


async def test_hostile_bodies_get_4xx_and_the_server_stays_small_and_live():
    cases = corpus()
    async with Serving("--task", "ocr") as server:
        await server.wait_for_line("ready on CPU")
        one_connection = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=60, limits=one_connection) as client,
            httpx.AsyncClient(base_url=server.url, timeout=60) as probe,
        ):

            async def read_hello() -> None:
                response = await client.post("/v1/predict", content=text_png("hello world"))
                assert [line["text"] for line in response.json()["lines"]] == ["hello world"]

            await read_hello()  # the task's working memory is in the baseline
            baseline = server.memory_mb()
            statuses: list[int] = []
            done = asyncio.Event()

            async def keep_probing() -> None:
                while not done.is_set():
                    statuses.append((await probe.get("/health/live")).status_code)
                    await asyncio.sleep(0.02)  # pacing only: the probe must not flood 2 cores

            prober = asyncio.create_task(keep_probing())
            try:
                for case in cases:
                    headers = {"content-type": case.content_type}
                    response = await client.request(
                        case.method, case.path, content=case.body, headers=headers
                    )
                    assert response.status_code == case.status, (case.name, response.text[:300])
                    assert case.words in response.json()["message"], (case.name, response.text[:300])
                    assert (await client.get("/health/ready")).status_code == 200, case.name  # same client
            finally:
                done.set()
                await prober
            await read_hello()
            peak = server.memory_mb()
        assert len(statuses) > 1 and set(statuses) == {200}
        assert peak - baseline < CEILING_MB, (
            f"peak {peak} MB, {peak - baseline} over the {baseline} MB baseline"
        )
        assert "Exception in ASGI application" not in "".join(server.log)


def reached_the_app(metrics_text: str) -> float:
    """/v1/infer requests the app has answered or is answering (not counting this scrape)."""
    families = {f.name: f for f in text_string_to_metric_families(metrics_text)}
    answered = sum(
        s.value
        for s in families["aioinfer_requests"].samples
        if s.name == "aioinfer_requests_total" and s.labels["route"] == "/v1/infer"
    )
    return answered + in_flight(metrics_text) - 1


async def test_slow_bodies_do_not_take_the_queue_and_time_out_with_408(tmp_path):
    """40 connections send their headers and one byte of a 1000-byte body and stall. With room for
    one request on the model (one infer request, no queue), every other client used to get 503 for
    as long as they stalled; now they are not counted until their bodies are in, and get 408 after
    --body-timeout."""
    ov.save_model(models.linear(), tmp_path / "linear.xml")
    limits = ("--max-batch-size", "1", "--num-requests", "1", "--max-queue", "0", "--body-timeout", "3")
    async with Serving(tmp_path / "linear.xml", *limits) as server:
        await server.wait_for_line("ready on CPU")
        slow = [await server.stalled("/v1/infer", 1000, b"\x93") for _ in range(40)]
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            while reached_the_app((await client.get("/metrics")).text) < 40:
                pass
            for k in range(5):
                x = np.array([[k, 1, 2, 3]], np.float32)
                response = await client.post("/v1/infer", json={"inputs": x.tolist()})
                assert response.status_code == 200, response.text
                np.testing.assert_array_equal(response.json()["outputs"]["y"], models.linear_expected(x))
            for reader, writer in slow:
                answer = await reader.read()  # to the end: the server closes the connection
                assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
                assert b"body_timeout" in answer and b"1 bytes came" in answer
                writer.close()
            assert (await client.get("/health/ready")).status_code == 200
