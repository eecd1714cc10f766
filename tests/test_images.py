"""Images decoded with a bound on their size (aioinfer/_images.py): the header's width and height of
every accepted format, read from real files OpenCV writes; images declaring too many pixels refused
before decoding; other formats refused by name; malformed bytes raise a DecodeError, nothing else."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from hostile import declaring, encoded, png_bomb, png_lying_chunk, tiff

from aioinfer._errors import DecodeError, ImageTooLarge, SourceError, UnsupportedFormatError
from aioinfer._images import ACCEPTED, decode_image, read_header, read_image

H, W = 37, 53  # odd sizes, so that width and height cannot be swapped unnoticed
IMAGE = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
GRAY = IMAGE[:, :, 0].copy()
BGRA = np.dstack([IMAGE, GRAY])

# (format, bytes) written by OpenCV with the options that change the header's layout
REAL = [
    ("PNG", encoded(".png", IMAGE)),
    ("PNG", encoded(".png", GRAY)),
    ("PNG", encoded(".png", IMAGE.astype(np.uint16) * 257)),
    ("JPEG", encoded(".jpg", IMAGE)),
    ("JPEG", encoded(".jpg", IMAGE, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
    ("BMP", encoded(".bmp", IMAGE)),
    ("BMP", encoded(".bmp", GRAY)),
    ("WebP", encoded(".webp", IMAGE)),  # lossless: VP8L
    ("WebP", encoded(".webp", IMAGE, cv2.IMWRITE_WEBP_QUALITY, 80)),  # lossy: VP8
    ("WebP", encoded(".webp", BGRA, cv2.IMWRITE_WEBP_QUALITY, 80)),  # lossy with alpha: VP8X
    ("TIFF", encoded(".tiff", IMAGE)),
    ("TIFF", encoded(".tiff", IMAGE, cv2.IMWRITE_TIFF_COMPRESSION, 1)),
    ("PNM", encoded(".ppm", IMAGE)),  # P6
    ("PNM", encoded(".ppm", IMAGE, cv2.IMWRITE_PXM_BINARY, 0)),  # P3
    ("PNM", encoded(".pgm", GRAY)),  # P5
    ("PNM", encoded(".pgm", GRAY, cv2.IMWRITE_PXM_BINARY, 0)),  # P2
    ("PNM", encoded(".pbm", GRAY)),  # P4
    ("PNM", encoded(".pbm", GRAY, cv2.IMWRITE_PXM_BINARY, 0)),  # P1
    ("GIF", encoded(".gif", IMAGE)),
]


@pytest.mark.parametrize(("fmt", "data"), REAL, ids=[f"{f}-{d[:4]!r}" for f, d in REAL])
def test_the_header_gives_the_size_opencv_decodes(fmt, data):
    header = read_header(data)
    assert (header.format, header.width, header.height) == (fmt, W, H)
    image = decode_image(data, max_pixels=W * H)  # exactly at the limit
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    with pytest.raises(ImageTooLarge, match=f"is a {W}x{H} {fmt} \\({W * H} pixels\\); at most {W * H - 1}"):
        decode_image(data, max_pixels=W * H - 1)


@pytest.mark.parametrize("order", ["<", ">"], ids=["II", "MM"])
@pytest.mark.parametrize("big", [False, True], ids=["classic", "BigTIFF"])
@pytest.mark.parametrize("tile", [0, 32], ids=["strip", "tiled"])
def test_tiffs_in_either_byte_order_classic_or_big(order, big, tile):
    """OpenCV writes only little-endian classic TIFFs: these are written by hand, and OpenCV decodes
    them (a gradient, checked pixel by pixel)."""
    data = tiff(32, 32, order=order, big=big, tile=tile)
    assert read_header(data)[:3] == ("TIFF", 32, 32)
    image = decode_image(data, max_pixels=32 * 32)
    np.testing.assert_array_equal(image[:, :, 0].ravel(), np.arange(32 * 32) % 251)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "WebP", "TIFF", "PNM", "GIF"])
def test_huge_declared_sizes_are_refused_before_decoding(fmt):
    width, height = (16384, 16384) if fmt == "WebP" else (30000, 30000)  # WebP's largest
    data = declaring(fmt, width, height)
    assert len(data) < 5000
    with pytest.raises(ImageTooLarge, match=f"is a {width}x{height} {fmt} \\({width * height} pixels\\)"):
        decode_image(data, max_pixels=40_000_000)


def test_a_tiff_is_bounded_by_its_tiles_too():
    """OpenCV allocates (and libtiff fills) whole tiles: a 16x16 image in one 16000x16000 tile
    made the server's memory grow by 1 GB."""
    with pytest.raises(ImageTooLarge, match=r"16x16 TIFF \(256 pixels, in tiles of 256000000 pixels\)"):
        decode_image(tiff(16, 16, tile=16000), max_pixels=40_000_000)


