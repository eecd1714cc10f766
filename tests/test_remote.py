"""Remote models: ``aioinfer.load("http://.../v2/models/NAME")`` and ``load("grpc://.../NAME")``
against aioinfer's own Open Inference Protocol server (uvicorn and grpc.aio on loopback, run for
the whole module on a thread of its own so that tests on any backend can reach it), checked
exactly against numpy and against the same models run locally."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import models
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import serving

import aioinfer
from aioinfer import _grpc
from aioinfer.asgi import create_app
from aioinfer.tasks._ocr import PPOCR_NORMALIZATION, OCRTask
from aioinfer.tasks._ocr_samples import sample_page
from aioinfer.tasks._preprocess import best_class_head, embed_normalization

pytestmark = pytest.mark.timeout(120)

# every datatype of the protocol that numpy holds, and one numpy dtype of it
DATATYPES = {
    "BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip


def identities() -> ov.Model:
    """One input ``in_T`` [?, 3] and output ``out_T`` = the input, for each of :data:`DATATYPES`."""
    params, results = [], []
    for name, dtype in DATATYPES.items():
        x = ops.parameter([-1, 3], dtype, name=f"in_{name}")
        y = ops.convert(x, dtype).output(0)  # a node between: a Parameter is not its own Result
        y.get_tensor().set_names({f"out_{name}"})
        params.append(x)
        results.append(y)
    return ov.Model(results, params, "identities")


def ocr_model(role: str) -> ov.Model:
    """The bundled PP-OCR model of ``role`` as the ocr task runs it (its normalization inside; the
    recognizer answering its best class per step)."""
    model = embed_normalization(ov.Core().read_model(aioinfer.bundled_model(role)), PPOCR_NORMALIZATION)
    return best_class_head(model) if role == "rec" else model


@dataclass
class Servers:
    """``main``: linear, pair, identities and slow (one request at a time) under the usual
    limits; ``tiny``: slow again, one request running and none waiting (max_queue=0)."""

    http: dict[str, str] = field(default_factory=dict)  # app name: http://127.0.0.1:PORT
    grpc: dict[str, str] = field(default_factory=dict)  # app name: 127.0.0.1:PORT

    def url(self, protocol: str, model: str, app: str = "main") -> str:
        if protocol == "grpc":
            return f"grpc://{self.grpc[app]}/{model}"
        return f"{self.http[app]}/v2/models/{model}"

    def infers(self, model: str) -> float:
        """``/v2`` infer requests the main server has answered for ``model`` (its metrics)."""
        text = httpx.get(f"{self.http['main']}/metrics").text
        (family,) = [f for f in text_string_to_metric_families(text) if f.name == "aioinfer_requests"]
        return sum(
            s.value
            for s in family.samples
            if s.name.endswith("_total")
            and s.labels["model"] == model
            and s.labels["route"].endswith("/infer")
        )


@contextlib.asynccontextmanager
async def app_serving(app: Any) -> AsyncIterator[tuple[str, str]]:
    """``app`` on uvicorn and its gRPC service, each on a free loopback port, models loaded."""
    async with serving(app) as client:
        for service in app.state.services.values():
            await service.loaded.wait()
        server, port = _grpc.server(app.state.services, "127.0.0.1:0", 2**26)
        await server.start()
        try:
            yield str(client.base_url).rstrip("/"), f"127.0.0.1:{port}"
        finally:
            await server.stop(0)


async def run_servers(servers: Servers, started: threading.Event, stop: asyncio.Event) -> None:
    exact = {"device": "CPU", "config": models.EXACT}
    async with (
        aioinfer.load(models.linear(), **exact) as linear,
        aioinfer.load(models.two_in_two_out(), **exact) as pair,
        aioinfer.load(identities(), **exact) as identity,
        aioinfer.load(models.slow_conv(), num_requests=1, **exact) as slow,
        aioinfer.load(models.slow_conv(), num_requests=1, **exact) as slow_tiny,
        aioinfer.load(ocr_model("det"), **exact) as det,
        aioinfer.load(ocr_model("rec"), **exact) as rec,
        aioinfer.load(ocr_model("cls"), **exact) as cls,
    ):
        ocr = {"det": det, "rec": rec, "cls": cls}
        main = create_app({"linear": linear, "pair": pair, "identities": identity, "slow": slow, **ocr})
        tiny = create_app({"slow": slow_tiny}, batching="off", max_queue=0)
        async with app_serving(main) as (http_main, grpc_main), app_serving(tiny) as (http_tiny, grpc_tiny):
            servers.http.update(main=http_main, tiny=http_tiny)
            servers.grpc.update(main=grpc_main, tiny=grpc_tiny)
            started.set()
            await stop.wait()


@pytest.fixture(scope="module")
def remote() -> Iterator[Servers]:
    """The module's servers, on a thread with an event loop of its own."""
    servers, started = Servers(), threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(run_servers(servers, started, stop),))
    thread.start()
    try:
        while not started.wait(0.5):
            assert thread.is_alive(), "the servers failed to start"
        yield servers
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join()
        loop.close()


