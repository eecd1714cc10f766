"""What a user meets first: the version, the extras (a missing one says what to install), the OpenCV
packages, the names errors show and pickle under.

A missing extra cannot be caused in the one test venv, where every extra is installed: those tests
run Python in a subprocess with the extra's modules made unimportable (``sys.modules[name] = None``,
which makes ``import name`` raise ModuleNotFoundError and ``importlib.util.find_spec`` answer None, as
for a module that is not installed). A second OpenCV package is a fake distribution: a ``.dist-info``
folder with only its metadata, put on ``sys.path``."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import models
import pytest

import aioinfer
from aioinfer import _errors, _install

ROOT = Path(__file__).parents[1]
EXTRA_MODULES = [m for _, modules in _install.EXTRAS.values() for m in modules]


def python(
    code: str, *, blocked: Sequence[str] = (), args: Sequence[str] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter, in the repository's root, in which the modules
    ``blocked`` cannot be imported."""
    prelude = f"import sys\nfor name in {list(blocked)!r}:\n    sys.modules[name] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )


# -- the version ---------------------------------------------------------------------------------


def pyproject_version() -> str:
    return re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)


def test_version_is_the_one_pyproject_defines() -> None:
    assert aioinfer.__version__ == metadata.version("aioinfer") == pyproject_version()


