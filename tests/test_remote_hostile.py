"""Hostile Open Inference Protocol servers against remote models (``aioinfer.load(URL)``): a raw
HTTP/1.1 server on a socket (answers that lie about their size, stream without end, decompress
into far more than they weigh, hold too many JSON values or shapes that cannot be) and a grpc.aio
server (messages over the limit, typed contents past ``max_json_values``, impossible shapes).
Each server answers the model's metadata honestly, so that ``load()`` succeeds, then answers
``/infer`` (ModelInfer) as the test switches it. Every refused answer is a clear aioinfer error,
nothing of the size a server merely claims is allocated here (``tracemalloc``'s peak), and the
same model answers exactly once the server is honest again. The HTTP tests run on asyncio
(aiohttp's client) and trio (httpx's); gRPC runs on asyncio only."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import socket
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import brotli
import grpc
import numpy as np
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

import aioinfer
from aioinfer._codecs import MAX_JSON_VALUES
from aioinfer._oip import MAX_DIMS
from aioinfer._oip_proto import SERVICE, messages

pytestmark = [pytest.mark.timeout(120)]
BOTH_LOOPS = pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {}), id="asyncio"), pytest.param(("trio", {}), id="trio")]
)

LIMIT = 2**20  # max_answer_bytes of the models under attack
VALUES = 1000  # their max_json_values
BOUNDS = {"max_answer_bytes": LIMIT, "max_json_values": VALUES}
CHUNK = bytes(2**16)  # what a streaming server writes at a time
STREAM = 128 * LIMIT  # what it would stream in all: far more than the kernel's socket buffers hold
X = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
TENSOR = {"x": {"name": "x", "datatype": "FP32", "shape": [-1, 3]}}
TENSOR["y"] = {**TENSOR["x"], "name": "y"}
METADATA = {"name": "m", "versions": ["1"], "platform": "hostile", "inputs": [TENSOR["x"]]}
METADATA["outputs"] = [TENSOR["y"]]
M = messages()


# -- the HTTP server ------------------------------------------------------------------------------

Answer = Callable[["HostileHttp", SocketStream, dict[str, str], bytes], Awaitable[None]]
GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, anyio.IncompleteRead)


class HostileHttp:
    """HTTP/1.1 on a free loopback port, read and written by hand (keep-alive connections): the
    metadata of model ``m``, then ``/infer`` answered by ``infer`` (``y = x + 1`` as binary data
    while it is ``None``) and the metadata by ``metadata`` likewise. ``streamed``: chunks of
    :data:`CHUNK` written by the last streaming answer; ``stopped`` is set once it has stopped
    (all written, or the client gone)."""

    def __init__(self) -> None:
        self.infer: Answer | None = None
        self.metadata: Answer | None = None
        self.streamed = 0
        self.stopped = anyio.Event()
        self.url = ""

    async def connection(self, stream: SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        with contextlib.suppress(*GONE):
            while head := await reader.receive_until(b"\r\n\r\n", 2**16):
                method, *lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
                length = int(headers.get("content-length", 0))
                body = await reader.receive_exactly(length) if length else b""
                if method.startswith("GET"):
                    await (self.metadata or honest_metadata)(self, stream, headers, body)
                else:
                    await (self.infer or honest_infer)(self, stream, headers, body)

    async def stream(self, stream: SocketStream, head: bytes, *, chunked: bool) -> None:
        """``head`` (status line and headers), then up to :data:`STREAM` bytes, a chunk at a time
        (HTTP chunks if ``chunked``), for as long as the client reads."""
        self.streamed = 0
        self.stopped = anyio.Event()
        # a small send buffer (no autotuning): what the kernel takes ahead of the client is then
        # mostly the client's own receive buffer
        stream.extra(SocketAttribute.raw_socket).setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2**18)
        try:
            await stream.send(head)
            for _ in range(STREAM // len(CHUNK)):
                # raises once the client has gone away
                await stream.send(b"%x\r\n%b\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK)
                self.streamed += 1
            if chunked:
                await stream.send(b"0\r\n\r\n")
        finally:
            self.stopped.set()


def response(body: bytes, status: int = 200, **headers: str) -> bytes:
    """A whole HTTP answer: status line, ``headers`` (``_`` as ``-``), Content-Length, ``body``."""
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return "\r\n".join([*lines, "", ""]).encode() + body


def binary(outputs: list[dict[str, Any]], data: bytes, **headers: str) -> bytes:
    """An ``/infer`` answer of ``outputs`` (each ``parameters.binary_data_size`` given) whose
    binary data is ``data``."""
    head = json.dumps({"model_name": "m", "outputs": outputs}).encode()
    return response(head + data, inference_header_content_length=str(len(head)), **headers)


def y(shape: Any, nbytes: int | None = None, datatype: str = "FP32", **fields: Any) -> dict[str, Any]:
    """Output ``y`` as answered: ``shape``, binary data of ``nbytes`` bytes unless ``None``."""
    tensor = {"name": "y", "datatype": datatype, "shape": shape, **fields}
    return tensor if nbytes is None else {**tensor, "parameters": {"binary_data_size": nbytes}}


async def honest_metadata(server: HostileHttp, stream: SocketStream, *_: Any) -> None:
    await stream.send(response(json.dumps(METADATA).encode(), content_type="application/json"))


async def honest_infer(
    server: HostileHttp, stream: SocketStream, headers: dict[str, str], body: bytes
) -> None:
    """``y = x + 1``: binary data for binary data, JSON for JSON."""
    size = int(headers.get("inference-header-content-length", len(body)))
    (x,) = json.loads(body[:size])["inputs"]
    if "data" in x:
        out = (np.array(x["data"], np.float32) + 1).tolist()
        await stream.send(response(json.dumps({"outputs": [y(x["shape"], data=out)]}).encode()))
    else:
        data = (np.frombuffer(body[size:], np.float32).reshape(x["shape"]) + 1).tobytes()
        await stream.send(binary([y(x["shape"], len(data))], data))


def sending(answer: bytes) -> Answer:
    """An answer that writes the bytes ``answer``, whatever was asked."""

    async def send(server: HostileHttp, stream: SocketStream, *_: Any) -> None:
        await stream.send(answer)

    return send


def streaming(status: int, *, chunked: bool) -> Answer:
    """An answer of :data:`STREAM` bytes with ``status``: chunked without a length, or declaring
    its whole length in Content-Length (then sending it, as long as the client reads)."""
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {STREAM}"
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{length}\r\n\r\n".encode()

    async def stream(server: HostileHttp, stream: SocketStream, *_: Any) -> None:
        await server.stream(stream, head, chunked=chunked)

    return stream


@contextlib.asynccontextmanager
async def listening(handler: Callable[[SocketStream], Awaitable[None]]) -> AsyncIterator[int]:
    """``handler`` serving connections on a free loopback port, yielded; at exit, the connections
    still open are cancelled."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        yield listener.extra(SocketAttribute.local_port)
        tg.cancel_scope.cancel()