PROTOCOLS = ["http", "grpc"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_metadata_and_concurrent_infers_exact(remote: Servers, protocol: str) -> None:
    async with aioinfer.load(remote.url(protocol, "linear")) as model:
        assert isinstance(model, aioinfer.AsyncModel)
        (x_info,) = model.info.inputs
        assert (x_info.name, x_info.shape, x_info.dtype) == ("x", (-1, 4), np.dtype(np.float32))
        assert model.info.outputs[0].name == "y"
        assert model.info.device == remote.url(protocol, "linear")
        assert (model.info.num_requests, model.info.precision) == (64, None)
        xs = [np.random.default_rng(i).standard_normal((1 + i % 5, 4)).astype(np.float32) for i in range(256)]
        outs = await asyncio.gather(*(model.infer(x) for x in xs))
        for x, out in zip(xs, outs, strict=True):
            np.testing.assert_array_equal(out["y"], models.linear_expected(x))
            np.testing.assert_array_equal(out[0], out["y"])
        stats = model.stats()
        assert (stats.submitted, stats.completed, stats.failed, stats.in_flight) == (256, 256, 0, 0)
        assert stats.device_ms.p50 is not None


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_two_inputs_by_name_and_outputs_in_model_order(remote: Servers, protocol: str) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    b = np.arange(-3, 3, dtype=np.int32).reshape(2, 3)
    async with aioinfer.load(remote.url(protocol, "pair")) as model:
        assert [i.name for i in model.info.inputs] == ["a", "b"]
        out = await model({"b": b, "a": a})
        assert out.names == ["sum", "prod"]
        np.testing.assert_array_equal(out[0], a + b)
        np.testing.assert_array_equal(out["prod"], a * b)


@pytest.mark.parametrize("protocol", ["http", "http-json", "grpc"])
async def test_every_numpy_datatype_round_trips(remote: Servers, protocol: str) -> None:
    config = {"binary_data": False} if protocol == "http-json" else None
    url = remote.url(protocol.removesuffix("-json"), "identities")
    async with aioinfer.load(url, config=config) as model:
        assert {i.name: i.dtype for i in model.info.inputs} == {
            f"in_{k}": np.dtype(d) for k, d in DATATYPES.items()
        }
        values = np.random.default_rng(7).integers(-100, 100, (2, 3))
        inputs = {f"in_{k}": _values(values, np.dtype(d)) for k, d in DATATYPES.items()}
        out = await model(inputs)
        for k, d in DATATYPES.items():
            assert out[f"out_{k}"].dtype == np.dtype(d)
            np.testing.assert_array_equal(out[f"out_{k}"], inputs[f"in_{k}"])


def _values(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` (integers) as ``dtype``: exact in it (the server's CPU computes FP64 in f32)."""
    if dtype.kind == "b":
        return values > 0
    if dtype.kind == "u":
        return np.abs(values).astype(dtype)
    return (values / 4 if dtype.kind == "f" else values).astype(dtype)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_map_is_ordered_and_exact(remote: Servers, protocol: str) -> None:
    xs = [np.full((1, 4), i, np.float32) for i in range(100)]
    async with aioinfer.load(remote.url(protocol, "linear"), num_requests=8) as model:
        results = [r async for r in model.map(xs)]
    assert [r.index for r in results] == list(range(100))
    for x, r in zip(xs, results, strict=True):
        np.testing.assert_array_equal(r.output["y"], models.linear_expected(x))


async def test_json_mode_is_exact(remote: Servers) -> None:
    xs = [np.random.default_rng(i).standard_normal((3, 4)).astype(np.float32) for i in range(32)]
    async with aioinfer.load(remote.url("http", "linear"), config={"binary_data": False}) as model:
        outs = await asyncio.gather(*(model.infer(x) for x in xs))
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out["y"], models.linear_expected(x))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_input_errors_are_raised_before_anything_is_sent(remote: Servers, protocol: str) -> None:
    async with aioinfer.load(remote.url(protocol, "linear")) as model:
        await model(np.zeros((1, 4), np.float32))
        before = remote.infers("linear")
        with pytest.raises(aioinfer.InputShapeError, match=r"expected shape \[\?,4\], got \[1, 5\]"):
            await model(np.zeros((1, 5), np.float32))
        with pytest.raises(aioinfer.InputDtypeError, match="complex64 cannot be converted"):
            await model(np.zeros((1, 4), np.complex64))
        with pytest.raises(aioinfer.InputNameError, match="has no input 'z'"):
            await model({"z": np.zeros((1, 4), np.float32)})
        assert remote.infers("linear") == before  # nothing reached the server
        assert model.stats().submitted == 1
        np.testing.assert_array_equal((await model(np.ones((1, 4), np.float32)))[0], [[3, 3, 3, 3]])


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_unknown_model_is_model_not_found(remote: Servers, protocol: str) -> None:
    with pytest.raises(aioinfer.ModelNotFoundError, match="nope"):
        await aioinfer.load(remote.url(protocol, "nope"))


async def test_unknown_version_is_model_not_found(remote: Servers) -> None:
    with pytest.raises(aioinfer.ModelNotFoundError, match="no version '7'"):
        await aioinfer.load(remote.url("http", "linear") + "/versions/7")
    async with aioinfer.load(remote.url("http", "linear") + "/versions/1") as model:
        np.testing.assert_array_equal((await model(np.zeros((1, 4), np.float32)))[0], [[1, 1, 1, 1]])


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_busy_server_is_queue_full(remote: Servers, protocol: str) -> None:
    """The tiny server runs one request and lets none wait: of 12 sent at once, the ones it
    refuses (503, UNAVAILABLE) are QueueFull; the others are answered."""
    x = np.ones((1, 3, 96, 96), np.float32)
    async with aioinfer.load(remote.url(protocol, "slow", app="tiny")) as model:
        results = await asyncio.gather(*(model(x) for _ in range(12)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, BaseException)]
    assert refused and all(isinstance(r, aioinfer.QueueFull) for r in refused), refused
    assert all(r[0][0, 0] == 1 for r in results if not isinstance(r, BaseException))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_max_queue_refuses_locally(remote: Servers, protocol: str) -> None:
    x = np.ones((1, 3, 96, 96), np.float32)
    async with aioinfer.load(remote.url(protocol, "slow"), num_requests=1, max_queue=1) as model:
        results = await asyncio.gather(*(model(x) for _ in range(4)), return_exceptions=True)
        stats = model.stats()
    assert [type(r).__name__ for r in results] == ["Outputs", "Outputs", "QueueFull", "QueueFull"]
    assert (stats.submitted, stats.completed, stats.rejected) == (2, 2, 2)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_timeout_is_infer_timeout(remote: Servers, protocol: str) -> None:
    async with aioinfer.load(remote.url(protocol, "slow")) as model:
        with pytest.raises(aioinfer.InferTimeout):
            await model(np.ones((1, 3, 96, 96), np.float32), timeout=0)
        assert model.stats().cancelled == 1
        out = await model(np.full((1, 3, 96, 96), 2, np.float32), timeout=60)
        assert out[0][0, 0] == 2


async def test_no_compiled_model_nor_session_here(remote: Servers) -> None:
    async with aioinfer.load(remote.url("http", "linear")) as model:
        assert not hasattr(model, "compiled")
        with pytest.raises(aioinfer.SessionError, match="runs on its server"):
            model.session()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_closed_model(remote: Servers, protocol: str) -> None:
    model = await aioinfer.load(remote.url(protocol, "linear"))
    await model.aclose()
    await model.aclose()  # idempotent
    assert model.closed
    with pytest.raises(aioinfer.ClosedError):
        await model(np.zeros((1, 4), np.float32))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_aclose_lets_calls_in_flight_finish(remote: Servers, protocol: str) -> None:
    x = np.full((1, 3, 96, 96), 3, np.float32)
    model = await aioinfer.load(remote.url(protocol, "slow"), num_requests=2)
    calls = [asyncio.ensure_future(model(x)) for _ in range(6)]
    await asyncio.sleep(0)  # let them start: the calls are made before aclose
    await model.aclose()
    assert all(c.result()[0][0, 0] == 3 for c in calls)
    assert model.stats().completed == 6


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_aclose_timeout_fails_calls_in_flight(remote: Servers, protocol: str) -> None:
    x = np.full((1, 3, 96, 96), 3, np.float32)
    model = await aioinfer.load(remote.url(protocol, "slow"), num_requests=1)
    calls = [asyncio.ensure_future(model(x)) for _ in range(8)]
    await asyncio.sleep(0)
    await model.aclose(timeout=0)
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, aioinfer.ClosedError) for r in results), results
    stats = model.stats()
    assert (stats.submitted, stats.cancelled, stats.in_flight, stats.queued) == (8, 8, 0, 0)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
async def test_connection_refused_is_server_connection_error(scheme: str) -> None:
    with socket.socket() as sock:  # a port nothing listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}/v2/models/m" if scheme == "http" else f"grpc://127.0.0.1:{port}/m"
        with pytest.raises(aioinfer.ServerConnectionError, match=f"127.0.0.1:{port}"):
            await aioinfer.load(url)


async def test_unresolvable_host_is_server_connection_error() -> None:
    with pytest.raises(aioinfer.ServerConnectionError, match=r"no-such-host\.invalid"):
        await aioinfer.load("http://no-such-host.invalid:8000/v2/models/m")


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("ftp://h/v2/models/m", {}, "unknown scheme"),
        ("http://h:8000/models/m", {}, "names no model"),
        ("grpc://h:8001/", {}, "names no model"),
        ("http://h:8000/v2/models/m", {"device": "GPU"}, "takes only"),
        ("http://h:8000/v2/models/m", {"config": {"binary": False}}, r"unknown option\(s\) \['binary'\]"),
    ],
)
def test_bad_urls_and_arguments_raise_value_error_at_once(
    url: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        aioinfer.load(url, **kwargs)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_batcher_over_a_remote_model(remote: Servers, protocol: str) -> None:
    """A local Batcher stacks concurrent calls into one request to the server."""
    xs = [np.full((1, 4), i, np.float32) for i in range(24)]
    async with (
        aioinfer.load(remote.url(protocol, "linear")) as model,
        aioinfer.Batcher(model, max_batch_size=8, max_delay=0.05) as batcher,
    ):
        outs = await asyncio.gather(*(batcher.infer(x) for x in xs))
        sent = model.stats().completed
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_array_equal(out["y"], models.linear_expected(x))
    assert sent < len(xs)


async def test_thin_client_ocr_reads_as_the_local_ocr(remote: Servers) -> None:
    """The ocr task run here with its det, cls and rec models on the server (over HTTP, then
    gRPC): the same lines, scores and boxes as the same task with the same models run locally."""
    pages = [sample_page(i).image for i in (0, 4)]
    async with aioinfer.tasks.load(None, task="ocr", device="CPU", config=models.EXACT) as local:
        expected = [await local.predict(page) for page in pages]
        for protocol in PROTOCOLS:
            async with contextlib.AsyncExitStack() as stack:
                remote_models = {
                    role: await stack.enter_async_context(aioinfer.load(remote.url(protocol, role)))
                    for role in ("det", "cls", "rec")
                }
                thin = OCRTask(remote_models, characters=local.characters)
                for page, here in zip(pages, expected, strict=True):
                    there = await thin.predict(page)
                    assert here.lines and [ln.text for ln in there.lines] == [ln.text for ln in here.lines]
                    for a, b in zip(here.lines, there.lines, strict=True):
                        assert b.score == pytest.approx(a.score, abs=1e-5)
                        np.testing.assert_allclose(b.box, a.box, atol=1e-3)


@pytest.mark.anyio
async def test_http_remote_model_on_every_backend(remote: Servers, anyio_backend: Any) -> None:
    xs = [np.random.default_rng(i).standard_normal((2, 4)).astype(np.float32) for i in range(32)]
    outs: dict[int, Any] = {}
    async with aioinfer.load(remote.url("http", "linear"), num_requests=4) as model:

        async def one(i: int) -> None:
            outs[i] = await model(xs[i])

        async with anyio.create_task_group() as tg:
            for i in range(len(xs)):
                tg.start_soon(one, i)
        with pytest.raises(aioinfer.InferTimeout):
            await model(xs[0], timeout=0)
        with pytest.raises(aioinfer.ModelNotFoundError):
            await aioinfer.load(remote.url("http", "nope"))
    for i, x in enumerate(xs):
        np.testing.assert_array_equal(outs[i]["y"], models.linear_expected(x))
    with pytest.raises(aioinfer.ClosedError):
        await model(xs[0])


@pytest.mark.anyio
async def test_grpc_remote_model_needs_asyncio(remote: Servers, anyio_backend: Any) -> None:
    """grpc.aio runs on asyncio (and uvloop): under trio, a clear EventLoopError at once."""
    loading = aioinfer.load(remote.url("grpc", "linear"))
    if anyio_backend[0] == "trio":
        with pytest.raises(aioinfer.EventLoopError, match="asyncio only"):
            await loading
        return
    async with loading as model:
        np.testing.assert_array_equal((await model(np.zeros((1, 4), np.float32)))[0], [[1, 1, 1, 1]])


async def test_a_remote_model_belongs_to_its_loop(remote: Servers) -> None:
    async with aioinfer.load(remote.url("http", "linear")) as model:
        with pytest.raises(aioinfer.EventLoopError):
            await asyncio.to_thread(asyncio.run, model(np.zeros((1, 4), np.float32)))
        assert model.stats().submitted == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_server_gone_is_server_connection_error(protocol: str) -> None:
    """A server that stops after the model was loaded: the next call fails with
    ServerConnectionError (not a hang, not a transport's own exception)."""
    async with aioinfer.load(models.linear(), device="CPU", config=models.EXACT) as linear:
        app = create_app({"linear": linear})
        async with app_serving(app) as (http, grpc):
            url = f"grpc://{grpc}/linear" if protocol == "grpc" else f"{http}/v2/models/linear"
            model = await aioinfer.load(url)
            np.testing.assert_array_equal((await model(np.zeros((1, 4), np.float32)))[0], [[1, 1, 1, 1]])
        with pytest.raises(aioinfer.ServerConnectionError, match="cannot reach"):
            await model(np.zeros((1, 4), np.float32))
        await model.aclose()
