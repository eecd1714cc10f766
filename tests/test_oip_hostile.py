"""Hostile Open Inference Protocol bodies against ``aioinfer serve``: sizes that lie (binary data,
shapes, the JSON header's length), malformed tensors. Each is answered 4xx naming what was wrong,
nothing is allocated for what a client merely declares, and the server stays live and small."""

from __future__ import annotations

import json

import httpx
import models
import numpy as np
import openvino as ov
import pytest
from servers import Serving

pytestmark = pytest.mark.timeout(120)
CEILING_MB = 64  # what the server may grow by over the whole corpus (a 2**40-value tensor is 4 TB)


def request(inputs: list[dict], binary: bytes = b"", **extra: object) -> tuple[bytes, dict[str, str]]:
    """An /infer body: the JSON header, then ``binary`` with its length header when there is any."""
    head = json.dumps({"inputs": inputs, **extra}).encode()
    headers = {"inference-header-content-length": str(len(head))} if binary else {}
    return head + binary, headers


def x(shape: list, data: object = None, datatype: str = "FP32", **params: object) -> dict:
    tensor = {"name": "x", "shape": shape, "datatype": datatype}
    if params:
        tensor["parameters"] = params
    if data is not None:
        tensor["data"] = data
    return tensor


ROW = np.ones((1, 4), np.float32).tobytes()
CASES = [  # name, body, headers, status, words of the error
    (
        "binary size past the body",
        *request([x([1, 4], binary_data_size=2**40)], ROW),
        400,
        "binary_data_size",
    ),
    ("binary size short of the shape", *request([x([1, 4], binary_data_size=8)], ROW[:8]), 400, "takes 16"),
    ("bytes after the binary data", *request([x([1, 4], binary_data_size=16)], ROW + b"!!"), 400, "follow"),
    ("negative binary size", *request([x([1, 4], binary_data_size=-16)], ROW), 400, "whole number"),
    ("huge shape, JSON", *request([x([2**40, 4], [1.0])]), 413, "max_decoded_bytes"),
    ("huge shape, binary", *request([x([2**62, 2**62], binary_data_size=16)], ROW), 413, "max_decoded_bytes"),
    ("negative dimension", *request([x([-1, 4], [1.0] * 4)]), 400, "sizes >= 0"),
    ("too many dimensions", *request([x([1] * 33, [1.0])]), 400, "at most 32"),
    ("values short of the shape", *request([x([2, 4], [1.0] * 4)]), 400, "4 values for shape [2, 4]"),
    ("ragged nested data", *request([x([2, 2], [[1.0, 2.0], [3.0]])]), 400, "not an array of FP32"),
    ("text as data", *request([x([1, 1], ["a"])]), 400, "not an array of FP32"),
    ("wrong datatype", *request([x([1, 4], [1] * 4, "INT32")]), 400, "expected FP32"),
    ("unknown input", *request([{"name": "q", "shape": [1], "datatype": "FP32", "data": [1]}]), 400, "'x'"),
    ("input twice", *request([x([1, 4], [1.0] * 4), x([1, 4], [1.0] * 4)]), 400, "twice"),
    ("no inputs", b'{"id": "1"}', {}, 400, '{"inputs"'),
    ("not JSON", b"{nope", {}, 400, "not valid JSON"),
    ("header past the body", b"{}", {"inference-header-content-length": "4096"}, 400, "at most the body"),
    ("header length not a number", b"{}", {"inference-header-content-length": "-1"}, 400, "length"),
    ("id not a string", *request([x([1, 4], [1.0] * 4)], id=7), 400, '"id" must be a string'),
    ("outputs not a list", *request([x([1, 4], [1.0] * 4)], outputs={"y": 1}), 400, '"outputs"'),
    ("a body over the limit", b"[" * (2**20 + 1), {}, 413, "at most 1048576"),
]


async def test_hostile_oip_bodies_get_4xx_and_the_server_stays_small_and_live(tmp_path):
    ov.save_model(models.linear(), tmp_path / "linear.xml")
    async with Serving(tmp_path / "linear.xml", "--max-body-mb", "1", "--max-decoded-mb", "1") as server:
        await server.wait_for_line("ready on CPU")
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            good = request([x([1, 4], binary_data_size=16)], ROW, parameters={"binary_data_output": True})
            for _ in range(2):  # the baseline includes answering a request
                ok = await client.post("/v2/models/linear/infer", content=good[0], headers=good[1])
                assert ok.status_code == 200, ok.text
            baseline = server.memory_mb()
            for name, body, headers, status, words in CASES:
                response = await client.post("/v2/models/linear/infer", content=body, headers=headers)
                assert response.status_code == status, (name, response.text[:300])
                assert words in response.json()["error"], (name, response.text[:300])
                assert (await client.get("/v2/health/ready")).status_code == 200, name
            ok = await client.post("/v2/models/linear/infer", content=good[0], headers=good[1])
            length = int(ok.headers["inference-header-content-length"])
            np.testing.assert_array_equal(np.frombuffer(ok.content[length:], np.float32), [3.0] * 4)
            peak = server.memory_mb()
    assert peak - baseline < CEILING_MB, f"peak {peak} MB, {peak - baseline} over the {baseline} MB baseline"
    assert "Exception in ASGI application" not in "".join(server.log)
