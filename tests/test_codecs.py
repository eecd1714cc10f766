"""Tensor bodies (aioinfer/_codecs.py): what they decode to is bounded before anything is decoded,
malformed ones raise a DecodeError (never anything else), and any output name can be answered."""

from __future__ import annotations

import bz2
import io
import json
import lzma
import re
import tracemalloc
import zipfile

import numpy as np
import pytest
from hostile import STORED, Member, crc32, member, npy_header, zip_archive
from servers import npy

from aioinfer._codecs import (
    JSON,
    NPY,
    NPZ,
    body_kind,
    decode_json,
    decode_tensors,
    encode_outputs,
    read_npy,
    read_npz,
)
from aioinfer._errors import DecodeError, TooLargeError, UnsupportedFormatError
from aioinfer._outputs import Outputs

MiB = 2**20


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npz_compressed(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)),
        np.arange(6, dtype=">f8").reshape(2, 3),
        np.array([[True, False]]),
        np.zeros((0, 4), np.float16),
        np.float32(3.5).reshape(()),
    ],
    ids=["f32", "fortran", "big-endian", "bool", "empty", "scalar"],
)
def test_npy_and_npz_round_trip_as_writable_arrays(array):
    body = bytearray(npy(array))
    got = read_npy(body, max_decoded_bytes=array.nbytes)  # exactly at the limit
    np.testing.assert_array_equal(got, array)
    assert got.dtype == array.dtype and got.flags.writeable  # share_inputs needs writable arrays
    assert array.size == 0 or np.shares_memory(got, np.frombuffer(body, np.uint8))  # a view, no copy
    other = np.ones_like(array)
    for archive in (npz(x=array, y=other), npz_compressed(x=array, y=other)):
        got = read_npz(archive, max_decoded_bytes=2 * array.nbytes)
        assert sorted(got) == ["x", "y"] and got["x"].flags.writeable
        np.testing.assert_array_equal(got["x"], array)
        np.testing.assert_array_equal(got["y"], other)


def test_a_npy_header_over_the_limit_is_refused_before_its_data_is_read():
    array = np.zeros((4, 4), np.float32)
    with pytest.raises(TooLargeError, match=r"float32\[4, 4\], 64 bytes.*max_decoded_bytes"):
        read_npy(npy(array), max_decoded_bytes=63)
    with pytest.raises(TooLargeError, match=r"float32\[1000000000000, 4\]"):
        read_npy(npy_header((10**12, 4)), max_decoded_bytes=256 * MiB)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (npy_header((2, 4)) + bytes(31), "holds 31 bytes of data; its header declares 32"),
        (npy_header((2, 4)) + bytes(33), "holds 33 bytes of data; its header declares 32"),
        (npy_header((2, -4)), "negative dimension"),
        (npy_header((2,), "|O"), "Python objects"),
        (npy_header((2,), "<U4"), "send bool, integer, float or complex arrays"),
        (npy_header((2,), "<M8[s]"), "send bool, integer, float or complex arrays"),
        (npy(np.zeros(2, [("a", "<f4")])), "send bool, integer, float or complex arrays"),
        (b"\x93NUMPY\x03\x00" + bytes(8), "not a .npy array"),
        (b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 70000, "not a .npy array"),
        (b"\x93NUM", "not a .npy array"),
    ],
    ids=["short", "long", "negative", "object", "str", "datetime", "structured", "v3", "huge-header", "cut"],
)
def test_malformed_npy_bodies_raise_decode_errors(body, words):
    with pytest.raises(DecodeError, match=words):
        read_npy(body, max_decoded_bytes=256 * MiB)


