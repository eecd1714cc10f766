"""``examples/ray_serve_app.py`` on a real local Ray (2 CPUs, no dashboard): 2 replicas of an exact
opset model, 256 concurrent calls through a ``DeploymentHandle`` and some over Ray Serve's HTTP proxy
on 127.0.0.1, every answer checked against numpy; deleting the application closes each replica's
model (its ``async def __del__``, awaited by Ray Serve, logs it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import models
import numpy as np
import openvino as ov
import pytest
import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))  # the examples package, as `serve run` imports it from the root

from examples import ray_serve_app  # noqa: E402

pytestmark = pytest.mark.timeout(240)
APP = "aioinfer"


@dataclass
class Deployed:
    handle: DeploymentHandle
    url: str  # Ray Serve's HTTP proxy
    logs: Path  # Ray's session logs


def free_port() -> int:
    """A port free now on 127.0.0.1 (Ray Serve's proxy takes a number, not a socket)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployed]:
    # Ray's unix sockets live under its temp dir, whose path must stay short (108 bytes at most)
    root = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    ov.save_model(models.linear(), root / "linear.xml")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=str(root),
        runtime_env={"env_vars": {"PYTHONPATH": path}},  # the replicas import examples.ray_serve_app
    )
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = ray_serve_app.application(str(root / "linear.xml"), device="CPU", config=models.EXACT)
        handle = serve.run(app, name=APP, route_prefix="/")
        yield Deployed(handle, f"http://127.0.0.1:{port}", root / "session_latest" / "logs")
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


async def test_256_concurrent_handle_calls_are_exact_and_use_both_replicas(deployed: Deployed) -> None:
    xs = [np.arange(4, dtype=np.float32)[None] * 0.25 + k for k in range(256)]
    answers = await asyncio.gather(*(deployed.handle.infer.remote(x) for x in xs))
    for x, answer in zip(xs, answers, strict=True):
        np.testing.assert_array_equal(answer["outputs"]["y"], models.linear_expected(x))
        assert answer["outputs"]["y"].dtype == np.float32
    assert len({answer["replica"] for answer in answers}) == 2


async def test_http_json_is_exact_and_a_bad_input_is_a_4xx_naming_it(deployed: Deployed) -> None:
    async with httpx.AsyncClient(base_url=deployed.url, timeout=60) as client:
        bodies = [{"inputs": [[k, k + 0.5, -k, 3.0]]} for k in range(16)]
        answers = await asyncio.gather(*(client.post("/", json=body) for body in bodies))
        assert [r.status_code for r in answers] == [200] * 16
        for body, r in zip(bodies, answers, strict=True):
            expected = models.linear_expected(np.array(body["inputs"], np.float32))
            np.testing.assert_array_equal(np.array(r.json()["outputs"]["y"], np.float32), expected)
        wrong_shape = await client.post("/", json={"inputs": [[1, 2, 3]]})
        assert wrong_shape.status_code == 422 and wrong_shape.json()["error"] == "InputShapeError"
        assert "expected shape" in wrong_shape.json()["message"]
        not_json = await client.post("/", content=b"{inputs")
        assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["message"]
        no_inputs = await client.post("/", json={"x": [1]})
        assert no_inputs.status_code == 400 and '{"inputs": ...}' in no_inputs.json()["message"]
        too_large = await client.post("/", content=b" " * (ray_serve_app.MAX_BODY_BYTES + 1))
        assert too_large.status_code == 413


def test_deleting_the_application_closes_each_replicas_model(deployed: Deployed) -> None:
    """Last in this module: it takes the application down."""
    replicas = serve.status().applications[APP].deployments["AioInferDeployment"].replica_states
    assert replicas == {"RUNNING": 2}
    serve.delete(APP)  # returns once every replica has stopped: its __del__ was awaited
    logs = sorted((deployed.logs / "serve").glob(f"replica_{APP}_AioInferDeployment_*.log"))
    assert len(logs) == 2
    for log in logs:
        replica = log.stem.rsplit("_", 1)[1]
        assert f"replica {replica}: model closed" in log.read_text()