def test_version_of_a_source_tree_that_is_not_installed_is_read_from_pyproject() -> None:
    # the editable install always has metadata: a source tree without it is simulated by making
    # importlib.metadata not find the aioinfer distribution
    done = python("""
        from importlib import metadata
        real = metadata.version
        def version(name):
            if name == "aioinfer":
                raise metadata.PackageNotFoundError(name)
            return real(name)
        metadata.version = version
        import aioinfer
        print(aioinfer.__version__)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == pyproject_version()


def test_cli_version_names_aioinfer_openvino_and_python() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aioinfer", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    expected = f"aioinfer {pyproject_version()} (OpenVINO {metadata.version('openvino')}, Python "
    assert done.stdout.startswith(expected), done.stdout


# -- extras ----------------------------------------------------------------------------------------


def test_import_aioinfer_and_the_bundled_models_import_no_extra() -> None:
    done = python("""
        import aioinfer, json
        aioinfer.bundled_model("det")  # a file of the rapidocr wheel: rapidocr is not imported
        print(json.dumps(sorted(sys.modules)))
    """)
    assert done.returncode == 0, done.stderr
    imported = {name.partition(".")[0] for name in json.loads(done.stdout)}
    # the extras' modules and rapidocr's dependencies: `pip install --no-deps rapidocr` is enough
    assert not imported & {*EXTRA_MODULES, "multipart", "PIL", "shapely", "omegaconf", "pyclipper"}


def test_core_loads_awaits_a_model_and_reads_frames_without_any_extra(tmp_path: Path) -> None:
    import openvino as ov

    ov.save_model(models.linear(), tmp_path / "linear.xml")
    done = python(
        """
        import asyncio, json
        import numpy as np
        import aioinfer

        async def main():
            async with aioinfer.load(sys.argv[1], device="CPU") as model:
                out = await model.infer(np.ones((1, 4), np.float32))
                frames = [np.full((2, 4), i, np.float32) for i in range(3)]
                async with aioinfer.open_source(frames) as source:
                    sums = [float(r.output[0].sum()) async for r in model.map(source)]
            return out[0].tolist(), sums

        print(json.dumps(asyncio.run(main())))
        """,
        blocked=EXTRA_MODULES,
        args=[str(tmp_path / "linear.xml")],
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[[3.0] * 4], [8.0, 24.0, 40.0]]  # 2x+1, summed over 2x4


@pytest.mark.parametrize(
    ("code", "blocked", "extra"),
    [
        ("import aioinfer.asgi", ["python_multipart"], "serve"),
        ("aioinfer.bundled_model('cls')", ["rapidocr"], "ocr"),
        ("asyncio.run(ocr_task())", ["rapidocr"], "ocr"),
        ("import examples.fastapi_app", ["fastapi"], "examples"),
        ("import examples.aiohttp_app", ["aiohttp"], "examples"),
    ],
)
def test_a_missing_extra_raises_an_import_error_naming_the_pip_command(
    code: str, blocked: list[str], extra: str
) -> None:
    done = python(
        f"""
        import asyncio
        import aioinfer

        async def ocr_task():
            async with aioinfer.tasks.load(None, task="ocr", device="CPU"):
                pass

        try:
            {code}
        except aioinfer.MissingExtraError as exc:
            assert isinstance(exc, ImportError) and exc.extra == {extra!r} and exc.name == {blocked[0]!r}
            print(exc)
        """,
        blocked=blocked,
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout
        == f'{blocked[0]} is not installed: pip install "aioinfer[{extra}]" for '
        + {
            "serve": "serving over HTTP (aioinfer serve, aioinfer.asgi)\n",
            "ocr": "the bundled PP-OCR models\n",
            "examples": "the web examples\n",
        }[extra]
    )


@pytest.mark.parametrize(
    ("argv", "blocked", "extra"),
    [
        (["serve", "model.xml"], ["starlette"], "serve"),
        (["run", "--task", "ocr", "page.png"], ["rapidocr"], "ocr"),
        (["bench"], ["rapidocr"], "ocr"),
        (["serve", "--task", "ocr"], ["rapidocr"], "ocr"),  # refused before the server starts
    ],
)
def test_a_command_whose_extra_is_missing_says_what_to_install_in_one_line(
    argv: list[str], blocked: list[str], extra: str
) -> None:
    done = python(f"from aioinfer._cli import main\nraise SystemExit(main({argv!r}))", blocked=blocked)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f'aioinfer {argv[0]}: error: {blocked[0]} is not installed: pip install "aioinfer[{extra}]" for '
        + _install.EXTRAS[extra][0]
    ]


# -- OpenCV packages ------------------------------------------------------------------------------


def fake_distribution(folder: Path, name: str, version: str) -> Path:
    """A ``.dist-info`` of ``name`` in ``folder`` with metadata only (no files): what
    importlib.metadata finds of an installed package."""
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return folder


def test_one_opencv_package_is_not_warned_about() -> None:
    assert len(_install.opencv_packages()) == 1, "this test venv should have one OpenCV package"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _install.warn_opencv_flavours()


def test_two_opencv_packages_are_warned_about_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(fake_distribution(tmp_path, "opencv-python", "4.10.0.84")))
    installed = _install.opencv_packages()
    assert installed["opencv-python"] == "4.10.0.84" and len(installed) == 2
    with pytest.warns(aioinfer.OpenCVFlavourWarning) as caught:
        _install.warn_opencv_flavours()
    message = str(caught[0].message)
    assert "opencv-python 4.10.0.84" in message and "breaks `import cv2`" in message
    assert f"pip uninstall -y {' '.join(installed)} && pip install opencv-python-headless" in message


def test_import_aioinfer_warns_once_when_two_opencv_packages_are_installed(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "opencv-contrib-python", "4.10.0.84")
    done = python(
        "import aioinfer, aioinfer.tasks, aioinfer._install",
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("OpenCVFlavourWarning: 2 OpenCV packages are installed") == 1, done.stderr


# -- errors ------------------------------------------------------------------------------------------

# constructor arguments of the errors whose __init__ takes other arguments than a message
SAMPLES = {
    aioinfer.ModelNotFoundError: ("model.xml",),
    aioinfer.WeightsNotFoundError: ("model.xml", "model.bin"),
    aioinfer.DeviceNotAvailableError: ("AUTO:GPU", "GPU", ["CPU"]),
    aioinfer.FrameError: ("cannot read a.png", 3),
    aioinfer.MissingExtraError: ("serve", "starlette", "serving"),
}
ERRORS = [getattr(_errors, name) for name in _errors.__all__]


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_is_named_and_exported_as_aioinfer_x(cls: type[Exception]) -> None:
    assert cls.__module__ == "aioinfer" and getattr(aioinfer, cls.__qualname__) is cls
    assert cls.__name__ in aioinfer.__all__


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_pickles_with_its_message_and_attributes(cls: type[Exception]) -> None:
    error = cls(*SAMPLES.get(cls, ("it failed",)))
    error.add_note("a note")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls and copy.args == error.args and str(copy) == str(error)
    assert vars(copy) == vars(error) and copy.__notes__ == ["a note"]
    assert getattr(copy, "name", None) == getattr(error, "name", None)  # ImportError's


def test_a_traceback_shows_aioinfer_x() -> None:
    done = python("import aioinfer\nraise aioinfer.QueueFull('4 calls already wait')")
    assert done.stderr.splitlines()[-1] == "aioinfer.QueueFull: 4 calls already wait"
