"""``examples/deploy/``: what can be checked without a cluster. Every manifest parses and its parts
agree (selectors, ports, probes, volumes, the HPA's target, the KServe runtime); the container's
command line parses with ``aioinfer``'s own parser, and is run here, on 127.0.0.1 with a free port
and an exact model in place of the mounted one, answering the manifest's probes and exporting the
metric the HPA scales on; the Dockerfile runs as the manifests' non-root user and installs
``aioinfer[serve]``.

The Open Inference Protocol's ``/v2`` routes and ``--grpc-port`` are checked once ``aioinfer serve``
declares them (its ``--help``); before that, ``--grpc-port`` is left out of the command run here and
the probes are checked on the ``/health/*`` routes they replace."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import httpx
import models
import numpy as np
import openvino as ov
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from servers import Serving

from aioinfer._cli import build_parser

DEPLOY = Path(__file__).parents[1] / "examples" / "deploy"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "ServingRuntime", "InferenceService"}


def documents() -> dict[str, dict[str, Any]]:
    """Every manifest's documents, by kind (each kind once)."""
    docs: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in docs, f"{path.name}: a second {doc['kind']}"
            docs[doc["kind"]] = doc
    return docs


DOCS = documents()
POD = DOCS["Deployment"]["spec"]["template"]
CONTAINER = POD["spec"]["containers"][0]
RUNTIME = DOCS["ServingRuntime"]["spec"]["containers"][0]


def serve_parser() -> argparse.ArgumentParser:
    parsed = build_parser().parse_args(["serve", "model.xml"])
    return parsed.command_parser  # type: ignore[no-any-return]


SERVE = serve_parser()
HAS_GRPC = "--grpc-port" in SERVE._option_string_actions
HAS_V2 = "/v2/health/ready" in SERVE.format_help()


def known(args: list[str]) -> list[str]:
    """``args`` without ``--grpc-port`` while ``aioinfer serve`` has no such option."""
    return args if HAS_GRPC else [a for a in args if not a.startswith("--grpc-port")]


def parse(command: list[str]) -> argparse.Namespace:
    """A container's ``command + args`` as ``aioinfer`` parses them (a usage error fails the test)."""
    assert command[0] == "aioinfer" and command[1] == "serve", command
    try:
        return build_parser().parse_args(known(command[1:]))
    except SystemExit as exc:
        raise AssertionError(f"aioinfer cannot parse {shlex.join(command)}") from exc


def container_command(container: dict[str, Any]) -> list[str]:
    return [*container["command"], *container["args"]]