def test_a_png_bomb_is_refused_from_its_header():
    with pytest.raises(ImageTooLarge, match="30000x30000 PNG"):
        decode_image(png_bomb(30000, 30000), max_pixels=40_000_000)  # 2.6 MB that inflate to 2.7 GB


def test_a_png_chunk_longer_than_the_file_is_refused_before_decoding():
    """OpenCV allocates and fills what a chunk declares: 4 GiB and 4 s for this 90-byte PNG."""
    with pytest.raises(DecodeError, match="'IDAT' chunk at byte 33 declares 4294967295 bytes"):
        decode_image(png_lying_chunk(), max_pixels=40_000_000)


def test_opencvs_own_refusals_are_decode_errors():
    """Beyond its own limit (2**30 pixels) OpenCV raises cv2.error: a DecodeError here, not a crash."""
    with pytest.raises(DecodeError, match=r"50000x50000\).*cannot be decoded"):
        decode_image(declaring("PNG", 50000, 50000), max_pixels=10**10)


@pytest.mark.parametrize(
    ("ext", "image"),
    [
        (".avif", IMAGE),
        (".jp2", IMAGE),
        (".hdr", IMAGE.astype(np.float32) / 255),
        (".pfm", IMAGE.astype(np.float32) / 255),
        (".pam", IMAGE),
        (".ras", IMAGE),
    ],
)
def test_formats_whose_size_is_not_read_are_refused_by_name(ext, image):
    data = encoded(ext, image)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (H, W, 3)  # OpenCV could
    with pytest.raises(
        UnsupportedFormatError, match=re.escape(f"not an image in an accepted format: send {ACCEPTED}")
    ):
        decode_image(data, max_pixels=10**9)


def test_malformed_images_raise_only_decode_errors():
    """Truncations of each real image's header, random changes of its first bytes, and garbage:
    a DecodeError (or UnsupportedFormatError), or an image, never another exception."""
    rng = np.random.default_rng(0)
    seen = set()
    for _, data in REAL:
        variants = [data[:n] for n in [*range(64), *range(64, min(len(data), 400), 16)]]
        for _ in range(16):
            mutated = bytearray(data)
            for at in rng.integers(0, min(len(data), 64), 2):
                mutated[at] = rng.integers(0, 256)
            variants.append(bytes(mutated))
        for variant in [*variants, b"", b"not an image", bytes(100)]:
            try:
                decode_image(variant, max_pixels=10**6)
                seen.add("decoded")
            except DecodeError as exc:
                seen.add(type(exc).__name__)
    assert {"decoded", "DecodeError", "UnsupportedFormatError"} <= seen


def test_corrupt_pixel_data_is_a_decode_error_naming_the_image():
    data = bytearray(encoded(".png", IMAGE))
    data[60:-20] = bytes(len(data) - 80)  # the IDAT chunk zeroed: checksum and data broken
    with pytest.raises(DecodeError, match=f"photo.png' \\(PNG, {W}x{H}\\) cannot be decoded"):
        decode_image(bytes(data), max_pixels=10**6, name="image 'photo.png'")


def test_read_image_names_the_file(tmp_path):
    path = tmp_path / "frame.jpg"
    path.write_bytes(encoded(".jpg", IMAGE))
    assert read_image(path, max_pixels=W * H).shape == (H, W, 3)
    with pytest.raises(ImageTooLarge, match=f"image '{path}' is a {W}x{H} JPEG"):
        read_image(path, max_pixels=100)
    with pytest.raises(SourceError, match=f"cannot read image '{tmp_path / 'missing.png'}'"):
        read_image(tmp_path / "missing.png", max_pixels=100)
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(UnsupportedFormatError, match=r"notes\.png"):
        read_image(tmp_path / "notes.png", max_pixels=100)
