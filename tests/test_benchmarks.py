"""Smoke tests of the benchmark scripts the README quotes: each script run as the README runs it
(``python benchmarks/<name>.py ...`` from the repository's root, in a process of its own), with the
smallest workload its own arguments allow, must exit 0 and print the lines that carry its figures,
each figure a positive finite number (never compared with a time: these are not measurements)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[1]
NUMBER = r"(-?\d[\d,]*(?:\.\d+)?)"
# bench_serve's ports: N + a variant's index (11 variants) and that + 1000 for gRPC; below the
# ephemeral range, away from its default (18765) and from each other
SERVERS_PORT = 27650
CLIENTS_PORT = 27700


def run_bench(script: str, *args: str | Path, timeout: float = 120) -> str:
    """``python benchmarks/<script> args`` from the root: its stdout, once it has exited 0. On a
    timeout its whole process group (the servers it started too) is killed and the test fails."""
    command = [sys.executable, str(Path("benchmarks") / script), *map(str, args)]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(command[1:])} ran over {timeout} s\n{out}\n{err[-3000:]}")
    assert proc.returncode == 0, f"{' '.join(command[1:])} exited {proc.returncode}\n{out}\n{err[-3000:]}"
    return out


def figures(out: str, pattern: str) -> list[float]:
    """The numbers ``pattern``'s groups capture on the first line of ``out`` it matches, each
    checked positive and finite (commas as thousands separators allowed)."""
    match = re.search(pattern, out, re.MULTILINE)
    assert match, f"no line matching {pattern!r} in:\n{out}"
    values = [float(group.replace(",", "")) for group in match.groups()]
    assert all(math.isfinite(v) and v > 0 for v in values), (match.group(0), values)
    return values


def positive(value: Any) -> bool:
    """Whether a JSON figure is a positive finite number."""
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_bench_core(tmp_path: Path) -> None:
    out = run_bench(
        "bench_core.py",
        *("--models", "cls", "--rounds", "1", "--seconds", "0.2", "--idle-calls", "100"),
        *("--json", tmp_path / "core.json"),
    )
    figures(out, rf"^PP-OCR cls 48x192 +{NUMBER} +{NUMBER}/s +{NUMBER}/s +{NUMBER}/s +{NUMBER}/s +{NUMBER} ")
    for loop in ("asyncio", "uvloop", "trio"):
        figures(out, rf"^PP-OCR cls 48x192 +{loop} +{NUMBER}/s +{NUMBER}/s +{NUMBER} ")
        figures(out, rf"^{loop} +{NUMBER} us +{NUMBER} us +{NUMBER} +{NUMBER} us +{NUMBER} us$")
    report = json.loads((tmp_path / "core.json").read_text())
    assert set(report["idle"]) == {"asyncio", "uvloop", "trio"}
    for idle in report["idle"].values():
        assert all(
            positive(idle[k]) for k in ("aioinfer_us", "bare_us", "bare_inputs_us", "infer_us", "ratio")
        )
    [model] = report["models"]
    assert model["model"] == "PP-OCR cls 48x192" and model["shape"] == [1, 3, 48, 192]
    assert set(model["ips"]) == {"sync", "queue", "to_thread", "aioinfer"}
    assert all(positive(v) for v in model["ips"].values())
    assert set(model["loops"]) == {"asyncio", "uvloop", "trio"}
    assert all(positive(loop["ratio_over_queue"]) for loop in model["loops"].values())


def test_bench_inputs() -> None:
    out = run_bench("bench_inputs.py")  # no arguments: one pass over three sizes, a second or two
    for size in ("1x4", "1x3x48x192", "1x3x640x640"):
        figures(out, rf"^ *{size} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$")


def test_bench_outputs() -> None:
    out = run_bench("bench_outputs.py")  # no arguments: a few seconds
    for kib in (4, 64, 1024, 16384, 65536):
        figures(out, rf"^ *{kib} KiB +{NUMBER} +{NUMBER} +{NUMBER}$")


def test_bench_grpc_echo() -> None:
    out = run_bench("bench_grpc_echo.py")  # no arguments: its own server on port 50777, 2 x 4000 calls
    assert len(re.findall(r"^grpc echo: .* req/s at 64 clients$", out, re.MULTILINE)) == 2, out
    figures(out, rf"^grpc echo: {NUMBER} req/s at 64 clients$")


@pytest.mark.parametrize(("model", "preprocess"), [("rec", "python"), ("det", "graph")])
def test_bench_frames(model: str, preprocess: str) -> None:
    out = run_bench(
        "bench_frames.py",
        *(
            "--model",
            model,
            "--preprocess",
            preprocess,
            "--frames",
            "8",
            "--repeats",
            "1",
            "--size",
            "160x120",
        ),
    )
    assert f"video: 8 frames 160x120 MJPG; model: PP-OCR {model}" in out, out
    figures(out, rf"^sequential \(read, prepare, infer sync; hint \w+\): +{NUMBER} fps")
    figures(out, rf"^sequential on aioinfer's compiled model \(THROUGHPUT\): +{NUMBER} fps")
    figures(out, rf"^aioinfer amap \({NUMBER} requests, max_in_flight={NUMBER}\): +{NUMBER} fps")
    figures(out, rf"^ratio vs \w+ loop: {NUMBER}x +vs same compiled model: {NUMBER}x +loop lag p99: ")


def test_bench_monitor() -> None:
    out = run_bench(
        "bench_monitor.py", *("--rounds", "1", "--seconds", "0.2", "--idle", "0.2", "--concurrency", "8")
    )
    for backend in ("asyncio", "uvloop", "trio"):
        figures(out, rf"^{backend} +.*%.*% +{NUMBER} +{NUMBER} +{NUMBER} \(.*\) +loop lag: p50 ")


def test_bench_monitor_serve() -> None:
    # its SECONDS of load count from the server's start, before its model is ready: 3, not 1
    out = run_bench("bench_monitor.py", "--serve", "3", "--clients", "2")
    figures(out, rf"^{NUMBER} requests/s from 2 clients for 3 s; /v1/info loop: \{{'samples': {NUMBER}, ")
    assert re.search(r"^the server at exit: loop lag: p50 .* over \d+ beats", out, re.MULTILINE), out


def test_bench_ocr(tmp_path: Path) -> None:
    out = run_bench(
        "bench_ocr.py",
        *(
            "--pages",
            "2",
            "--rounds",
            "1",
            "--chunk",
            "2",
            "--norm-runs",
            "1",
            "--json",
            tmp_path / "ocr.json",
        ),
    )
    for name in ("aioinfer", "rapidocr", "rapidocr_2threads"):
        figures(
            out, rf"^\| {name} \| .* \| {NUMBER}% \(\d+/\d+\) \| \d+ \| {NUMBER} \| {NUMBER} \| {NUMBER} \|"
        )
    report = json.loads((tmp_path / "ocr.json").read_text())
    assert report["pages"] == 2 and report["same_detector_input"] == "2/2"
    for name in ("aioinfer", "rapidocr", "rapidocr_2threads"):
        result = report[name]
        assert 0 < result["line_accuracy"] <= 1, result
        assert positive(result["images_per_s"]) and positive(result["cpu_ms_per_image"]), result
    assert positive(report["speedup_vs_rapidocr"]) and positive(report["speedup_vs_rapidocr_2threads"])
    assert report["aioinfer"]["stage_cpu_ms"] and "det_normalization" in report


def test_bench_precision(tmp_path: Path) -> None:
    out = run_bench(
        "bench_precision.py", "--pages", "1", "--rounds", "1", "--json", tmp_path / "precision.json"
    )
    figures(out, rf"^OCR line accuracy +{NUMBER}% +{NUMBER}% +of 5 lines$")
    figures(out, rf"^images/s \(median\) +{NUMBER} +{NUMBER} +bf16/f32 {NUMBER}x$")
    figures(out, rf"^detector boxes: {NUMBER} of {NUMBER} f32 boxes matched by a bf16 box at IoU >= 0.5")
    report = json.loads((tmp_path / "precision.json").read_text())
    assert report["pages"] == 1 and report["lines"] == 5
    assert set(report["precision_used"]) == {"f32", "bf16"}
    assert all(0 < report["line_accuracy"][p] <= 1 for p in ("f32", "bf16")), report["line_accuracy"]
    assert all(positive(report["images_per_s"][p]) for p in ("f32", "bf16"))
    assert positive(report["speedup_bf16"]) and positive(report["boxes_f32"])


SERVERS = ("naive", "executor", "aioinfer", "batched", "oip-json", "oip-binary", "oip-grpc")
ECHOES = ("echo", "echo-grpc")  # no inference: what each transport alone costs


def test_bench_serve_servers(tmp_path: Path) -> None:
    out = run_bench(
        "bench_serve.py",
        *("--variants", "echo-grpc", *SERVERS, "--clients", "2", "--requests", "20", "--rounds", "1"),
        *("--port", str(SERVERS_PORT), "--json", tmp_path / "serve.json"),
        *("--hint", "LATENCY", "--num-requests", "3"),
    )
    # the servers' own account of how they run the model: the options reached them
    assert "aioinfer's servers (their /v1/info): LATENCY hint, 3 infer requests\n" in out
    figures(out, rf"^ceiling \(AsyncInferQueue, batch-1 jobs, no HTTP\): {NUMBER} inferences/s$")
    figures(out, rf"^combined bound at 2 clients, 1 / \(1/ceiling \+ 1/echo\): {NUMBER} requests/s$")
    figures(out, rf"^gRPC's own, 1 / \(1/ceiling \+ 1/echo-grpc\): {NUMBER} requests/s$")
    for variant in (*ECHOES, *SERVERS):
        figures(out, rf"^{variant} +{NUMBER} +{NUMBER} +{NUMBER}$")
    for variant in SERVERS:
        ratios = rf"{NUMBER}x naive, {NUMBER}x ceiling, {NUMBER}x bound, "
        ratios += rf"{NUMBER}x gRPC's own bound, " if variant == "oip-grpc" else ""
        figures(out, rf"^{variant} at 2 clients: {ratios}errors 0$")
    figures(out, rf"^dynamic batching at 2 clients: {NUMBER}x the requests/s without it$")
    [run] = json.loads((tmp_path / "serve.json").read_text())["rounds"]
    assert set(run) == {*ECHOES, *SERVERS, "ceiling", "served"} and positive(run["ceiling"])
    assert run["served"] == "LATENCY hint, 3 infer requests"
    for variant in (*ECHOES, *SERVERS):
        assert set(run[variant]) == {"2"}
        result = run[variant]["2"]
        assert result["errors"] == 0, (variant, result)
        assert all(positive(result[k]) for k in ("rps", "p50_ms", "p99_ms")), (variant, result)


CLIENTS = ("client-triton", "client-grpc", "client-triton-http", "client-http")


def test_bench_serve_clients(tmp_path: Path) -> None:
    out = run_bench(
        "bench_serve.py",
        *("--variants", *CLIENTS, "--clients", "2", "--requests", "20", "--rounds", "1"),
        *("--port", str(CLIENTS_PORT), "--json", tmp_path / "clients.json"),
    )
    assert "one OIP server, 2 concurrent callers of one client" in out, out
    for variant in CLIENTS:
        figures(out, rf"^{variant} +{NUMBER} +{NUMBER} +{NUMBER} +0 +{NUMBER}$")
    assert "combined bound" not in out  # client variants only: no server table
    clients = json.loads((tmp_path / "clients.json").read_text())["clients"]
    assert list(clients) == list(CLIENTS)
    for variant, result in clients.items():
        assert result["errors"] == 0, (variant, result)
        assert all(positive(result[k]) for k in ("rps", "p50_ms", "p99_ms")), (variant, result)
