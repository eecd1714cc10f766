"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService`` on ``grpc.aio``),
driven by ``tritonclient.grpc`` (sync and ``aio``) against two exact models: in this process
(the gRPC server in the test's event loop, beside uvicorn) and as ``aioinfer serve --grpc-port``."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import AsyncIterator

import models
import numpy as np
import openvino as ov
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aiogrpcclient
from prometheus_client.parser import text_string_to_metric_families
from servers import Serving, serving
from tritonclient.utils import InferenceServerException

import aioinfer
from aioinfer import _grpc
from aioinfer.asgi import create_app

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def grpc_serving(app) -> AsyncIterator[str]:
    """The app (its models loaded by uvicorn's lifespan) and its gRPC service on a free port."""
    async with serving(app):
        for service in app.state.services.values():
            await service.loaded.wait()
        server, port = _grpc.server(app.state.services, "127.0.0.1:0", 2**20)
        await server.start()
        try:
            yield f"127.0.0.1:{port}"
        finally:
            await server.stop(0)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with (
        aioinfer.load(models.linear(), device="CPU", config=models.EXACT) as linear,
        aioinfer.load(models.two_in_two_out(), device="CPU", config=models.EXACT) as pair,
        grpc_serving(create_app({"linear": linear, "pair": pair})) as address,
    ):
        yield address


def tensor(name: str, array: np.ndarray, datatype: str, cls: type = grpcclient.InferInput) -> object:
    t = cls(name, list(array.shape), datatype)
    t.set_data_from_numpy(array)
    return t


def sync_session(url: str) -> dict[str, object]:
    """Health, metadata and infers as the sync client sees them (run on a thread)."""
    with grpcclient.InferenceServerClient(url) as client:
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        a = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
        b = np.arange(-3, 3, dtype=np.int32).reshape(2, 3)
        return {
            "x": x,
            "a": a,
            "b": b,
            "live": client.is_server_live(),
            "ready": client.is_server_ready(),
            "models_ready": [client.is_model_ready(m) for m in ("linear", "pair")],
            "server": client.get_server_metadata(as_json=True),
            "linear": client.get_model_metadata("linear", as_json=True),
            "pair_v1": client.get_model_metadata("pair", model_version="1", as_json=True),
            "y": client.infer("linear", [tensor("x", x, "FP32")], request_id="r-9"),
            "pair": client.infer(
                "pair",
                [tensor("a", a, "FP32"), tensor("b", b, "INT32")],
                outputs=[grpcclient.InferRequestedOutput("prod")],
            ),
        }


async def test_sync_client_health_metadata_and_infer(url):
    got = await asyncio.to_thread(sync_session, url)
    assert got["live"] and got["ready"] and got["models_ready"] == [True, True]
    assert got["server"]["name"] == "aioinfer" and "binary_tensor_data" in got["server"]["extensions"]
    assert got["linear"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert got["pair_v1"]["versions"] == ["1"] and got["pair_v1"]["platform"] == "openvino"
    assert [t["datatype"] for t in got["pair_v1"]["inputs"]] == ["FP32", "INT32"]
    assert got["y"].get_response().id == "r-9"
    np.testing.assert_array_equal(got["y"].as_numpy("y"), models.linear_expected(got["x"]))
    assert [o.name for o in got["pair"].get_response().outputs] == ["prod"]
    np.testing.assert_array_equal(got["pair"].as_numpy("prod"), got["a"] * got["b"].astype(np.float32))


async def test_typed_contents_are_read_as_well_as_raw(url):
    """tritonclient always sends raw bytes: a request with typed ``contents`` is built by hand."""
    m = _grpc.messages()
    x = np.arange(8, dtype=np.float32).reshape(2, 4) - 3
    request = m["ModelInferRequest"](model_name="linear")
    request.inputs.add(name="x", datatype="FP32", shape=[2, 4]).contents.fp32_contents.extend(
        x.ravel().tolist()
    )
    import grpc

    async with grpc.aio.insecure_channel(url) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=m["ModelInferRequest"].SerializeToString,
            response_deserializer=m["ModelInferResponse"].FromString,
        )
        response = await call(request)
        request.inputs[0].contents.fp32_contents.append(1.0)  # one value too many
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request)
    y = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(list(response.outputs[0].shape))
    np.testing.assert_array_equal(y, models.linear_expected(x))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "9 values in fp32_contents for shape [2, 4]" in caught.value.details()


async def test_typed_contents_are_bounded_by_max_json_values_and_raw_ones_are_not():
    """Typed contents are converted value by value while holding the GIL, as JSON is parsed: a
    request with more of them than max_json_values is refused before any is converted."""
    import grpc

    m = _grpc.messages()

    def request(x: np.ndarray, raw: bool) -> object:
        message = m["ModelInferRequest"](model_name="linear")
        tensor = message.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
        if raw:
            message.raw_input_contents.append(x.tobytes())
        else:
            tensor.contents.fp32_contents.extend(x.ravel().tolist())
        return message

    at, over = (np.arange(n * 4, dtype=np.float32).reshape(n, 4) for n in (2, 3))
    async with (
        aioinfer.load(models.linear(), device="CPU", config=models.EXACT) as linear,
        grpc_serving(create_app({"linear": linear}, max_json_values=8)) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=m["ModelInferRequest"].SerializeToString,
            response_deserializer=m["ModelInferResponse"].FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request(over, raw=False))
        answers = [await call(request(at, raw=False)), await call(request(over, raw=True))]
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "hold 12 values, over max_json_values=8" in caught.value.details()
    assert "send them as raw_input_contents" in caught.value.details()
    for x, answer in zip((at, over), answers, strict=True):
        y = np.frombuffer(answer.raw_output_contents[0], np.float32).reshape(list(answer.outputs[0].shape))
        np.testing.assert_array_equal(y, models.linear_expected(x))


