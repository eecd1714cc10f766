"""Decoding images with a bound on their size. The width and height are read from the header first
(PNG, JPEG, BMP, WebP, TIFF, PNM and GIF); an image that declares more than ``max_pixels`` is refused
before a single pixel is decoded, and a format whose size cannot be read that way is refused rather
than decoded blindly (OpenCV would allocate whatever the header asks for)."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ._errors import DecodeError, ImageTooLarge, SourceError, UnsupportedFormatError

ACCEPTED = "PNG, JPEG, BMP, WebP, TIFF, PNM (P1-P6) or GIF"
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: above any common camera's 8K frame, far below a decoding bomb
_PNM = re.compile(rb"P[1-6]\s(?:\s|#[^\r\n]*)*(\d+)(?:\s|#[^\r\n]*)+(\d+)\s")
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # not DHT, JPG, DAC
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM carry no length


class ImageHeader(NamedTuple):
    """What an image's header declares: its format, its size, and the largest buffer in pixels that
    decoding it allocates (more than the image for a TIFF whose tiles are larger)."""

    format: str
    width: int
    height: int
    buffer_pixels: int


def decode_image(data: bytes | bytearray, *, max_pixels: int, name: str = "the image") -> np.ndarray:
    """The BGR uint8 image that ``data`` encodes, decoded only if its header declares at most
    ``max_pixels`` pixels.

    Raises :class:`ImageTooLarge` beyond that, :class:`UnsupportedFormatError` for a format not in
    :data:`ACCEPTED`, and :class:`DecodeError` for a header or pixel data that cannot be decoded;
    ``name`` is how messages call the image.
    """
    header = read_header(data, name=name)
    if header.buffer_pixels > max_pixels:
        raise ImageTooLarge(
            f"{name} is a {header.width}x{header.height} {header.format} "
            f"({_pixels_text(header)}); at most {max_pixels} pixels are accepted"
        )
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        image, reason = None, _cv2_reason(exc)
    else:
        reason = "its data is corrupt, truncated or of an unsupported kind"
    if image is None:
        raise DecodeError(
            f"{name} ({header.format}, {header.width}x{header.height}) cannot be decoded: {reason}"
        )
    return image


def read_image(path: str | PathLike[str], *, max_pixels: int) -> np.ndarray:
    """:func:`decode_image` of the file at ``path``; a file that cannot be read raises
    :class:`SourceError` naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read image {str(path)!r}: {exc.strerror or exc}") from None
    return decode_image(data, max_pixels=max_pixels, name=f"image {str(path)!r}")


def read_header(data: bytes | bytearray, *, name: str = "the image") -> ImageHeader:
    """The format and size that ``data``'s header declares, without decoding any pixel.

    Raises :class:`UnsupportedFormatError` if ``data`` does not start like an accepted format and
    :class:`DecodeError` if its header is truncated or inconsistent.
    """
    if not data:
        raise DecodeError(f"{name} is empty (0 bytes)")
    reader = next((read for test, read in _FORMATS if test(data)), None)
    if reader is None:
        raise UnsupportedFormatError(
            f"{name} ({len(data)} bytes, starting {bytes(data[:8])!r}) is not an image in an accepted "
            f"format: send {ACCEPTED}"
        )
    try:
        fmt, width, height, buffer_pixels = reader(data)
    except (struct.error, IndexError):
        raise DecodeError(f"{name} has a truncated header") from None
    if width <= 0 or height <= 0:
        raise DecodeError(f"{name} declares an empty {width}x{height} {fmt}")
    return ImageHeader(fmt, width, height, max(width * height, buffer_pixels))


# -- one reader per format: (format, width, height, pixels of the largest buffer decoding needs) --

_Size = tuple[str, int, int, int]
Buffer = bytes | bytearray


def _png(data: Buffer) -> _Size:
    length, kind, width, height = struct.unpack_from(">L4sLL", data, 8)
    if (length, kind) != (13, b"IHDR"):
        raise DecodeError(f"a PNG must start with its IHDR chunk, got {kind!r}")
    _check_png_chunks(data)
    return "PNG", width, height, 0


def _check_png_chunks(data: Buffer) -> None:
    """Every chunk up to IEND fits in ``data``: OpenCV allocates (and fills) the length a chunk
    declares before reading it, 4 GiB for an 80-byte PNG that claims so."""
    pos = 8
    while pos < len(data):
        length, kind = struct.unpack_from(">L4s", data, pos)
        if pos + 12 + length > len(data):
            raise DecodeError(
                f"a PNG whose {kind!r} chunk at byte {pos} declares {length} bytes, more than the "
                f"{len(data) - pos - 12} that follow"
            )
        if kind == b"IEND":
            return
        pos += 12 + length


