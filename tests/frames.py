"""An image folder with the faults real ones have, written by OpenCV (tests of sources and of map)."""

from __future__ import annotations

from pathlib import Path

import cv2
from models import indexed_frame

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
