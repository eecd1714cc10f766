"""A thin client: the ocr task run here against its models served elsewhere. The models are written
by the real ``aioinfer export ocr``, served beside the raw PP-OCR ONNX files by the real
``aioinfer serve`` (a subprocess, HTTP and gRPC on free loopback ports, exact f32), and loaded by
``aioinfer.tasks.load`` from their URLs; what it reads is checked against the same task run locally."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import models
import numpy as np
import openvino as ov
import pytest

import aioinfer
from aioinfer import tasks
from aioinfer._cli import main
from aioinfer.tasks import TextResult, ocr_characters
from aioinfer.tasks._ocr_models import remote_alphabet
from aioinfer.tasks._ocr_samples import sample_page

pytestmark = pytest.mark.timeout(180)

ROLES = ("det", "rec", "cls")
PAGES = (0, 4)  # small generated pages: 480x320 and 640x384 pixels
PROTOCOLS = ("http", "grpc")


class Server:
    """``aioinfer serve *args`` as a subprocess (CPU, exact f32, HTTP and gRPC on free ports) until
    closed; its log read all along on a thread (a full pipe would block the server)."""

    def __init__(self, *args: str | Path, models: int) -> None:
        command = [sys.executable, "-m", "aioinfer", "serve", *map(str, args), "--device", "CPU"]
        command += ["--port", "0", "--grpc-port", "0", "--config", "INFERENCE_PRECISION_HINT=f32"]
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self._ended = False
        self._grew = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait(lambda log: log.count("ready on CPU") == models and "Uvicorn running on" in log)
        self.http = re.search(r"Uvicorn running on (http://\S+)", "".join(self.log)).group(1)
        self.grpc = re.search(r"GRPCInferenceService\) running on (\S+)", "".join(self.log)).group(1)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._grew:
                self.log.append(line)
                self._grew.notify_all()
        with self._grew:
            self._ended = True
            self._grew.notify_all()

    def wait(self, done: Callable[[str], bool]) -> None:
        """Until ``done(log)``; fails if the server exits first."""
        with self._grew:
            self._grew.wait_for(lambda: self._ended or done("".join(self.log)), timeout=150)
            assert done("".join(self.log)), f"the server did not get there:\n{''.join(self.log)}"

    def url(self, protocol: str, name: str) -> str:
        return f"grpc://{self.grpc}/{name}" if protocol == "grpc" else f"{self.http}/v2/models/{name}"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@dataclass(frozen=True)
class Local:
    """What the task run here reads on :data:`PAGES`, and its recognizer's alphabet."""

    pages: list[np.ndarray]
    results: list[TextResult]
    characters: tuple[str, ...]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled models as ``aioinfer export ocr`` writes them."""
    folder = tmp_path_factory.mktemp("ocr")
    done = subprocess.run(
        [sys.executable, "-m", "aioinfer", "export", "ocr", str(folder)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["det:", str(folder / "det.xml"), "rec:", str(folder / "rec.xml"),
                                   "cls:", str(folder / "cls.xml")]  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def server(exported: Path) -> Iterator[Server]:
    """The exported folder (det, rec, cls) and the raw PP-OCR files (raw_det, raw_rec, raw_cls)."""
    raw = [f"raw_{role}={aioinfer.bundled_model(role)}" for role in ROLES]
    served = Server(exported, *raw, models=6)
    try:
        yield served
    finally:
        served.close()


@pytest.fixture(scope="module")
def local() -> Local:
    async def read() -> Local:
        pages = [sample_page(i).image for i in PAGES]
        async with tasks.load(None, task="ocr", device="CPU", config=models.EXACT) as ocr:
            return Local(pages, [await ocr.predict(page) for page in pages], ocr.characters)

    return asyncio.run(read())


async def assert_reads_as_local(thin: tasks.OCRTask, local: Local) -> None:
    for page, here in zip(local.pages, local.results, strict=True):
        there = await thin.predict(page)
        assert here.lines and [ln.text for ln in there.lines] == [ln.text for ln in here.lines]
        for a, b in zip(here.lines, there.lines, strict=True):
            assert b.score == pytest.approx(a.score, abs=1e-5)
            np.testing.assert_allclose(b.box, a.box, atol=1e-3)


def test_export_writes_the_models_as_the_task_runs_them(exported: Path, local: Local) -> None:
    core = ov.Core()
    for role in ROLES:
        model = core.read_model(exported / f"{role}.xml")
        (image,) = model.inputs
        assert image.get_element_type() == ov.Type.u8 and image.get_partial_shape()[3] == 3  # BGR NHWC
    rec = core.read_model(exported / "rec.xml")
    assert {o.get_any_name() for o in rec.outputs} == {"ids", "scores"}
    assert rec.get_rt_info(["framework", "character"]).astype(str)  # the alphabet travels with it
    assert ocr_characters(exported / "rec.xml") == local.characters == ocr_characters()
    assert rec.get_parameters()[0].get_output_element_type(0) == ov.Type.u8
    weights = [op for op in rec.get_ordered_ops() if op.get_type_name() == "Constant"]
    assert not any(op.get_output_element_type(0) == ov.Type.f16 for op in weights)  # full precision


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_thin_client_on_the_exported_models_reads_as_the_local_task(
    server: Server, local: Local, protocol: str
) -> None:
    urls = {role: server.url(protocol, role) for role in ROLES}
    async with tasks.load(urls, task="ocr", characters=local.characters) as thin:
        assert {role: m.config["served"] for role, m in thin.info.models.items()} == dict.fromkeys(
            ROLES, "prepared"
        )
        assert thin.info.models["rec"].device == urls["rec"]
        await assert_reads_as_local(thin, local)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_thin_client_on_raw_models_normalizes_and_takes_the_best_class_itself(
    server: Server, local: Local, protocol: str
) -> None:
    """The plain PP-OCR files served as they are (float NCHW in, per-step probabilities out): the
    alphabet is the bundled one, found by the recognizer's class count."""
    urls = {role: server.url(protocol, f"raw_{role}") for role in ROLES}
    async with tasks.load(urls, task="ocr") as thin:
        assert {role: m.config["served"] for role, m in thin.info.models.items()} == dict.fromkeys(
            ROLES, "raw"
        )
        assert thin.characters == local.characters
        await assert_reads_as_local(thin, local)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_thin_client_over_http_runs_on_trio(
    server: Server, local: Local, anyio_backend: object
) -> None:
    raw = {role: server.url("http", f"raw_{role}") for role in ROLES}
    async with tasks.load(raw, task="ocr") as thin:  # normalized and decoded on trio's worker threads
        await assert_reads_as_local(thin, local)
    with pytest.raises(aioinfer.EventLoopError, match="asyncio only"):  # as it is, not in a group
        await tasks.load({**raw, "cls": server.url("grpc", "cls")}, task="ocr")


