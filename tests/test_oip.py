"""Open Inference Protocol tensors decoded from JSON: values are taken as they are or refused, never
converted silently."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from aioinfer import DecodeError
from aioinfer._inputs import TensorInfo
from aioinfer._oip import decode_request

EXPECTED = {
    "ids": TensorInfo(name="ids", names=("ids",), shape=(-1, 3), element_type="i32", dtype=np.dtype(np.int32))
}


def decode(data: object, datatype: str = "INT32") -> np.ndarray:
    body = json.dumps({"inputs": [{"name": "ids", "shape": [1, 3], "datatype": datatype, "data": data}]})
    request = decode_request(bytearray(body.encode()), None, max_decoded_bytes=2**20, expected=EXPECTED)
    return request.inputs["ids"]


def test_integer_data_is_exact() -> None:
    array = decode([[1, -2, 3]])
    assert array.dtype == np.int32
    assert array.tolist() == [[1, -2, 3]]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ([1.5, 2, 3], "with a fraction"),
        ([1.0, 2, 3], "with a fraction"),
        ([True, False, True], "booleans"),
        ([1, True, 3], "booleans"),  # numpy alone reads this as [1, 1, 3]
    ],
    ids=["fraction", "float", "bool", "one-bool-among-ints"],
)
def test_integer_inputs_refuse_values_that_are_not_integers(data: list[object], words: str) -> None:
    with pytest.raises(DecodeError, match=f"INT32 data must be integers, got .*{words}"):
        decode(data)


def test_out_of_range_integers_are_refused() -> None:
    with pytest.raises(DecodeError, match="not an array of INT32"):
        decode([2**40, 0, 0])


def test_uint64_beyond_int64_is_read_exactly() -> None:
    body = json.dumps(
        {"inputs": [{"name": "big", "shape": [3], "datatype": "UINT64", "data": [2**64 - 1, 1, 2**63]}]}
    )
    expected = {"big": TensorInfo("big", ("big",), (3,), "u64", np.dtype(np.uint64))}
    request = decode_request(bytearray(body.encode()), None, max_decoded_bytes=2**20, expected=expected)
    assert request.inputs["big"].dtype == np.uint64
    assert request.inputs["big"].tolist() == [2**64 - 1, 1, 2**63]


def test_bytes_of_a_count_their_data_cannot_hold_are_refused_before_allocation() -> None:
    """A BYTES input of 2**24 elements in 8 bytes (each element takes at least its 4-byte length):
    refused before 2**24 element slots (128 MiB) are allocated, though within max_decoded_bytes."""
    header = json.dumps(
        {
            "inputs": [
                {"name": "s", "shape": [2**24], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}
            ]
        }
    ).encode()
    expected = {"s": TensorInfo("s", ("s",), (-1,), "string", np.dtype(object))}
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match=r"input 's': 8 bytes of BYTES data cannot hold the 16777216"):
            decode_request(
                bytearray(header + bytes(8)), str(len(header)), max_decoded_bytes=2**30, expected=expected
            )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20