def _jpeg(data: Buffer) -> _Size:
    """The size in the first start-of-frame (SOFn) segment, which is what the decoder uses."""
    pos = 2
    while True:
        if data[pos] != 0xFF:
            raise DecodeError(f"a JPEG marker was expected at byte {pos}")
        while data[pos] == 0xFF:  # fill bytes
            pos += 1
        marker, pos = data[pos], pos + 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            raise DecodeError("a JPEG whose scan or end comes before its frame header (SOFn)")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise DecodeError(f"a JPEG segment at byte {pos} has a length of {length}")
        if marker in _JPEG_SOF:
            height, width = struct.unpack_from(">HH", data, pos + 3)
            if height == 0:
                raise DecodeError("a JPEG whose height comes after its scan (DNL) is not accepted")
            return "JPEG", width, height, 0
        pos += length


def _bmp(data: Buffer) -> _Size:
    (header_size,) = struct.unpack_from("<L", data, 14)
    width, height = struct.unpack_from("<HH" if header_size == 12 else "<ll", data, 18)
    return "BMP", width, abs(height), 0  # a negative height: rows stored top-down


def _webp(data: Buffer) -> _Size:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: the key frame's header
        if data[23:26] != b"\x9d\x01\x2a":
            raise DecodeError("a lossy WebP without the VP8 start code")
        width, height = struct.unpack_from("<HH", data, 26)
        return "WebP", width & 0x3FFF, height & 0x3FFF, 0
    if chunk == b"VP8L":  # lossless: 14 bits each of width - 1 and height - 1
        if data[20] != 0x2F:
            raise DecodeError("a lossless WebP without the VP8L signature")
        (bits,) = struct.unpack_from("<L", data, 21)
        return "WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 0
    if chunk == b"VP8X":  # extended: the canvas, 24 bits each of width - 1 and height - 1
        if len(data) < 30:
            raise IndexError
        width, height = (int.from_bytes(data[at : at + 3], "little") + 1 for at in (24, 27))
        return "WebP", width, height, 0
    raise DecodeError(f"a WebP whose first chunk is {chunk!r}, not VP8, VP8L or VP8X")


# TIFF field types whose value is one unsigned integer: SHORT, LONG, LONG8 (BigTIFF)
_TIFF_INT = {3: "H", 4: "L", 16: "Q"}
_WIDTH, _LENGTH, _TILE_WIDTH, _TILE_LENGTH = 256, 257, 322, 323


def _tiff(data: Buffer) -> _Size:
    """The size in the first image file directory (the image OpenCV decodes), classic or BigTIFF,
    either byte order; its tiles too, since the decoder allocates whole tiles."""
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(order + "H", data, 2)[0] == 43
    offset_fmt, count_fmt, entry, value_at = ("Q", "Q", 20, 12) if big else ("L", "H", 12, 8)
    (ifd,) = struct.unpack_from(order + offset_fmt, data, 8 if big else 4)
    (count,) = struct.unpack_from(order + count_fmt, data, ifd)
    start = ifd + struct.calcsize(count_fmt)
    if start + count * entry > len(data):
        raise IndexError
    fields = {}
    for at in range(start, start + count * entry, entry):
        tag, kind = struct.unpack_from(order + "HH", data, at)
        if tag in (_WIDTH, _LENGTH, _TILE_WIDTH, _TILE_LENGTH) and kind in _TIFF_INT:
            (fields[tag],) = struct.unpack_from(order + _TIFF_INT[kind], data, at + value_at)
    if _WIDTH not in fields or _LENGTH not in fields:
        raise DecodeError("a TIFF whose first directory has no ImageWidth or ImageLength")
    tile = fields.get(_TILE_WIDTH, 0) * fields.get(_TILE_LENGTH, 0)
    return "TIFF", fields[_WIDTH], fields[_LENGTH], tile


def _pnm(data: Buffer) -> _Size:
    match = _PNM.match(data, 0, 4096)
    if match is None:
        raise DecodeError("a PNM whose header has no width and height in its first 4096 bytes")
    return "PNM", int(match[1]), int(match[2]), 0


def _gif(data: Buffer) -> _Size:
    width, height = struct.unpack_from("<HH", data, 6)  # the logical screen: frames must fit in it
    return "GIF", width, height, 0


_FORMATS: tuple[tuple[Callable[[Buffer], bool], Callable[[Buffer], _Size]], ...] = (
    (lambda d: d.startswith(b"\x89PNG\r\n\x1a\n"), _png),
    (lambda d: d.startswith(b"\xff\xd8\xff"), _jpeg),
    (lambda d: d.startswith(b"BM"), _bmp),
    (lambda d: d.startswith(b"RIFF") and d[8:12] == b"WEBP", _webp),
    (lambda d: d[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff),
    (lambda d: re.match(rb"P[1-6]\s", d) is not None, _pnm),
    (lambda d: d[:6] in (b"GIF87a", b"GIF89a"), _gif),
)


def _pixels_text(header: ImageHeader) -> str:
    pixels = header.width * header.height
    if header.buffer_pixels > pixels:
        return f"{pixels} pixels, in tiles of {header.buffer_pixels} pixels"
    return f"{pixels} pixels"


def _cv2_reason(exc: cv2.error) -> str:
    """OpenCV's own message, without the file and function it came from."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.split(" error: ", 1)[-1]