async def test_roles_mix_local_files_urls_and_models_loaded_already(
    server: Server, exported: Path, local: Local
) -> None:
    """A local exported detector (compiled here with the load options, of which a URL's model takes
    ``num_requests`` only), the raw recognizer from its URL over HTTP and the prepared classifier
    loaded already over gRPC, which the task owns: closed with it, or at once when it cannot be made."""
    sources = {"det": exported / "det.xml", "rec": server.url("http", "raw_rec")}
    given = await aioinfer.load(server.url("grpc", "cls"), num_requests=3)
    with pytest.raises(aioinfer.ModelLoadError, match="'det' model"):
        await tasks.load({**sources, "det": server.url("http", "raw_rec"), "cls": given}, task="ocr")
    assert given.closed
    given = await aioinfer.load(server.url("grpc", "cls"), num_requests=3)
    options = {"device": "CPU", "config": models.EXACT, "num_requests": 2}
    async with tasks.load({**sources, "cls": given}, task="ocr", **options) as thin:
        info = thin.info.models
        assert info["det"].device == "CPU" and "served" not in info["det"].config
        assert (info["det"].num_requests, info["rec"].num_requests, info["cls"].num_requests) == (2, 2, 3)
        assert (info["rec"].config["served"], info["cls"].config["served"]) == ("raw", "prepared")
        await assert_reads_as_local(thin, local)
    assert given.closed


