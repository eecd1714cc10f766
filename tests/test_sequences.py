"""Sequences of a served stateful model (aioinfer/_sequences.py): Triton's sequence parameters
(``sequence_id``, ``sequence_start``, ``sequence_end``) sent by ``tritonclient`` over HTTP and
gRPC, each sequence on its own session of the exact accumulator model (``state += x; y = state``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import models
import numpy as np
import pytest
import tritonclient.grpc.aio as aiogrpcclient
import tritonclient.http.aio as aiohttpclient
from servers import serving
from test_grpc import grpc_serving
from tritonclient.utils import InferenceServerException

import aioinfer
from aioinfer._sequences import SequenceParams, Sequences, sequence_params
from aioinfer.asgi import create_app

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def app() -> AsyncIterator[Any]:
    """``acc`` (stateful, 2 requests) and ``linear`` (stateless) served in one app."""
    async with (
        aioinfer.load(models.accumulator(), device="CPU", config=models.EXACT, num_requests=2) as acc,
        aioinfer.load(models.linear(), device="CPU", config=models.EXACT) as linear,
    ):
        yield create_app({"acc": acc, "linear": linear}, sequence_idle_timeout=5)


@pytest.fixture
async def http_url(app: Any) -> AsyncIterator[str]:
    async with serving(app) as client:
        for service in app.state.services.values():
            await service.loaded.wait()
        yield str(client.base_url).removeprefix("http://").rstrip("/")


def row(value: float) -> np.ndarray:
    return np.full((1, 4), value, np.float32)


def http_input(x: np.ndarray, name: str = "x") -> aiohttpclient.InferInput:
    tensor = aiohttpclient.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


def grpc_input(x: np.ndarray) -> aiogrpcclient.InferInput:
    tensor = aiogrpcclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


async def http_sequence(client: aiohttpclient.InferenceServerClient, sid: int | str, length: int) -> None:
    """One sequence's requests, each answer checked against this sequence's running sum alone."""
    total = row(0)
    for i in range(length):
        x = row(hash(sid) % 97 + i)
        total += x
        result = await client.infer(
            "acc", [http_input(x)], sequence_id=sid, sequence_start=i == 0, sequence_end=i == length - 1
        )
        np.testing.assert_array_equal(result.as_numpy("y"), total)


async def test_concurrent_http_sequences_each_see_their_own_running_sum(http_url: str, app: Any) -> None:
    client = aiohttpclient.InferenceServerClient(http_url)
    try:
        async with anyio.create_task_group() as tg:
            for sid in [*range(1, 7), "camera-a", "camera-b"]:  # four times as many as requests
                tg.start_soon(http_sequence, client, sid, 6)
    finally:
        await client.close()
    assert len(app.state.services["acc"].sequences) == 0  # every sequence ended with sequence_end


async def test_grpc_sequences_each_see_their_own_running_sum(app: Any) -> None:
    async with grpc_serving(app) as address:
        client = aiogrpcclient.InferenceServerClient(address)
        try:

            async def sequence(sid: int) -> None:
                total = row(0)
                for i in range(5):
                    total += row(sid * 10 + i)
                    result = await client.infer(
                        "acc",
                        [grpc_input(row(sid * 10 + i))],
                        sequence_id=sid,
                        sequence_start=i == 0,
                        sequence_end=i == 4,
                    )
                    np.testing.assert_array_equal(result.as_numpy("y"), total)

            async with anyio.create_task_group() as tg:
                for sid in range(1, 6):
                    tg.start_soon(sequence, sid)
            with pytest.raises(InferenceServerException, match="keeps state"):
                await client.infer("acc", [grpc_input(row(1))])
        finally:
            await client.close()


async def test_http_sequence_errors_answer_400_and_name_the_fix(http_url: str) -> None:
    client = aiohttpclient.InferenceServerClient(http_url)
    try:
        with pytest.raises(InferenceServerException, match="keeps state") as no_id:
            await client.infer("acc", [http_input(row(1))])
        with pytest.raises(InferenceServerException, match="not open") as not_started:
            await client.infer("acc", [http_input(row(1))], sequence_id=42)
        with pytest.raises(InferenceServerException, match="keeps no state") as stateless:
            await client.infer("linear", [http_input(row(1))], sequence_id=7, sequence_start=True)
        assert {e.value.status() for e in (no_id, not_started, stateless)} == {"400"}
        await http_sequence(client, 9, 3)  # the server keeps working
    finally:
        await client.close()


async def test_a_restarted_sequence_starts_from_zero(http_url: str) -> None:
    client = aiohttpclient.InferenceServerClient(http_url)
    try:
        for _ in range(2):  # the second start of id 5 ends the first sequence (never ended)
            first = await client.infer("acc", [http_input(row(3))], sequence_id=5, sequence_start=True)
            np.testing.assert_array_equal(first.as_numpy("y"), row(3))
            second = await client.infer("acc", [http_input(row(1))], sequence_id=5)
            np.testing.assert_array_equal(second.as_numpy("y"), row(4))
        # both requests are free again: two other sequences run side by side
        async with anyio.create_task_group() as tg:
            tg.start_soon(http_sequence, client, 11, 2)
            tg.start_soon(http_sequence, client, 12, 2)
    finally:
        await client.close()


async def test_idle_sequences_are_ended_and_free_their_requests() -> None:
    model = await aioinfer.load(models.accumulator(), device="CPU", config=models.EXACT, num_requests=1)
    async with model:
        sequences = Sequences(idle_timeout=0.0)
        async with sequences.session(model, SequenceParams(1, start=True), None) as session:
            await session.infer(row(1))
        assert len(sequences) == 1  # not ended: no sequence_end
        await anyio.sleep(0.01)  # idle longer than the timeout (the condition under test, not a sync)
        sequences.expire()
        assert len(sequences) == 0
        with anyio.fail_after(10):  # its one request is free again
            async with model.session() as other:
                np.testing.assert_array_equal((await other.infer(row(2)))[0], row(2))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sequence_id": 0}, "non-zero"),
        ({"sequence_id": ""}, "non-empty"),
        ({"sequence_id": True}, "non-zero integer"),
        ({"sequence_id": 1.5}, "non-zero integer"),
        ({"sequence_id": 3, "sequence_start": "yes"}, "boolean"),
        ({"sequence_end": True}, "without sequence_id"),
    ],
)
def test_bad_sequence_parameters_are_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(aioinfer.DecodeError, match=message):
        sequence_params(params)


def test_sequence_parameters() -> None:
    assert sequence_params({}) is None
    assert sequence_params({"sequence_id": "a", "sequence_end": True}) == SequenceParams("a", False, True)
