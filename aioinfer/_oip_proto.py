"""The Open Inference Protocol's gRPC messages, shared by the server (:mod:`aioinfer._grpc`) and the
client (:mod:`aioinfer._remote._grpc`): the message classes read from aioinfer's serialized
descriptor into a pool of their own, and the typed ``contents`` field of each datatype."""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ._oip_descriptor import FILE_DESCRIPTOR_SET

SERVICE = "inference.GRPCInferenceService"
# the repeated field of InferTensorContents that carries each datatype (FP16 only as raw bytes)
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def typed_values(tensors: Iterable[Any]) -> int:
    """The values the typed ``contents`` of ``tensors`` (InferInputTensor, InferOutputTensor) hold
    in all, counted without converting any."""
    fields = set(CONTENTS.values())  # several datatypes share a field (int_contents, ...)
    return sum(len(getattr(t.contents, field)) for t in tensors for field in fields)


@functools.cache
def messages() -> dict[str, Any]:
    """The protocol's message classes by name (``ModelInferRequest``, ...), from a private pool."""
    files = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(FILE_DESCRIPTOR_SET))
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    package = pool.FindFileByName("oip.proto")
    return {name: message_factory.GetMessageClass(d) for name, d in package.message_types_by_name.items()}
