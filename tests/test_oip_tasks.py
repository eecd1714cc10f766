"""A task on the Open Inference Protocol: encoded images in as a BYTES input (one per batch
element), each one's prediction JSON out as a BYTES output, over HTTP (binary and JSON with
``{"b64": ...}``) and gRPC, with tritonclient; images bounded by ``max_pixels`` as on /v1/predict."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import cv2
import models
import numpy as np
import pytest
import tritonclient.grpc.aio as aiogrpcclient
import tritonclient.http.aio as aiohttpclient
from servers import serving
from test_grpc import grpc_serving
from tritonclient.utils import InferenceServerException

from aioinfer import tasks
from aioinfer.asgi import create_app

pytestmark = pytest.mark.timeout(120)
LABELS = ["blue", "green", "red"]


def png(bgr: tuple[int, int, int], size: tuple[int, int] = (48, 64)) -> bytes:
    image = np.zeros((*size, 3), np.uint8)
    image[:] = bgr
    return cv2.imencode(".png", image)[1].tobytes()


IMAGES = {"green": png((1, 3, 2)), "red": png((5, 1, 9)), "blue": png((7, 2, 3))}


@pytest.fixture
async def app() -> AsyncIterator[object]:
    async with tasks.load(
        models.channel_means(), task="classification", labels=LABELS, config=models.EXACT
    ) as cls:
        yield create_app({"colors": cls}, max_pixels=100_000)


def top_labels(predictions: np.ndarray) -> list[str]:
    return [json.loads(p)["classes"][0]["label"] for p in predictions.ravel()]


async def test_http_binary_bytes_in_predictions_out_and_metadata(app):
    async with serving(app) as http:
        url = str(http.base_url).removeprefix("http://").rstrip("/")
        meta = (await http.get("/v2/models/colors")).json()
        assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
        assert meta["outputs"] == [{"name": "prediction", "datatype": "BYTES", "shape": [-1]}]
        assert meta["platform"] == "openvino/classification"
        async with aiohttpclient.InferenceServerClient(url) as client:
            blobs = np.array(list(IMAGES.values()), np.object_)
            image = aiohttpclient.InferInput("image", [3], "BYTES")
            image.set_data_from_numpy(blobs, binary_data=True)
            result = await client.infer("colors", [image])
            assert top_labels(result.as_numpy("prediction")) == list(IMAGES)
            big = aiohttpclient.InferInput("image", [1], "BYTES")
            big.set_data_from_numpy(np.array([png((1, 2, 3), (400, 400))], np.object_), binary_data=True)
            with pytest.raises(InferenceServerException) as caught:
                await client.infer("colors", [big])
        assert caught.value.status() == "413" and "at most 100000 pixels" in caught.value.message()
        as_json = {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [{"b64": base64.b64encode(IMAGES["red"]).decode()}],
                }
            ]
        }
        answer = (await http.post("/v2/models/colors/infer", json=as_json)).json()
        assert answer["outputs"][0]["datatype"] == "BYTES"
        assert [json.loads(p)["classes"][0]["label"] for p in answer["outputs"][0]["data"]] == ["red"]
        lying = {**as_json, "inputs": [{**as_json["inputs"][0], "parameters": {"binary_data_size": 9}}]}
        body = json.dumps(lying).encode()
        header = {"inference-header-content-length": str(len(body))}
        bad = await http.post(
            "/v2/models/colors/infer", content=body + b"\x00\x01\x00\x00abcde", headers=header
        )
        assert bad.status_code == 400 and "declares 256 bytes; 5 are left" in bad.json()["error"]


async def test_grpc_bytes_in_predictions_out(app):
    async with grpc_serving(app) as address, aiogrpcclient.InferenceServerClient(address) as client:
        image = aiogrpcclient.InferInput("image", [2, 1], "BYTES")
        image.set_data_from_numpy(np.array([[IMAGES["blue"]], [IMAGES["green"]]], np.object_))
        result = await client.infer("colors", [image])
        assert top_labels(result.as_numpy("prediction")) == ["blue", "green"]
        assert result.as_numpy("prediction").shape == (2, 1)
        junk = aiogrpcclient.InferInput("image", [1], "BYTES")
        junk.set_data_from_numpy(np.array([b"not an image"], np.object_))
        with pytest.raises(InferenceServerException) as caught:
            await client.infer("colors", [junk])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", caught.value.message()


async def test_many_images_are_predicted_concurrently_in_order_and_one_bad_image_fails_the_request(app):
    labels = [list(IMAGES)[i % 3] for i in range(24)]
    async with serving(app) as http:
        url = str(http.base_url).removeprefix("http://").rstrip("/")
        async with aiohttpclient.InferenceServerClient(url) as client:
            image = aiohttpclient.InferInput("image", [len(labels)], "BYTES")
            image.set_data_from_numpy(np.array([IMAGES[k] for k in labels], np.object_), binary_data=True)
            result = await client.infer("colors", [image])
            assert top_labels(result.as_numpy("prediction")) == labels
            blobs = [IMAGES[k] for k in labels]
            blobs[17] = b"not an image"
            image.set_data_from_numpy(np.array(blobs, np.object_), binary_data=True)
            with pytest.raises(InferenceServerException) as caught:
                await client.infer("colors", [image])
            assert caught.value.status() == "400" and "image 17" in caught.value.message()
            again = await client.infer("colors", [_one(IMAGES["red"])])
            assert top_labels(again.as_numpy("prediction")) == ["red"]
        stats = app.state.services["colors"].task.model.stats()
        assert stats.in_flight == 0 and stats.queued == 0  # the failed request's others were not left behind


def _one(blob: bytes) -> aiohttpclient.InferInput:
    tensor = aiohttpclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([blob], np.object_), binary_data=True)
    return tensor
