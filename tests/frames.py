"""An image folder with the faults real ones have, written by OpenCV, and what the tests of sources
use to read one (tests of sources and of map)."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
from models import indexed_frame

import aioinfer

IMAGES = 12
EMPTY = 7  # the index of the 0-byte image
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x00"  # a "._" file's header


def faulty_folder(folder: Path) -> list[Path]:
    """``img0.jpg`` .. ``img11.jpg`` in ``folder``, the indexed frames 0..11 written by OpenCV, except
    ``img7.jpg``, which is empty (0 bytes); and macOS' AppleDouble ``._junk.png``, which sorts first.
    Returns the 12 image paths in frame order."""
    folder.mkdir(exist_ok=True)
    (folder / "._junk.png").write_bytes(APPLE_DOUBLE)
    paths = [folder / f"img{i}.jpg" for i in range(IMAGES)]
    for i, path in enumerate(paths):
        if i == EMPTY:
            path.write_bytes(b"")
        else:
            assert cv2.imwrite(str(path), indexed_frame(i))
    return paths


async def collect(source: aioinfer.FrameSource) -> list[aioinfer.Frame]:
    async with source as frames:
        return [f async for f in frames]


async def collect_with_errors(source: aioinfer.FrameSource) -> list[aioinfer.Frame | aioinfer.FrameError]:
    """Every frame, and in its place the FrameError of each frame that could not be read."""
    got: list[aioinfer.Frame | aioinfer.FrameError] = []
    async with source as frames:
        while True:
            try:
                got.append(await frames.__anext__())
            except aioinfer.FrameError as exc:
                got.append(exc)
            except StopAsyncIteration:
                return got


def source_threads() -> list[threading.Thread]:
    """The reader threads of sources still alive."""
    return [t for t in threading.enumerate() if t.name.startswith("aioinfer-source")]
