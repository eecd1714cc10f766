"""What pip installed: aioinfer's version, its optional extras, and the OpenCV packages behind ``cv2``."""

from __future__ import annotations

import importlib.util
import re
import warnings
from importlib import metadata
from pathlib import Path

from ._errors import MissingExtraError

# extra: (what needs it, the modules of it that aioinfer or its examples import)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ocr": ("the bundled PP-OCR models", ("rapidocr",)),
    "serve": (
        "serving over HTTP (aioinfer serve, aioinfer.asgi)",
        ("starlette", "uvicorn", "prometheus_client", "python_multipart", "grpc"),
    ),
    "remote": ("remote models (aioinfer.load of an http:// or grpc:// URL)", ("aiohttp", "httpx", "grpc")),
    "examples": ("the web examples", ("fastapi", "aiohttp")),
}

# the packages that each install their own build of the one ``cv2`` module
OPENCV = (
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
)


class OpenCVFlavourWarning(UserWarning):
    """More than one OpenCV package is installed: they overwrite each other's ``cv2``."""

    __module__ = "aioinfer"


def require(extra: str) -> None:
    """Return if every module of the optional ``extra`` can be imported (nothing is imported);
    else raise :class:`MissingExtraError` naming the first one missing and
    ``pip install "aioinfer[extra]"``."""
    feature, modules = EXTRAS[extra]
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(extra, module, feature)


def missing_extra(exc: ModuleNotFoundError) -> MissingExtraError | None:
    """``exc`` as the :class:`MissingExtraError` of the extra whose module it could not import;
    ``None`` if that module belongs to no extra."""
    if isinstance(exc, MissingExtraError):
        return exc
    top = (exc.name or "").partition(".")[0]
    for extra, (feature, modules) in EXTRAS.items():
        if top in modules:
            return MissingExtraError(extra, top, feature)
    return None


def version() -> str:
    """aioinfer's version, defined once in ``pyproject.toml``: from the installed distribution's
    metadata, or read from the ``pyproject.toml`` beside the package in a source tree that is not
    installed (``"0+unknown"`` if neither is there)."""
    try:
        return metadata.version("aioinfer")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        text = pyproject.read_text(encoding="utf-8") if pyproject.is_file() else ""
        found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
        return found.group(1) if found else "0+unknown"


def opencv_packages() -> dict[str, str]:
    """The OpenCV packages installed: name to version."""
    found = {}
    for name in OPENCV:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def warn_opencv_flavours() -> None:
    """Warn (:class:`OpenCVFlavourWarning`) when more than one OpenCV package is installed, naming
    them and how to keep one."""
    found = opencv_packages()
    if len(found) < 2:
        return
    listed = ", ".join(f"{name} {v}" for name, v in found.items())
    warnings.warn(
        f"{len(found)} OpenCV packages are installed ({listed}): each writes the same cv2 module, so "
        "the one installed last wins and uninstalling any of them breaks `import cv2`. aioinfer works "
        f"with any one of them; keep one: pip uninstall -y {' '.join(found)} && pip install "
        "opencv-python-headless (aioinfer's requirement) or the one you need (see the README, OpenCV)",
        OpenCVFlavourWarning,
        stacklevel=2,
    )