@pytest.fixture
async def http() -> AsyncIterator[HostileHttp]:
    server = HostileHttp()
    async with listening(server.connection) as port:
        server.url = f"http://127.0.0.1:{port}/v2/models/m"
        yield server


@pytest.fixture
async def http_model(http: HostileHttp) -> AsyncIterator[aioinfer.AsyncModel]:
    async with aioinfer.load(http.url, config=BOUNDS) as model:
        yield model


# -- the gRPC server ------------------------------------------------------------------------------


class HostileGrpc:
    """The protocol's gRPC service on a free loopback port: the metadata of model ``m``, then
    ModelInfer answered by ``infer`` (a ModelInferResponse of the request; ``y = x + 1`` as raw
    contents while it is ``None``). ``inputs``: the inputs its metadata declares."""

    def __init__(self) -> None:
        self.infer: Callable[[Any], Any] | None = None
        self.inputs = [TENSOR["x"]]
        self.url = ""

    async def model_metadata(self, request: Any, context: Any) -> Any:
        tensor = M["ModelMetadataResponse"].TensorMetadata
        return M["ModelMetadataResponse"](
            name="m",
            versions=["1"],
            platform="hostile",
            inputs=[tensor(**t) for t in self.inputs],
            outputs=[tensor(**TENSOR["y"])],
        )

    async def model_infer(self, request: Any, context: Any) -> Any:
        answer = (self.infer or honest_model_infer)(request)
        return await answer if inspect.isawaitable(answer) else answer

    def handler(self) -> grpc.GenericRpcHandler:
        def method(fn: Callable[..., Any], name: str) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=M[f"{name}Request"].FromString,
                response_serializer=M[f"{name}Response"].SerializeToString,
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ModelMetadata": method(self.model_metadata, "ModelMetadata"),
                "ModelInfer": method(self.model_infer, "ModelInfer"),
            },
        )