def test_a_deflate_bomb_is_refused_from_its_header_without_inflating():
    bomb = zip_archive([member("x.npy", npy_header((2**29,)), 2**31)])  # 2 MB that inflate to 2 GiB
    tracemalloc.start()
    try:
        with pytest.raises(TooLargeError, match=r"float32\[536870912\], 2147483648 bytes"):
            read_npz(bomb, max_decoded_bytes=256 * MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB  # numpy's and zlib's buffers are traced: nothing was inflated


def test_members_are_counted_together_against_the_limit():
    archive = npz(a=np.zeros(100, np.uint8), b=np.zeros(100, np.uint8))
    assert len(read_npz(archive, max_decoded_bytes=200)) == 2
    with pytest.raises(
        TooLargeError, match=r"member 'b.npy' declares uint8\[100\].*99 bytes left of the 199"
    ):
        read_npz(archive, max_decoded_bytes=199)


def test_a_member_is_read_only_as_far_as_its_own_header_declares():
    """The zip's sizes can lie; what is read is bounded by the member's .npy header, and data that
    is shorter or longer than that header declares is refused."""
    header = npy_header((1, 4))
    lying = zip_archive([member("x.npy", header, 2**30)])  # 1 MB that inflate to 1 GiB
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="more data than the 16 bytes its header declares"):
            read_npz(lying, max_decoded_bytes=256 * MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB  # the 1 GiB behind the header was never inflated
    with pytest.raises(DecodeError, match="holds 8 bytes of data; its header declares 16"):
        read_npz(zip_archive([member("x.npy", header + bytes(8))]), max_decoded_bytes=MiB)
    honest = member("x.npy", header + bytes(16))
    smaller = honest._replace(size=len(header) + 8)  # the zip declares less than there is
    with pytest.raises(DecodeError, match=r"x\.npy"):
        read_npz(zip_archive([smaller]), max_decoded_bytes=MiB)


def corrupt_archives() -> list[tuple[str, bytes, type[Exception], str]]:
    good = npz(x=np.arange(8, dtype=np.float32))
    stored = member("x.npy", npy(np.arange(8, dtype=np.float32)))
    raw = npy(np.arange(8, dtype=np.float32))
    bz2_member = Member("x.npy", bz2.compress(raw), len(raw), crc32(raw), method=12)
    lzma_data = lzma.compress(raw, lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA1}])
    object_array = io.BytesIO()
    np.savez(object_array, x=np.array([{"a": 1}, None], dtype=object))
    return [
        ("object member", object_array.getvalue(), DecodeError, "Python objects"),
        ("bad crc", zip_archive([stored._replace(crc=stored.crc ^ 1)]), DecodeError, "CRC"),
        ("truncated zip", good[: len(good) // 2], DecodeError, "not a valid .npz archive"),
        ("truncated member", zip_archive([stored._replace(data=stored.data[:20])]), DecodeError, "x.npy"),
        ("not npy", zip_archive([member("x.npy", b"hello")]), DecodeError, "not a .npy array"),
        ("two x", zip_archive([stored, stored]), DecodeError, "two members named 'x.npy'"),
        ("encrypted", zip_archive([stored._replace(flags=1)]), DecodeError, "x.npy"),
        ("bzip2", zip_archive([bz2_member]), UnsupportedFormatError, "method 12"),
        ("lzma", zip_archive([bz2_member._replace(data=lzma_data, method=14)]), UnsupportedFormatError, "14"),
        ("unknown method", zip_archive([stored._replace(method=99)]), UnsupportedFormatError, "99"),
        ("stored garbage", zip_archive([Member("x.npy", b"\x93NUMPY", 9, 0, STORED)]), DecodeError, "x.npy"),
        ("empty", b"PK", DecodeError, "not a valid .npz archive"),
        (
            "2000 members",
            zip_archive([member(f"m{i}", b"") for i in range(2000)]),
            TooLargeError,
            "more than 1024 members",
        ),
    ]


@pytest.mark.parametrize(("name", "body", "error", "words"), corrupt_archives(), ids=lambda v: str(v)[:16])
def test_malformed_npz_bodies_raise_specific_errors(name, body, error, words):
    with pytest.raises(error, match=words):
        read_npz(body, max_decoded_bytes=MiB)


def test_mutated_bodies_raise_only_decode_errors():
    """Every truncation of small valid bodies, and random byte changes of them, either decodes or
    raises a DecodeError: never another exception (which a server would answer with a 500)."""
    rng = np.random.default_rng(0)
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    bodies = [(NPY, npy(array)), (NPZ, npz(a=array, b=array[0])), (NPZ, npz_compressed(a=array))]
    outcomes = set()
    for kind, body in bodies:
        variants = [body[:n] for n in range(len(body))]
        for _ in range(300):
            mutated = bytearray(body)
            for at in rng.integers(0, len(body), rng.integers(1, 4)):
                mutated[at] = rng.integers(0, 256)
            variants.append(bytes(mutated))
        for variant in variants:
            try:
                decode_tensors(bytearray(variant), body_kind(kind, variant), max_decoded_bytes=MiB)
                outcomes.add("decoded")
            except DecodeError as exc:
                outcomes.add(type(exc).__name__)
    assert {"decoded", "DecodeError"} <= outcomes  # and nothing else was raised


def test_json_is_bounded_by_what_its_values_take_in_python():
    flat = b'{"inputs": [' + b"[]," * 1000 + b"[]]}"  # 2004 separators: 2005 values at most
    assert len(decode_json(flat, max_decoded_bytes=2005 * 80)["inputs"]) == 1001
    with pytest.raises(
        TooLargeError, match=r"up to 2005 values.*max_decoded_bytes=160399.*application/x-npy"
    ):
        decode_json(flat, max_decoded_bytes=2005 * 80 - 1)
    with pytest.raises(DecodeError, match="not valid JSON"):
        decode_json(b"[" * 100_000 + b"]" * 100_000, max_decoded_bytes=256 * MiB)
    with pytest.raises(DecodeError, match=re.escape('send a JSON object {"inputs": ...}')):
        decode_tensors(b"[1, 2]", JSON, max_decoded_bytes=MiB)


def test_json_is_bounded_by_max_json_values_counted_before_parsing():
    flat = b'{"inputs": [' + b"[]," * 1000 + b"[]]}"  # 2005 values at most, as above
    assert len(decode_json(flat, max_decoded_bytes=MiB, max_json_values=2005)["inputs"]) == 1001
    assert len(decode_tensors(flat, JSON, max_decoded_bytes=MiB, max_json_values=2005)) == 1001
    words = r"up to 2005 values, over max_json_values=2004.*send large tensors as application/x-npy"
    with pytest.raises(TooLargeError, match=words):
        decode_json(flat, max_decoded_bytes=MiB, max_json_values=2004)
    with pytest.raises(TooLargeError, match=words):
        decode_tensors(flat, JSON, max_decoded_bytes=MiB, max_json_values=2004)
    with pytest.raises(TooLargeError, match=r"max_json_values=2004, .*\): send fewer$"):
        decode_json(flat, max_decoded_bytes=MiB, max_json_values=2004, instead="send fewer")
    # counted, not parsed: a body that is not even JSON is refused on its count alone
    with pytest.raises(TooLargeError, match="up to 4 values, over max_json_values=2"):
        decode_json(b"{,,", max_decoded_bytes=MiB, max_json_values=2)
    array = np.zeros((100, 100), np.float32)  # binary tensors are not bound by it
    assert decode_tensors(npy(array), NPY, max_decoded_bytes=MiB, max_json_values=1).shape == (100, 100)
    image = json.dumps({"inputs": [np.ones((512, 512), np.uint8).tolist()]}).encode()
    assert np.shape(decode_tensors(image, JSON, max_decoded_bytes=256 * MiB)) == (1, 512, 512)  # default


def test_body_kinds():
    assert body_kind("", b"{}") == JSON
    assert body_kind("application/json; charset=utf-8", b"{}") == JSON
    assert body_kind("application/octet-stream", npy(np.zeros(1))) == NPY
    assert body_kind("application/x-npy", npz(x=np.zeros(1))) == NPZ  # told by its first bytes
    with pytest.raises(UnsupportedFormatError, match="'text/plain': send application/json"):
        body_kind("text/plain", b"1 2")


def outputs(**arrays: np.ndarray) -> Outputs:
    return Outputs(list(arrays.values()), list(arrays), {name: i for i, name in enumerate(arrays)})


def test_any_output_name_is_answered_as_npz():
    """``np.savez(file, **outputs)`` fails on an output named ``file``; zipfile does not care."""
    result = outputs(file=np.arange(3.0), allow_pickle=np.ones((2, 2), np.int32), **{"a/b.c": np.zeros(1)})
    archive = np.load(io.BytesIO(encode_outputs(result, NPZ, max_decoded_bytes=MiB)))
    assert sorted(archive.files) == ["a/b.c", "allow_pickle", "file"]
    np.testing.assert_array_equal(archive["file"], np.arange(3.0))
    np.testing.assert_array_equal(archive["allow_pickle"], np.ones((2, 2), np.int32))
    assert read_npz(encode_outputs(result, NPZ, max_decoded_bytes=MiB), max_decoded_bytes=MiB).keys() == {
        "file",
        "allow_pickle",
        "a/b.c",
    }
    single = np.load(io.BytesIO(encode_outputs(outputs(file=np.arange(3.0)), NPY, max_decoded_bytes=MiB)))
    np.testing.assert_array_equal(single, np.arange(3.0))


def test_a_json_answer_too_large_to_build_is_refused():
    big = outputs(y=np.zeros((1000, 4), np.float32))
    assert encode_outputs(big, JSON, max_decoded_bytes=4000 * 80).startswith(b'{"outputs":{"y":[[0.0,')
    with pytest.raises(TooLargeError, match=r"4000 values.*ask for application/x-npz"):
        encode_outputs(big, JSON, max_decoded_bytes=4000 * 80 - 1)
    assert zipfile.is_zipfile(io.BytesIO(encode_outputs(big, NPZ, max_decoded_bytes=1)))


def test_a_json_answer_over_max_json_values_is_refused_before_encoding():
    big = outputs(y=np.zeros((1000, 4), np.float32), z=np.zeros(1, np.float32))
    assert encode_outputs(big, JSON, max_decoded_bytes=MiB, max_json_values=4001).startswith(b'{"outputs":')
    words = r"the outputs hold 4001 values, over max_json_values=4000.*ask for application/x-npz"
    with pytest.raises(TooLargeError, match=words):
        encode_outputs(big, JSON, max_decoded_bytes=MiB, max_json_values=4000)
    answer = encode_outputs(big, NPZ, max_decoded_bytes=MiB, max_json_values=1)
    assert np.load(io.BytesIO(answer))["y"].shape == (1000, 4)