@pytest.mark.parametrize(
    ("role", "served", "expected"),
    [
        ("det", "rec", "'det' model at .*/rec has inputs 'x' u8.*outputs .*'ids'.*expected a text detector"),
        ("rec", "raw_det", "'rec' model at .*/raw_det has inputs 'x' f32.*expected a CTC recognizer"),
        ("cls", "raw_rec", "'cls' model at .*/raw_rec has .*expected a line orientation classifier"),
    ],
)
async def test_a_wrong_model_for_a_role_is_refused_naming_it(
    server: Server, local: Local, role: str, served: str, expected: str
) -> None:
    urls = {r: server.url("http", f"raw_{r}") for r in ROLES} | {role: server.url("http", served)}
    with pytest.raises(aioinfer.ModelLoadError, match=expected):
        await tasks.load(urls, task="ocr", characters=local.characters)


async def test_a_served_recognizer_whose_alphabet_cannot_be_told_needs_characters(
    server: Server, local: Local
) -> None:
    urls = {role: server.url("http", role) for role in ROLES}
    with pytest.raises(aioinfer.ModelLoadError, match=r"answers class ids.*pass characters="):
        await tasks.load(urls, task="ocr")  # prepared: no class count to check an alphabet against
    raw = {role: server.url("http", f"raw_{role}") for role in ROLES}
    with pytest.raises(aioinfer.ModelLoadError, match="scores 18710 classes but characters= has 3"):
        await tasks.load(raw, task="ocr", characters=["", "a", "b"])
    async with tasks.load(urls, task="ocr", characters=local.characters) as thin:  # the server still serves
        assert (await thin.predict(local.pages[0])).texts == local.results[0].texts


def test_a_class_count_unlike_the_bundled_alphabet_needs_characters() -> None:
    scores = aioinfer.TensorInfo("probs", ("probs",), (-1, -1, 97), "f32", np.dtype(np.float32))
    with pytest.raises(aioinfer.ModelLoadError, match="scores 97 classes, not the 18710 of the bundled"):
        remote_alphabet("at grpc://h:1/rec", scores, "raw", None)
    dynamic = aioinfer.TensorInfo("probs", ("probs",), (-1, -1, -1), "f32", np.dtype(np.float32))
    with pytest.raises(aioinfer.ModelLoadError, match=r"dynamic class count.*pass characters="):
        remote_alphabet("at grpc://h:1/rec", dynamic, "raw", None)
    assert remote_alphabet("at grpc://h:1/rec", scores, "raw", ["", *"x" * 96]) == ("", *"x" * 96)


def test_export_takes_given_models_raw_or_prepared_and_fails_in_one_line(
    tmp_path: Path, exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    again = tmp_path / "again"
    given = [f"--{role}={exported / role}.xml" for role in ("det", "rec")]  # cls: the bundled raw one
    assert main(["export", "ocr", str(again), *given]) == 0
    for role in ("det", "rec"):  # a prepared model is written as it is, not prepared twice
        assert (again / f"{role}.xml").read_bytes() == (exported / f"{role}.xml").read_bytes(), role
    assert ov.Core().read_model(again / "cls.xml").inputs[0].get_element_type() == ov.Type.u8
    assert main(["export", "ocr", str(tmp_path / "bad"), "--det", str(exported / "rec.xml")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert re.match(r"aioinfer export: error: the ocr task's 'det' model '.*rec.xml' has .*expected", line)


def test_export_takes_the_recognizers_alphabet_from_a_file_and_checks_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = list(ocr_characters()[1:-1])  # as PP-OCR's dictionary files list it: no blank, no space
    listed[0], listed[1] = listed[1], listed[0]  # an alphabet unlike the model's own metadata
    alphabet = tmp_path / "keys.txt"
    alphabet.write_text("\r\n".join(listed) + "\r\n", encoding="utf-8")
    assert main(["export", "ocr", str(tmp_path / "out"), "--characters", str(alphabet)]) == 0
    assert ocr_characters(tmp_path / "out" / "rec.xml") == ("", *listed, " ")
    alphabet.write_text("a\nb\n", encoding="utf-8")  # far fewer characters than the model's classes
    assert main(["export", "ocr", str(tmp_path / "short"), "--characters", str(alphabet)]) == 1
    assert main(["export", "ocr", str(tmp_path / "none"), "--characters", str(tmp_path / "missing.txt")]) == 1
    short, missing = capsys.readouterr().err.splitlines()
    assert re.match(
        r"aioinfer export: error: the recognizer scores 18710 classes but its alphabet .* has 4", short
    )
    assert re.match(r"aioinfer export: error: cannot read the --characters file .*missing.txt", missing)