def infer_response(*outputs: dict[str, Any], raw: list[bytes] | None = None) -> Any:
    tensor = M["ModelInferResponse"].InferOutputTensor
    return M["ModelInferResponse"](
        model_name="m", outputs=[tensor(**o) for o in outputs], raw_output_contents=raw or []
    )


def honest_model_infer(request: Any) -> Any:
    shape = list(request.inputs[0].shape)
    x = np.frombuffer(request.raw_input_contents[0], np.float32).reshape(shape)
    return infer_response(y(shape), raw=[(x + 1).tobytes()])


@pytest.fixture
async def rpc() -> AsyncIterator[HostileGrpc]:
    hostile = HostileGrpc()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((hostile.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    hostile.url = f"grpc://127.0.0.1:{port}/m"
    try:
        yield hostile
    finally:
        await server.stop(0)


@pytest.fixture
async def rpc_model(rpc: HostileGrpc) -> AsyncIterator[aioinfer.AsyncModel]:
    async with aioinfer.load(rpc.url, config=BOUNDS) as model:
        yield model


# -- the checks ----------------------------------------------------------------------------------


async def refused(
    model: aioinfer.AsyncModel,
    server: HostileHttp | HostileGrpc,
    answer: Any,
    error: type[BaseException] | tuple[type[BaseException], ...],
    match: str | None,
) -> int:
    """``tracemalloc``'s peak over one ``infer`` that the server's ``answer`` makes fail with
    ``error`` (its message matching ``match``, if given); then, the server honest again, the
    same model answers ``x + 1`` exactly, and ``stats().failed`` counted the failure."""
    failed = model.stats().failed
    server.infer = answer
    tracemalloc.start()
    try:
        with pytest.raises(error, match=match):
            with anyio.fail_after(30):  # a regression that hangs fails instead
                await model(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert model.stats().failed == failed + 1
    server.infer = None
    np.testing.assert_array_equal((await model(X[::-1] * 3))["y"], X[::-1] * 3 + 1)
    return peak


# -- options --------------------------------------------------------------------------------------


async def test_defaults_are_in_effect(http: HostileHttp, rpc: HostileGrpc) -> None:
    for url in (http.url, rpc.url):
        async with aioinfer.load(url) as model:
            assert model.info.config["max_answer_bytes"] == 256 * 2**20
            assert model.info.config["max_json_values"] == MAX_JSON_VALUES == 300_000
            assert model.info.config["answer_timeout"] == 300
            np.testing.assert_array_equal((await model(X))["y"], X + 1)


@pytest.mark.parametrize("option", ["max_answer_bytes", "max_json_values"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "1000", None, True])
def test_bad_bounds_are_value_errors_at_load(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=option):
        aioinfer.load("http://127.0.0.1:1/v2/models/m", config={option: value})


@pytest.mark.parametrize("value", [0, -1, "10", math.nan, math.inf, True])
def test_bad_answer_timeouts_are_value_errors_at_load(value: Any) -> None:
    with pytest.raises(ValueError, match="answer_timeout"):
        aioinfer.load("grpc://127.0.0.1:1/m", config={"answer_timeout": value})


async def stalled_http(server: HostileHttp, stream: SocketStream, *_: Any) -> None:
    """Reads the request and never answers, the connection kept open."""
    await anyio.sleep_forever()


async def stalled_grpc(request: Any) -> Any:
    await anyio.sleep_forever()


async def times_out(server: HostileHttp | HostileGrpc, stall: Callable[..., Awaitable[Any]]) -> None:
    """A server that takes a request and never answers (its process stuck, the connection
    alive): a call that passes no timeout= still ends, at the model's answer_timeout, and only
    that call; a timeout= of the call wins over it."""
    async with aioinfer.load(server.url, config={"answer_timeout": 0.5}) as model:
        server.infer = stall
        with anyio.fail_after(30):  # a regression that hangs fails instead
            with pytest.raises(aioinfer.InferTimeout, match=r"within 0.5 s, the model's answer_timeout"):
                await model(X)
            with pytest.raises(aioinfer.InferTimeout, match=r"within 0.2 s$"):
                await model(X, timeout=0.2)
        stats = model.stats()
        assert (stats.cancelled, stats.failed, stats.in_flight) == (2, 0, 0)  # timeouts count as cancelled
        server.infer = None
        np.testing.assert_array_equal((await model(X))["y"], X + 1)


@BOTH_LOOPS
async def test_an_http_server_that_stalls_mid_call_times_out_by_default(http: HostileHttp) -> None:
    await times_out(http, stalled_http)


async def test_a_grpc_server_that_stalls_mid_call_times_out_by_default(rpc: HostileGrpc) -> None:
    await times_out(rpc, stalled_grpc)


# -- HTTP -----------------------------------------------------------------------------------------


@BOTH_LOOPS
@pytest.mark.parametrize("status", [200, 500])
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
async def test_http_answer_over_max_answer_bytes_is_not_read(
    http: HostileHttp, http_model: aioinfer.AsyncModel, chunked: bool, status: int
) -> None:
    """An answer of 128 MiB, with a limit of 1 MiB: declared in Content-Length, it is refused
    before its body is read; streamed without a length, reading stops at the limit. Either way
    the connection is dropped: the server is stopped long before it has written it all (the
    kernel's socket buffers hold a few MiB). An error answer (500) is bounded just as well."""
    peak = await refused(
        http_model, http, streaming(status, chunked=chunked), aioinfer.TooLargeError, "max_answer_bytes"
    )
    assert peak < (4 if chunked else 1) * LIMIT
    with anyio.fail_after(10):  # the client went away: the server's next writes failed
        await http.stopped.wait()
    assert http.streamed * len(CHUNK) < STREAM // 8


@functools.cache
def bomb(encoding: str) -> bytes:
    """:data:`STREAM` zero bytes as a body of Content-Encoding ``encoding`` (``gzip, gzip``:
    compressed twice), a few KB at most."""
    data = bytes(STREAM)
    for coding in reversed(encoding.split(", ")):
        if coding == "br":
            data = brotli.compress(data, quality=5)
        else:
            compressor = zlib.compressobj(9, zlib.DEFLATED, 31 if coding == "gzip" else 15)
            data = compressor.compress(data) + compressor.flush()
    return data


@BOTH_LOOPS
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, gzip"])
async def test_http_compression_bomb_is_refused(
    http: HostileHttp, http_model: aioinfer.AsyncModel, encoding: str
) -> None:
    """A body of a few KB (less than the limit, as received) that decodes to 128 MiB, though the
    client asked for none (Accept-Encoding: identity): refused, either as a coding it did not ask
    for (InferenceError naming Content-Encoding) or by its decoded size (TooLargeError), without
    ever holding much more than the limit. (Stacked codings, still gzip once decoded, may
    instead fail as JSON that does not parse.)"""
    body = bomb(encoding)
    assert len(body) < LIMIT // 4
    answer = sending(response(body, content_encoding=encoding, content_type="application/json"))
    match = None if "," in encoding else "max_answer_bytes|Content-Encoding"
    errors = (aioinfer.TooLargeError, aioinfer.InferenceError)
    peak = await refused(http_model, http, answer, errors, match)
    assert peak < 4 * LIMIT


def json_answer(values: int) -> bytes:
    data = ",".join(["0.5"] * values)
    head = f'{{"model_name":"m","outputs":[{{"name":"y","datatype":"FP32","shape":[{values // 3},3],'
    return response(f'{head}"data":[{data}]}}]}}'.encode(), content_type="application/json")


@BOTH_LOOPS
@pytest.mark.parametrize("binary_data", [True, False])
async def test_http_json_answer_over_max_json_values_is_not_parsed(
    http: HostileHttp, binary_data: bool
) -> None:
    """30,000 JSON values (120 KB) with max_json_values=1000, whatever the client asked for: refused
    before they are parsed (parsed, their floats and list alone would take 30,000 x 32 bytes)."""
    answer = json_answer(30_000)
    assert len(answer) < LIMIT // 4
    async with aioinfer.load(http.url, config={**BOUNDS, "binary_data": binary_data}) as model:
        http.infer = sending(json_answer(900))  # within the limit (keys count too), for comparison
        assert (await model(X))["y"].shape == (300, 3)
        http.infer = None
        peak = await refused(model, http, sending(answer), aioinfer.TooLargeError, "max_json_values")
    assert peak < 30_000 * 32


METADATA_ATTACKS = {
    "chunked without end": streaming(200, chunked=True),
    "too many JSON values": sending(
        response(json.dumps({**METADATA, "platform": [0] * 30_000}).encode(), content_type="application/json")
    ),
}


@BOTH_LOOPS
@pytest.mark.parametrize("attack", METADATA_ATTACKS)
async def test_http_metadata_over_the_bounds_fails_load(http: HostileHttp, attack: str) -> None:
    """The metadata answer is bounded as an /infer answer is: load() refuses it."""
    http.metadata = METADATA_ATTACKS[attack]
    tracemalloc.start()
    try:
        with pytest.raises(aioinfer.TooLargeError, match=r"max_answer_bytes|max_json_values"):
            with anyio.fail_after(30):
                async with aioinfer.load(http.url, config=BOUNDS):
                    pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * LIMIT
    http.metadata = None
    async with aioinfer.load(http.url, config=BOUNDS) as model:
        np.testing.assert_array_equal((await model(X))["y"], X + 1)


BAD_METADATA = {  # the inputs the metadata declares
    "a negative size other than -1": [{**TENSOR["x"], "shape": [-5, 3]}],
    "a size past int64": [{**TENSOR["x"], "shape": [2**70, 3]}],
    "a float size": [{**TENSOR["x"], "shape": [1.5, 3]}],
    "a string as the shape": [{**TENSOR["x"], "shape": "13"}],
    "more than MAX_DIMS sizes": [{**TENSOR["x"], "shape": [1] * (MAX_DIMS + 1)}],
    "one name twice": [TENSOR["x"], TENSOR["x"]],
}


@BOTH_LOOPS
@pytest.mark.parametrize("case", BAD_METADATA)
async def test_http_metadata_that_is_not_the_protocols_is_model_load_error(
    http: HostileHttp, case: str
) -> None:
    """Beyond the contract: inputs that cannot be are refused at load() as ModelLoadError (not
    read as some other shape, nor OpenVINO's own exception)."""
    metadata = json.dumps({**METADATA, "inputs": BAD_METADATA[case]}).encode()
    http.metadata = sending(response(metadata, content_type="application/json"))
    with pytest.raises(aioinfer.ModelLoadError, match=r"'x'|inputs"):
        async with aioinfer.load(http.url, config=BOUNDS):
            pass
    http.metadata = None
    async with aioinfer.load(http.url, config=BOUNDS) as model:
        np.testing.assert_array_equal((await model(X))["y"], X + 1)


@pytest.mark.parametrize("case", ["a negative size other than -1", "more than MAX_DIMS sizes"])
async def test_grpc_metadata_that_is_not_the_protocols_is_model_load_error(
    rpc: HostileGrpc, case: str
) -> None:
    """As over HTTP (beyond the contract)."""
    rpc.inputs = BAD_METADATA[case]
    with pytest.raises(aioinfer.ModelLoadError, match=r"'x'|inputs"):
        async with aioinfer.load(rpc.url, config=BOUNDS):
            pass
    rpc.inputs = [TENSOR["x"]]
    async with aioinfer.load(rpc.url, config=BOUNDS) as model:
        np.testing.assert_array_equal((await model(X))["y"], X + 1)


BAD_SHAPES = {  # the shape answered for output y, the binary data with it
    "negative sizes": ([-1, -3], 12),
    "a float size": ([1.0, 3], 12),
    "sizes as strings": (["1", "3"], 12),
    "a boolean size": ([True, 3], 12),
    "a string as the shape": ("13", 12),
    "an object as the shape": ({"1": 1, "3": 3}, 12),
    "more than MAX_DIMS sizes": ([1] * (MAX_DIMS + 1), 4),
    "more sizes than numpy holds": ([1] * 65, 4),
    "sizes past the data": ([2**40, 2**40], 12),
}


@BOTH_LOOPS
@pytest.mark.parametrize("case", BAD_SHAPES)
@pytest.mark.parametrize("answered_as", ["binary", "json"])
async def test_http_output_with_an_impossible_shape_is_inference_error(
    http: HostileHttp, http_model: aioinfer.AsyncModel, case: str, answered_as: str
) -> None:
    shape, nbytes = BAD_SHAPES[case]
    if answered_as == "binary":
        answer = binary([y(shape, nbytes)], bytes(nbytes))
    else:
        answer = response(json.dumps({"outputs": [y(shape, data=[0.5] * (nbytes // 4))]}).encode())
    await refused(http_model, http, sending(answer), aioinfer.InferenceError, "output 'y'|shape")


@BOTH_LOOPS
@pytest.mark.parametrize(
    ("output", "data"),
    [
        (y([1, 3], 8), bytes(8)),  # raw data short of the shape
        (y([1, 3], 16), bytes(16)),  # raw data past the shape
        (y([1, 3], -12), bytes(12)),  # a negative binary_data_size
        (y([1, 3], 12.0), bytes(12)),  # a binary_data_size that is no integer
    ],
)
async def test_http_binary_data_of_the_wrong_length_is_inference_error(
    http: HostileHttp, http_model: aioinfer.AsyncModel, output: dict[str, Any], data: bytes
) -> None:
    await refused(http_model, http, sending(binary([output], data)), aioinfer.InferenceError, "'y'|protocol")


def framed(head: bytes, data: bytes, length: str) -> bytes:
    """An ``/infer`` answer of JSON ``head`` and binary ``data`` whose header length says ``length``."""
    return response(head + data, inference_header_content_length=length)


Y12 = json.dumps({"outputs": [y([1, 3], 12)]}).encode()
FRAMING = {  # answers whose parts do not add up
    "bytes past the outputs' data": binary([y([1, 3], 12)], bytes(16)),
    "an output answered twice": binary([y([1, 3], 12), y([1, 3], 12)], bytes(24)),
    "a header length that is no number": framed(Y12, bytes(12), "twelve"),
    "a header length past the body": framed(Y12, bytes(12), str(len(Y12) + 13)),
}


@BOTH_LOOPS
@pytest.mark.parametrize("case", FRAMING)
async def test_http_answer_whose_parts_do_not_add_up_is_inference_error(
    http: HostileHttp, http_model: aioinfer.AsyncModel, case: str
) -> None:
    """Nothing of an answer is silently dropped or taken twice: every byte belongs to exactly one
    output, each output answered once."""
    match = "past its outputs|twice|Inference-Header-Content-Length"
    await refused(http_model, http, sending(FRAMING[case]), aioinfer.InferenceError, match)


JSON_DATA = {  # output y as answered in JSON
    "strings for FP32": y([1, 3], data=["a", "b", "c"]),
    "an INT8 out of its range": y([1, 3], datatype="INT8", data=[1000, 1, 1]),
    "BYTES that are no strings": y([3], datatype="BYTES", data=[1, {"a": 1}, None]),
    "an object for data": y([1, 3], data={"a": 1, "b": 2, "c": 3}),
}


@BOTH_LOOPS
@pytest.mark.parametrize("case", JSON_DATA)
async def test_http_json_data_not_of_its_datatype_is_inference_error(
    http: HostileHttp, http_model: aioinfer.AsyncModel, case: str
) -> None:
    """Beyond the contract: values numpy refuses (or would hold as Python objects) for the
    answered datatype are the server's fault, an InferenceError (not numpy's own exception)."""
    answer = response(json.dumps({"outputs": [JSON_DATA[case]]}).encode())
    await refused(http_model, http, sending(answer), aioinfer.InferenceError, "output 'y'")


@BOTH_LOOPS
async def test_http_bytes_output_of_a_count_its_data_cannot_hold(
    http: HostileHttp, http_model: aioinfer.AsyncModel
) -> None:
    """BYTES [2**24] with 8 bytes of data (each element takes at least 4, its length): refused
    before 2**24 elements (128 MiB of pointers) are allocated. (2**31 would be the real attack:
    16 GiB, too much to try against a client that allocates first.)"""
    answer = binary([y([2**24], 8, "BYTES")], bytes(8))
    peak = await refused(http_model, http, sending(answer), aioinfer.InferenceError, "output 'y'")
    assert peak < LIMIT


@BOTH_LOOPS
async def test_http_json_nested_past_the_recursion_limit_is_inference_error(
    http: HostileHttp, http_model: aioinfer.AsyncModel
) -> None:
    """100,000 nested lists (200 KB, 0 values by the separators' count but 100,000 brackets):
    json.loads would raise RecursionError; an InferenceError (or TooLargeError) instead."""
    answer = response(b"[" * 100_000 + b"]" * 100_000, content_type="application/json")
    await refused(
        http_model, http, sending(answer), (aioinfer.InferenceError, aioinfer.TooLargeError), "JSON|max_json"
    )


@BOTH_LOOPS
@pytest.mark.parametrize("status", [301, 307, 308])
async def test_http_redirect_is_not_followed(
    http: HostileHttp, http_model: aioinfer.AsyncModel, status: int
) -> None:
    """Beyond the contract: a server that redirects /infer elsewhere (here to another listener)
    fails that call, on either client (aiohttp follows redirects unless told not to, httpx
    does not): the request, its tensors and headers, goes nowhere else."""
    elsewhere: list[SocketStream] = []

    async def record(stream: SocketStream) -> None:
        elsewhere.append(stream)
        await stream.aclose()

    async with listening(record) as port:
        answer = response(b"", status, location=f"http://127.0.0.1:{port}/v2/models/m/infer")
        await refused(http_model, http, sending(answer), aioinfer.InferenceError, rf"\({status}\)")
    assert not elsewhere


async def silent(stream: SocketStream) -> None:
    """Accepts a connection, reads whatever comes, answers nothing."""
    with contextlib.suppress(*GONE):
        while await stream.receive():
            pass


@pytest.mark.parametrize(
    ("scheme", "anyio_backend"),
    [("http", ("asyncio", {})), ("http", ("trio", {})), ("grpc", ("asyncio", {}))],
    ids=["http-asyncio", "http-trio", "grpc-asyncio"],
)
async def test_a_server_that_never_answers_metadata_is_server_connection_error(scheme: str) -> None:
    """A server that accepts the connection and stays silent (no HTTP answer, no HTTP/2
    handshake): load() fails within connect_timeout."""
    async with listening(silent) as port:
        url = f"http://127.0.0.1:{port}/v2/models/m" if scheme == "http" else f"grpc://127.0.0.1:{port}/m"
        with anyio.fail_after(30):  # a regression that hangs fails instead
            with pytest.raises(aioinfer.ServerConnectionError, match=f"127.0.0.1:{port}"):
                async with aioinfer.load(url, config={"connect_timeout": 0.5}):
                    pass


# -- gRPC -----------------------------------------------------------------------------------------


async def test_grpc_answer_over_max_answer_bytes(rpc: HostileGrpc, rpc_model: aioinfer.AsyncModel) -> None:
    """A 2 MiB message, the limit 1 MiB: refused by the channel, as TooLargeError (not the 413
    of a request the server refused)."""
    data = bytes(2 * LIMIT)
    answer = infer_response(y([len(data) // 12, 3]), raw=[data])
    await refused(rpc_model, rpc, lambda _: answer, aioinfer.TooLargeError, "max_answer_bytes")


async def test_grpc_typed_contents_over_max_json_values(
    rpc: HostileGrpc, rpc_model: aioinfer.AsyncModel
) -> None:
    """30,000 fp32_contents (120 KB, within max_answer_bytes) with max_json_values=1000: refused
    before they are converted one by one."""
    contents = M["InferTensorContents"](fp32_contents=[0.5] * 30_000)
    answer = infer_response(y([10_000, 3], contents=contents))
    await refused(rpc_model, rpc, lambda _: answer, aioinfer.TooLargeError, "max_json_values")


def fp32(values: int) -> Any:
    return M["InferTensorContents"](fp32_contents=[0.5] * values)


async def test_grpc_typed_contents_over_max_json_values_in_all(
    rpc: HostileGrpc, rpc_model: aioinfer.AsyncModel
) -> None:
    """40 outputs of 999 fp32_contents each (none of them asked for), 39,960 values in all with
    max_json_values=1000: the answer is counted as a whole, as a JSON answer is."""
    outputs = [
        y([333, 3], contents=fp32(999)),
        *({**y([333, 3], contents=fp32(999)), "name": f"z{i}"} for i in range(39)),
    ]
    answer = infer_response(*outputs)
    await refused(rpc_model, rpc, lambda _: answer, aioinfer.TooLargeError, "max_json_values")


GRPC_ATTACKS = {  # an answer, the words of its error
    "raw, negative sizes": (infer_response(y([-1, -3]), raw=[bytes(12)]), "output 'y'|shape"),
    "raw, more than MAX_DIMS sizes": (infer_response(y([1] * (MAX_DIMS + 1)), raw=[bytes(4)]), "shape"),
    "raw, more sizes than numpy holds": (infer_response(y([1] * 65), raw=[bytes(4)]), "shape"),
    "raw, data short of the shape": (infer_response(y([1, 3]), raw=[bytes(8)]), "output 'y'"),
    "raw, one content for two outputs": (
        infer_response(y([1, 3]), {**y([1, 3]), "name": "z"}, raw=[bytes(12)]),
        "raw contents",
    ),
    "typed, negative sizes": (infer_response(y([-1, -3], contents=fp32(3))), "output 'y'|shape"),
    # np.prod of these wraps to 0 in int64: math.prod does not
    "typed, sizes whose product overflows": (
        infer_response(y([2**32, 2**32], contents=fp32(0))),
        "output 'y'|shape",
    ),
    "typed, values short of the shape": (infer_response(y([2, 3], contents=fp32(3))), "output 'y'"),
    "typed, FP16 (no contents field)": (infer_response(y([1, 3], datatype="FP16", contents=fp32(3))), "FP16"),
}


@pytest.mark.parametrize("attack", GRPC_ATTACKS)
async def test_grpc_output_that_cannot_be_is_inference_error(
    rpc: HostileGrpc, rpc_model: aioinfer.AsyncModel, attack: str
) -> None:
    answer, match = GRPC_ATTACKS[attack]
    await refused(rpc_model, rpc, lambda _: answer, aioinfer.InferenceError, match)


async def test_grpc_bytes_output_of_a_count_its_data_cannot_hold(
    rpc: HostileGrpc, rpc_model: aioinfer.AsyncModel
) -> None:
    """As over HTTP: BYTES [2**24] with 8 bytes of raw contents, refused before it is allocated."""
    answer = infer_response(y([2**24], datatype="BYTES"), raw=[bytes(8)])
    peak = await refused(rpc_model, rpc, lambda _: answer, aioinfer.InferenceError, "output 'y'")
    assert peak < LIMIT
