"""Hostile request bodies, built by hand in milliseconds: compression bombs, headers that lie about
their sizes, malformed containers, images that declare huge dimensions. Shared by the codec, image
and server tests."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from typing import NamedTuple

import cv2
import numpy as np

ZEROS = 2**24  # zeros are compressed in chunks of this size
STORED, DEFLATED = 0, 8


def npy_header(shape: tuple[int, ...], descr: str = "<f4", fortran: bool = False) -> bytes:
    """The magic and header of a .npy file declaring ``shape`` of ``descr``, without any data."""
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": fortran, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)  # type: ignore[no-untyped-call]
    return buffer.getvalue()


@functools.cache
def _zeros_block() -> bytes:
    """``ZEROS`` zero bytes as raw deflate data that ends on a full flush: after a full flush the
    compressor starts afresh, so the same block may follow itself any number of times."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(bytes(ZEROS)) + compressor.flush(zlib.Z_FULL_FLUSH)


def deflate(prefix: bytes, zeros: int = 0) -> bytes:
    """A raw deflate stream of ``prefix`` then ``zeros`` zero bytes, whatever their number."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    blocks, rest = divmod(zeros, ZEROS)
    tail = compressor.compress(bytes(rest)) + compressor.flush(zlib.Z_FINISH)
    return head + _zeros_block() * blocks + tail


def crc32(prefix: bytes, zeros: int = 0) -> int:
    """The CRC-32 of ``prefix`` then ``zeros`` zero bytes."""
    crc = zlib.crc32(prefix)
    chunk = bytes(min(zeros, ZEROS))
    for start in range(0, zeros, ZEROS):
        crc = zlib.crc32(chunk[: zeros - start], crc)
    return crc


class Member(NamedTuple):
    """One zip member as it is stored: ``data`` already compressed with ``method``; ``size`` and
    ``crc`` are what the headers declare, true or not."""

    name: str
    data: bytes
    size: int
    crc: int
    method: int = DEFLATED
    flags: int = 0


def member(name: str, content: bytes, zeros: int = 0) -> Member:
    """An honest deflated member holding ``content`` then ``zeros`` zero bytes."""
    return Member(name, deflate(content, zeros), len(content) + zeros, crc32(content, zeros))


def zip_archive(members: list[Member]) -> bytes:
    """A zip archive of ``members`` exactly as given (no zip64: sizes under 4 GiB)."""
    body, directory = bytearray(), bytearray()
    for m in members:
        name = m.name.encode()
        common = (m.flags, m.method, 0, 0x21, m.crc, len(m.data), m.size, len(name), 0)
        directory += struct.pack("<4s6H3L5HLL", b"PK\x01\x02", 20, 20, *common, 0, 0, 0, 0, len(body))
        directory += name
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, *common) + name + m.data
    count, size, offset = len(members), len(directory), len(body)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, size, offset, 0)
    return bytes(body + directory + end)


# -- images -----------------------------------------------------------------------------------------


def encoded(ext: str, image: np.ndarray, *params: int) -> bytes:
    """``image`` encoded by OpenCV as ``ext`` (".png", ".jpg", ...)."""
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return data.tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">L", len(data)) + kind + data + struct.pack(">L", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A real 8x8 PNG from OpenCV whose IHDR is patched to declare ``width`` x ``height`` (its CRC
    recomputed, so the file stays valid up to its too-short pixel data)."""
    data = bytearray(encoded(".png", np.zeros((8, 8, 3), np.uint8)))
    data[16:24] = struct.pack(">LL", width, height)
    data[29:33] = struct.pack(">L", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def png_lying_chunk(length: int = 0xFFFFFFFF) -> bytes:
    """A real 8x8 PNG from OpenCV whose IDAT chunk declares ``length`` bytes: OpenCV 5 allocates and
    fills that much before finding the data short (4 GiB for these 90 bytes)."""
    data = bytearray(encoded(".png", np.zeros((8, 8, 3), np.uint8)))
    assert data[37:41] == b"IDAT"
    data[33:37] = struct.pack(">L", length)
    return bytes(data)


def png_bomb(width: int, height: int) -> bytes:
    """An RGB PNG of ``width`` x ``height`` black pixels that really inflates to that: (3w + 1)h
    bytes of rows, a few MB of deflate data, checksums right."""
    raw = (3 * width + 1) * height
    adler = (raw % 65521) << 16 | 1  # the Adler-32 of zeros: a stays 1, b counts the bytes
    stream = b"\x78\xda" + deflate(b"", raw) + struct.pack(">L", adler)
    ihdr = struct.pack(">LL5B", width, height, 8, 2, 0, 0, 0)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real 8x8 JPEG from OpenCV whose frame header (SOF0) is patched to ``width`` x ``height``:
    libjpeg decodes its one block and fills the rest, the whole declared size."""
    data = bytearray(encoded(".jpg", np.zeros((8, 8, 3), np.uint8)))
    pos = 2
    while data[pos + 1] != 0xC0:  # walk the segments: marker, then a big-endian length
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    data[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def tiff(width: int, height: int, *, order: str = "<", big: bool = False, tile: int = 0) -> bytes:
    """A grayscale 8-bit uncompressed TIFF declaring ``width`` x ``height`` (classic or BigTIFF,
    ``order`` "<" for II or ">" for MM), in one strip, or in one ``tile`` x ``tile`` tile. Its pixel
    data is a gradient, cut at 4096 bytes when the declared size is larger."""
    size = min(max(width * height, tile * tile), 4096)
    pixels = bytes(i % 251 for i in range(size))
    data_at = 16 if big else 8
    layout = [(322, tile), (323, tile), (324, data_at), (325, size)] if tile else []
    strips = [] if tile else [(273, data_at), (278, height), (279, size)]
    fields = sorted([(256, width), (257, height), (258, 8), (259, 1), (262, 1), (277, 1), *strips, *layout])
    entry = order + ("HHQQ" if big else "HHLL")
    count = order + ("Q" if big else "H")
    ifd = struct.pack(count, len(fields)) + b"".join(
        struct.pack(entry, tag, 16 if big else 4, 1, value) for tag, value in fields
    )
    ifd += bytes(8 if big else 4)  # no next directory
    ifd_at = data_at + size
    magic = (b"II" if order == "<" else b"MM") + struct.pack(order + "H", 43 if big else 42)
    head = magic + (struct.pack(order + "HHQ", 8, 0, ifd_at) if big else struct.pack(order + "L", ifd_at))
    return head + pixels + ifd


def declaring(fmt: str, width: int, height: int) -> bytes:
    """An image in ``fmt`` whose header declares ``width`` x ``height``, patched into a real small
    image by OpenCV where the format allows it, and written by hand otherwise."""
    small = np.zeros((8, 8, 3), np.uint8)
    if fmt == "PNG":
        return png_declaring(width, height)
    if fmt == "JPEG":
        return jpeg_declaring(width, height)
    if fmt == "TIFF":
        return tiff(width, height)
    if fmt == "PNM":
        return b"P6\n# a comment\n%d %d\n255\n" % (width, height) + bytes(192)
    data = bytearray(encoded({"BMP": ".bmp", "WebP": ".webp", "GIF": ".gif"}[fmt], small))
    if fmt == "BMP":
        data[18:26] = struct.pack("<ll", width, height)
    elif fmt == "WebP":  # lossless VP8L: 14 bits each of width - 1 and height - 1
        (bits,) = struct.unpack_from("<L", data, 21)
        data[21:25] = struct.pack("<L", bits & ~0xFFFFFFF | (width - 1) | (height - 1) << 14)
    else:
        data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)
