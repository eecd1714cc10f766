"""GET /metrics parses as Prometheus text and counts exactly the requests that were sent."""

from __future__ import annotations

import asyncio

import cv2
import models
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from servers import serving

from aioinfer.asgi import create_app


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_counters_match_the_requests_sent(linear_model):
    app = create_app(linear_model, max_batch_size=4, max_delay=0.005)
    async with serving(app) as client:
        good = [client.post("/v1/infer", json={"inputs": [[i, 0, 0, 0]]}) for i in range(20)]
        bad = [client.post("/v1/infer", json={"inputs": [[i, 0]]}) for i in range(3)]
        statuses = [r.status_code for r in await asyncio.gather(*good, *bad)]
        assert statuses == [200] * 20 + [422] * 3
        for _ in range(2):
            assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/no/such/route")).status_code == 404
        response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)

    def value(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    m = "linear"  # /v1 is about the (only) model, served under its own name; the rest about the server
    assert value("aioinfer_requests_total", model=m, route="/v1/infer", status="200") == 20
    assert value("aioinfer_requests_total", model=m, route="/v1/infer", status="422") == 3
    assert value("aioinfer_requests_total", model="", route="/health/live", status="200") == 2
    assert value("aioinfer_requests_total", model="", route="other", status="404") == 1
    assert value("aioinfer_request_duration_seconds_count", model=m, route="/v1/infer") == 23
    assert value("aioinfer_request_duration_seconds_sum", model=m, route="/v1/infer") > 0
    assert value("aioinfer_requests_in_flight", model="") == 1  # the scrape itself
    assert value("aioinfer_requests_in_flight", model=m) == 0
    assert value("aioinfer_queue_depth", model=m) == 0
    assert value("aioinfer_batch_size_sum", model=m) == 20  # every good row ran in exactly one batch
    assert 1 <= value("aioinfer_batch_size_count", model=m) <= 20
    assert value("aioinfer_batch_size_bucket", model=m, le="4.0") == value(
        "aioinfer_batch_size_count", model=m
    )


async def test_two_apps_keep_separate_registries(linear_model):
    first, second = create_app(linear_model), create_app(linear_model)
    async with serving(first) as client:
        assert (await client.post("/v1/infer", json={"inputs": [[1, 2, 3, 4]]})).status_code == 200
    async with serving(second) as client:
        got = samples((await client.get("/metrics")).text)
    assert (
        "aioinfer_requests_total",
        (("model", "linear"), ("route", "/v1/infer"), ("status", "200")),
    ) not in got


async def test_task_stages_are_histograms_counting_exactly_the_predictions_sent():
    image = cv2.imencode(".png", np.full((32, 32, 3), (10, 20, 30), np.uint8))[1].tobytes()
    png = {"content-type": "image/png"}
    loading = models.channel_task()
    async with loading as task:  # the caller's: it outlives the app
        app = create_app({"means": task})
        stages = ("pre_process", "forward", "post_process")

        def counts(text: str) -> dict[str, float]:
            got = samples(text)
            return {
                s: got.get(("aioinfer_stage_seconds_count", (("model", "means"), ("stage", s))), 0)
                for s in stages
            }

        async with serving(app) as client:
            for sent in (3, 5):
                before = counts((await client.get("/metrics")).text)
                answers = await asyncio.gather(
                    *[client.post("/v1/predict", content=image, headers=png) for _ in range(sent)]
                )
                assert [a.status_code for a in answers] == [200] * sent
                text = (await client.get("/metrics")).text
                assert {s: n - before[s] for s, n in counts(text).items()} == dict.fromkeys(stages, sent)
            got = samples(text)
            for stage in stages:
                labels = (("le", "+Inf"), ("model", "means"), ("stage", stage))
                assert got[("aioinfer_stage_seconds_bucket", labels)] == 8
                assert got[("aioinfer_stage_seconds_sum", (("model", "means"), ("stage", stage)))] > 0
            # the quantile gauges of the task's recent work are still there
            assert (
                "aioinfer_stage_latency_seconds",
                (("model", "means"), ("quantile", "0.5"), ("stage", "forward")),
            ) in got
        await task.predict(np.zeros((32, 32, 3), np.uint8))  # after the app stopped: not counted in it
        assert counts(app.state.service.metrics.render().decode()) == dict.fromkeys(stages, 8)
