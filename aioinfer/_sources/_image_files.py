"""Where image files are found and read: the files of a folder or a glob pattern, natural-sorted,
and one file decoded within a pixel budget."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import AioInferError, SourceError
from .._images import read_image

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


def is_image_path(path: str) -> bool:
    """Whether ``path`` names one image file (an image suffix, and no glob pattern)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES and not glob.has_magic(path)


def read_image_file(path: str | os.PathLike[str], *, max_pixels: int) -> np.ndarray:
    """The image in file ``path`` (BGR), decoded only if its header declares at most ``max_pixels``
    pixels; raises SourceError naming the file if it cannot be read, is too large or is no image."""
    try:
        return read_image(path, max_pixels=max_pixels)
    except SourceError:
        raise
    except AioInferError as exc:  # too large, not an accepted format, corrupt
        raise SourceError(str(exc)) from exc


def load_item(item: Any, *, max_pixels: int) -> Any:
    """An item of a sequence source: a path (``str`` or ``os.PathLike``) is an image file, read;
    anything else is the frame itself."""
    return read_image_file(item, max_pixels=max_pixels) if isinstance(item, (str, os.PathLike)) else item


def image_paths(pattern: str) -> list[str]:
    """The files of a folder with an image suffix, except hidden ones (a name starting with ".", such
    as macOS' "._img1.png" metadata, is never a frame), or the paths a glob pattern matches."""
    if os.path.isdir(pattern):
        with os.scandir(pattern) as entries:
            paths = [entry.path for entry in entries if _is_image_file(entry)]
    else:
        paths = glob.glob(pattern)
    if not paths:
        raise SourceError(f"no images found in {pattern!r}")
    return sorted(paths, key=_natural_key)


def _natural_key(path: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _is_image_file(entry: os.DirEntry[str]) -> bool:
    name = entry.name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES and entry.is_file()