def dockerfile_command() -> list[str]:
    """The final image's ENTRYPOINT + CMD (exec form)."""
    text = (DEPLOY / "Dockerfile").read_text()
    entry = yaml.safe_load(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    cmd = yaml.safe_load(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    return [*entry, *cmd]


def probe_paths(container: dict[str, Any]) -> dict[str, str]:
    return {kind: container[kind]["httpGet"]["path"] for kind in ("livenessProbe", "readinessProbe")}


def test_every_manifest_parses_into_the_expected_kinds() -> None:
    assert {p.name for p in MANIFESTS} == {"deployment.yaml", "service.yaml", "hpa.yaml", "kserve.yaml"}
    assert set(DOCS) == KINDS
    assert all(doc["apiVersion"] and doc["metadata"]["name"] for doc in DOCS.values())


@pytest.mark.parametrize("container", [CONTAINER, RUNTIME], ids=["deployment", "kserve"])
def test_probes_are_the_open_inference_protocols_health_routes(container: dict[str, Any]) -> None:
    assert probe_paths(container) == {
        "livenessProbe": "/v2/health/live",
        "readinessProbe": "/v2/health/ready",
    }
    port = parse(container_command(container)).port
    probe_ports = {container[kind]["httpGet"]["port"] for kind in ("livenessProbe", "readinessProbe")}
    named = {p.get("name", p["containerPort"]): p["containerPort"] for p in container["ports"]}
    assert {named[p] for p in probe_ports} == {port}


def test_the_deployments_command_serves_its_mounted_model_on_its_ports() -> None:
    args = parse(container_command(CONTAINER))
    assert (args.host, args.port, args.device) == ("0.0.0.0", 8080, "CPU")
    ports = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    assert ports["http"] == args.port
    assert "--grpc-port=8081" in CONTAINER["args"] and ports["grpc"] == 8081
    if HAS_GRPC:
        assert args.grpc_port == ports["grpc"]
    mounts = {m["name"]: m for m in CONTAINER["volumeMounts"]}
    volumes = {v["name"]: v for v in POD["spec"]["volumes"]}
    model_mount = next(m for m in mounts.values() if args.model.startswith(m["mountPath"] + "/"))
    assert model_mount["readOnly"] is True
    assert volumes[model_mount["name"]]["persistentVolumeClaim"]["readOnly"] is True
    assert set(mounts) <= set(volumes)
    assert POD["spec"]["terminationGracePeriodSeconds"] > args.drain_timeout


def test_the_pods_run_as_the_dockerfiles_non_root_user_with_resources() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    final_stage = text.rsplit("\nFROM ", 1)[1]
    user = re.search(r"^USER (\d+)(?::(\d+))?$", final_stage, re.M)
    assert user and int(user.group(1)) != 0, "the final stage must switch to a numeric non-root USER"
    assert re.search(r'pip install [^\n]*"aioinfer\[serve\]"', final_stage)
    pod_security = POD["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] == int(user.group(1))
    assert RUNTIME["securityContext"]["runAsUser"] == int(user.group(1))
    for container in (CONTAINER, RUNTIME):
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"])
    dockerignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert dockerignore[dockerignore.index("*") :][:4] == ["*", "!pyproject.toml", "!README.md", "!aioinfer/"]


def test_the_images_default_command_is_the_deployments() -> None:
    image, deployment = parse(dockerfile_command()), parse(container_command(CONTAINER))
    assert (image.model, image.host, image.port) == (deployment.model, deployment.host, deployment.port)


def test_the_service_and_the_hpa_point_at_the_deployment() -> None:
    deployment, service, hpa = DOCS["Deployment"], DOCS["Service"], DOCS["HorizontalPodAutoscaler"]
    labels = POD["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {p["name"] for p in CONTAINER["ports"]}
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "aioinfer_queue_depth"


def test_the_inference_service_runs_on_the_aioinfer_runtime_with_protocol_v2() -> None:
    runtime, isvc = DOCS["ServingRuntime"], DOCS["InferenceService"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == "v2" and "v2" in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    # KServe puts the InferenceService's name for {{.Name}}: the model is served under it
    command = [a.replace("{{.Name}}", isvc["metadata"]["name"]) for a in container_command(RUNTIME)]
    args = parse(command)
    assert args.model == "linear=/mnt/models/model.xml" and (args.host, args.port) == ("0.0.0.0", 8080)


async def test_the_deployments_command_runs_answers_its_probes_and_exports_the_metric(tmp_path: Path) -> None:
    """The container's command line itself, with the loopback address, a free port and an exact model
    at the mounted path's place."""
    args = parse(container_command(CONTAINER))
    ov.save_model(models.linear([1, 4]), tmp_path / Path(args.model).name)
    local = {args.model: str(tmp_path / Path(args.model).name), "--host=0.0.0.0": "--host=127.0.0.1"}
    local |= {"--port=8080": "--port=0", "--grpc-port=8081": "--grpc-port=0"}
    command = [local.get(a, a) for a in known(CONTAINER["args"])]
    command += ["--config", "INFERENCE_PRECISION_HINT=f32"]
    async with Serving(command=[sys.executable, "-m", "aioinfer", *command]) as server:
        await server.wait_for_line("ready on CPU")
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            paths = probe_paths(CONTAINER)
            if not HAS_V2:  # the routes these replace, until aioinfer serve has /v2
                paths = {kind: path.removeprefix("/v2") for kind, path in paths.items()}
            for path in paths.values():
                assert (await client.get(path)).status_code == 200, path
            x = np.array([[1, -2, 0.5, 3]], np.float32)
            answer = await client.post("/v1/infer", json={"inputs": x.tolist()})
            assert answer.status_code == 200
            np.testing.assert_array_equal(np.array(answer.json()["outputs"]["y"], np.float32), 2 * x + 1)
            metrics = (await client.get("/metrics")).text
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    name = DOCS["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert families[name].type == "gauge" and families[name].samples