async def test_256_concurrent_aio_requests_each_exact(url):
    async with aiogrpcclient.InferenceServerClient(url) as client:

        async def one(k: int) -> None:
            x = np.full((1 + k % 3, 4), k, np.float32) + np.arange(4, dtype=np.float32)
            result = await client.infer("linear", [tensor("x", x, "FP32", aiogrpcclient.InferInput)])
            np.testing.assert_array_equal(result.as_numpy("y"), models.linear_expected(x))

        await asyncio.gather(*(one(k) for k in range(256)))


@pytest.mark.parametrize(
    ("call", "status", "says"),
    [
        (lambda c: c.get_model_metadata("nope"), "StatusCode.NOT_FOUND", "unknown model 'nope'"),
        (lambda c: c.is_model_ready("linear", "7"), "StatusCode.NOT_FOUND", "no version '7'"),
        (
            lambda c: c.infer("linear", [tensor("x", np.zeros((1, 5), np.float32), "FP32")]),
            "StatusCode.INVALID_ARGUMENT",
            "expected shape [?,4]",
        ),
        (
            lambda c: c.infer("linear", [tensor("x", np.zeros((1, 4), np.float64), "FP64")]),
            "StatusCode.INVALID_ARGUMENT",
            "datatype 'FP64', expected FP32",
        ),
        (
            lambda c: c.infer("linear", [tensor("x", np.zeros((2**20, 4), np.float32), "FP32")]),
            "StatusCode.RESOURCE_EXHAUSTED",
            "",  # a 16 MB message over the 1 MiB limit: refused by gRPC before it is read
        ),
        (
            lambda c: c.get_model_repository_index(),  # a method of the service not served here
            "StatusCode.UNIMPLEMENTED",
            "",
        ),
    ],
)
async def test_errors_reach_the_client_with_their_status(url, call, status, says):
    def run() -> InferenceServerException:
        with (
            grpcclient.InferenceServerClient(url) as client,
            pytest.raises(InferenceServerException) as caught,
        ):
            call(client)
        return caught.value

    error = await asyncio.to_thread(run)
    assert error.status() == status and says in error.message(), (error.status(), error.message())


async def test_overload_answers_unavailable_and_the_rest_exactly():
    slow = models.slow_conv(64)
    async with aioinfer.load(slow, device="CPU", config=models.EXACT, num_requests=1) as model:
        app = create_app({"slow": model}, max_batch_size=1, max_queue=1)
        async with grpc_serving(app) as address, aiogrpcclient.InferenceServerClient(address) as client:
            results = await overload(client)
            metrics = app.state.service.metrics.render().decode()
    refused = [r for r in results if isinstance(r, InferenceServerException)]
    assert refused and len(refused) < len(results)
    assert all(r.status() == "StatusCode.UNAVAILABLE" and "max_queue" in r.message() for r in refused)
    assert all(r == k for k, r in enumerate(results) if not isinstance(r, InferenceServerException))
    counted = {
        s.labels["status"]: s.value
        for f in text_string_to_metric_families(metrics)
        for s in f.samples
        if s.name == "aioinfer_requests_total" and s.labels["route"] == "grpc:ModelInfer"
    }
    assert counted == {"OK": len(results) - len(refused), "UNAVAILABLE": len(refused)}


async def overload(client: aiogrpcclient.InferenceServerClient) -> list[object]:
    """24 calls at once on a slow model: each one's answer (``y[0, 0]``) or its error."""

    async def one(k: int) -> object:
        x = np.full((1, 3, 64, 64), k, np.float32)
        try:
            result = await client.infer("slow", [tensor("x", x, "FP32", aiogrpcclient.InferInput)])
        except InferenceServerException as exc:
            return exc
        return result.as_numpy("y")[0, 0]

    return await asyncio.gather(*(one(k) for k in range(24)))


async def test_cli_grpc_port_serves_the_models_and_drains_on_sigterm(tmp_path):
    ov.save_model(models.linear(), tmp_path / "lin.xml")
    ov.save_model(models.two_in_two_out(), tmp_path / "two.xml")
    async with Serving(tmp_path / "lin.xml", tmp_path / "two.xml", "--grpc-port", "0") as server:
        await server.wait_for_line("event loop: uvloop")  # installed: the serve extra's uvicorn[standard]
        line = await server.wait_for_line("gRPC (inference.GRPCInferenceService) running on")
        address = re.search(r"running on (\S+)", line).group(1)
        await server.wait_for_line("'two_by_two' ready on CPU")
        await server.wait_for_line("'linear' ready on CPU")
        async with aiogrpcclient.InferenceServerClient(address) as client:
            assert await client.is_server_ready() and await client.is_model_ready("two")
            x = np.arange(8, dtype=np.float32).reshape(2, 4)
            calls = [
                asyncio.create_task(
                    client.infer("lin", [tensor("x", x + k, "FP32", aiogrpcclient.InferInput)])
                )
                for k in range(16)
            ]
            first = await calls[0]
            server.proc.send_signal(signal.SIGTERM)
            results = [first, *await asyncio.gather(*calls[1:])]
        for k, result in enumerate(results):
            np.testing.assert_array_equal(result.as_numpy("y"), models.linear_expected(x + k))
        assert await server.finish() == 0
