"""Tensors in and out of request bodies: JSON, ``.npy`` and ``.npz``.

What a body decodes to is bounded before it is decoded: the arrays' sizes come from their headers
(each ``.npz`` member's own ``.npy`` header, read from the zip stream), their sum is checked against
``max_decoded_bytes``, and exactly that many bytes are then read, so neither a compression bomb nor
a header that lies about its size can make the server allocate more. JSON is bounded by its values,
counted from its separators before it is parsed: at most ``max_json_values`` (parsing or building
JSON is one call that holds the GIL, so every other request waits for it), and what Python needs to
hold them within ``max_decoded_bytes``; a JSON answer by the same bounds. Errors are
:class:`DecodeError` (400), :class:`UnsupportedFormatError` (415) and :class:`TooLargeError` (413),
with messages that say what is accepted.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np

from ._errors import AioInferError, DecodeError, TooLargeError, UnsupportedFormatError
from ._outputs import Outputs

NPY, NPZ, JSON = "application/x-npy", "application/x-npz", "application/json"
OCTET_STREAM = "application/octet-stream"
# (de)coding more than this many bytes runs on a worker thread: JSON costs far more per byte
OFF_LOOP_BYTES = {JSON: 64 * 1024, NPY: 4 * 2**20, NPZ: 1 * 2**20}
# the most a JSON value costs CPython while parsing: an empty dict (64 bytes) and a pointer to it
JSON_VALUE_BYTES = 80
# create_app's default max_json_values: room for a 512x512 one-channel image as JSON (262,144
# numbers, ~262,700 values with its lists). JSON costs ~0.45 µs a value to parse, holding the GIL
MAX_JSON_VALUES = 300_000
TENSORS_INSTEAD = f"send large tensors as {NPY} or {NPZ}"
MAX_MEMBERS = 1024  # .npz members; zipfile reads every central directory entry up front
_CHUNK = 2**20  # member data is read in chunks of this size into its preallocated array
_NPY_HEADER_MAX = 65536  # numpy refuses .npy headers over 10,000 bytes (max_header_size)
_HEADER_READERS: dict[tuple[int, int], Callable[..., Any]] = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
_ARRAY_KINDS = "biufc"  # bool, integers, floats, complex: what a model might take
# numpy parses a .npy header's Python literal with tokenize and ast, which raise these on garbage
_HEADER_FAILURES = (ValueError, TypeError, SyntaxError, RecursionError, tokenize.TokenError)
_ZIP_FAILURES = (
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,  # flags zipfile does not support (strong encryption, patched data)
    RuntimeError,  # an encrypted member
)


def media_type(header: str) -> str:
    """The media type of a Content-Type or Accept item, without parameters, lower case."""
    return header.split(";", 1)[0].strip().lower()


def body_kind(content_type: str, body: bytes | bytearray) -> str:
    """:data:`JSON`, :data:`NPY` or :data:`NPZ` for a body sent as ``content_type`` (JSON when it is
    empty). ``.npy``, ``.npz`` and ``application/octet-stream`` are told apart by their first bytes;
    any other type raises :class:`UnsupportedFormatError`."""
    kind = media_type(content_type) or JSON
    if kind == JSON:
        return JSON
    if kind in (NPY, NPZ, OCTET_STREAM):
        return NPZ if body[:2] == b"PK" else NPY
    raise UnsupportedFormatError(f"unsupported Content-Type {kind!r}: send {JSON}, {NPY} or {NPZ}")


def decode_on_loop(body: bytes | bytearray, kind: str) -> bool:
    """Whether decoding ``body`` is cheap enough for the event loop: JSON and ``.npy`` cost what
    their size says, and it is small; what a zip holds is only known once read, so never ``.npz``."""
    return kind != NPZ and len(body) <= OFF_LOOP_BYTES[kind]


def decode_tensors(
    body: bytes | bytearray, kind: str, *, max_decoded_bytes: int, max_json_values: int = MAX_JSON_VALUES
) -> Any:
    """What a ``body`` of ``kind`` holds, for an input adapter: the ``"inputs"`` of a JSON object
    (of at most ``max_json_values`` values), the array of a ``.npy`` file, or the arrays of a
    ``.npz`` archive by name.

    Arrays are writable and never decode to more than ``max_decoded_bytes`` in all.
    """
    if kind == JSON:
        payload = decode_json(body, max_decoded_bytes=max_decoded_bytes, max_json_values=max_json_values)
        if not isinstance(payload, dict) or "inputs" not in payload:
            raise DecodeError(
                'send a JSON object {"inputs": ...}: an array, a list by input index, '
                "or an object by input name"
            )
        return payload["inputs"]
    if kind == NPY:
        return read_npy(body, max_decoded_bytes=max_decoded_bytes)
    return read_npz(body, max_decoded_bytes=max_decoded_bytes)


def decode_json(
    body: bytes | bytearray,
    *,
    max_decoded_bytes: int,
    max_json_values: int = MAX_JSON_VALUES,
    instead: str = TENSORS_INSTEAD,
) -> Any:
    """The JSON value of ``body``, parsed only if the values it may hold, counted from its
    separators (an upper bound: keys and containers count too), pass :func:`check_json_values`
    (``instead``: what the refusal tells the client to send)."""
    check_json_values(
        json_values(body),
        "the JSON body holds up to",
        instead,
        max_json_values=max_json_values,
        max_decoded_bytes=max_decoded_bytes,
    )
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"the body is not valid JSON: {exc}") from None


def json_values(body: bytes | bytearray) -> int:
    """An upper bound on the values JSON ``body`` holds, counted from its separators without
    parsing it (keys and containers count too)."""
    return 1 + sum(body.count(c) for c in (b",", b":", b"[", b"{"))


def check_json_values(
    values: int, what: str, instead: str, *, max_json_values: int, max_decoded_bytes: int
) -> None:
    """:class:`TooLargeError` (``what`` ``values`` values ...; ``instead``) unless ``values`` JSON
    values are at most ``max_json_values`` (JSON is parsed or built in one call that holds the GIL:
    every other request waits for it) and take at most ``max_decoded_bytes`` in Python
    (:data:`JSON_VALUE_BYTES` each)."""
    if values > max_json_values:
        raise TooLargeError(
            f"{what} {values} values, over max_json_values={max_json_values}, the most this server "
            f"(de)codes as JSON (it holds up every other request meanwhile): {instead}"
        )
    if values * JSON_VALUE_BYTES > max_decoded_bytes:
        raise TooLargeError(
            f"{what} {values} values, which may take {values * JSON_VALUE_BYTES} bytes in Python, over "
            f"max_decoded_bytes={max_decoded_bytes}: {instead}"
        )


def read_npy(body: bytes | bytearray, *, max_decoded_bytes: int) -> np.ndarray:
    """The array of a ``.npy`` file, a view of ``body`` (writable if ``body`` is a bytearray): its
    header must declare at most ``max_decoded_bytes`` and exactly the data that follows it."""
    stream = io.BytesIO(bytes(body[:_NPY_HEADER_MAX]))  # the header only: no copy of the data
    shape, fortran, dtype = _npy_header(stream, "the .npy body")
    nbytes = _checked_size(shape, dtype, max_decoded_bytes, max_decoded_bytes, "the .npy body")
    offset = stream.tell()
    if len(body) - offset != nbytes:
        raise DecodeError(
            f"the .npy body holds {len(body) - offset} bytes of data; its header declares {nbytes} "
            f"({dtype}{list(shape)})"
        )
    flat = np.frombuffer(body, dtype, math.prod(shape), offset)
    return _shaped(flat, shape, fortran)


def read_npz(body: bytes | bytearray, *, max_decoded_bytes: int) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` archive by name (``.npy`` stripped), stored or deflated as
    ``numpy.savez`` and ``savez_compressed`` write them; together at most ``max_decoded_bytes``,
    each read to exactly the size its own header declares."""
    if body.count(b"PK\x01\x02") > MAX_MEMBERS:
        raise TooLargeError(f"the .npz archive has more than {MAX_MEMBERS} members")
    with _zip_errors("the body"):
        archive = zipfile.ZipFile(io.BytesIO(body))  # (a copy if ``body`` is a bytearray)
    arrays: dict[str, np.ndarray] = {}
    budget = max_decoded_bytes
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        if name in arrays:
            raise DecodeError(f"the .npz archive has two members named {info.filename!r}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UnsupportedFormatError(
                f".npz member {info.filename!r} is compressed with method {info.compress_type}: "
                "only stored or deflated members (as numpy.savez and savez_compressed write) are accepted"
            )
        with _zip_errors(f"member {info.filename!r}"), archive.open(info) as stream:
            arrays[name] = _read_member(stream, f".npz member {info.filename!r}", budget, max_decoded_bytes)
        budget -= arrays[name].nbytes
    return arrays


def response_format(accept: str, n_outputs: int) -> str:
    """``.npz`` or ``.npy`` (one output only) when the ``Accept`` header asks for it, else JSON."""
    accepted = {media_type(part) for part in accept.split(",")}
    if NPZ in accepted:
        return NPZ
    return NPY if NPY in accepted and n_outputs == 1 else JSON


def encode_on_loop(outputs: Outputs, fmt: str) -> bool:
    """Whether encoding ``outputs`` as ``fmt`` is cheap enough for the event loop."""
    return sum(a.nbytes for a in outputs) <= OFF_LOOP_BYTES[fmt]


def encode_outputs(
    outputs: Outputs, fmt: str, *, max_decoded_bytes: int, max_json_values: int = MAX_JSON_VALUES
) -> bytes:
    """``outputs`` as the body of a ``fmt`` answer: JSON ``{"outputs": {name: array}}`` (refused
    with :class:`TooLargeError` unless its values pass :func:`check_json_values`), one ``.npy``
    array, or a ``.npz`` archive by output name, whatever the names are."""
    if fmt == JSON:
        check_json_values(
            sum(a.size for a in outputs),
            "the outputs hold",
            f"ask for {NPZ} (Accept), or {NPY} for one output, or send fewer rows",
            max_json_values=max_json_values,
            max_decoded_bytes=max_decoded_bytes,
        )
        return dump_json({"outputs": {name: a.tolist() for name, a in outputs.to_dict().items()}})
    buffer = io.BytesIO()
    if fmt == NPY:
        np.lib.format.write_array(buffer, np.asanyarray(outputs[0]), allow_pickle=False)
    else:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for name, array in outputs.to_dict().items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


def dump_json(content: Any) -> bytes:
    """Compact JSON bytes (NaN and Infinity written as such: outputs may hold them)."""
    return json.dumps(content, separators=(",", ":")).encode()


# -- .npy headers and .npz members ----------------------------------------------------------------


def _npy_header(stream: IO[bytes], what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from the ``.npy`` header at ``stream``'s position; only
    plain numeric dtypes (never objects, which would need pickle)."""
    try:
        read_header = _HEADER_READERS.get(np.lib.format.read_magic(stream), _unknown_version)
        shape, fortran, dtype = read_header(stream)  # type: ignore[no-untyped-call]
    except _HEADER_FAILURES as exc:
        raise DecodeError(f"{what} is not a .npy array: {exc}") from None
    if dtype.hasobject:
        raise DecodeError(f"{what} holds Python objects (dtype {dtype}), which are not accepted")
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise DecodeError(f"{what} has dtype {dtype}: send bool, integer, float or complex arrays")
    if any(d < 0 for d in shape):
        raise DecodeError(f"{what} declares a negative dimension: {list(shape)}")
    return shape, fortran, dtype


def _unknown_version(stream: IO[bytes]) -> Any:
    raise ValueError("its format version is not one of 1.0 and 2.0")


def _checked_size(shape: tuple[int, ...], dtype: np.dtype, budget: int, limit: int, what: str) -> int:
    """The bytes ``shape`` x ``dtype`` takes, if within ``budget`` (what is left of ``limit``);
    else :class:`TooLargeError`."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > budget:
        raise TooLargeError(
            f"{what} declares {dtype}{list(shape)}, {nbytes} bytes, over the {budget} bytes left of "
            f"the {limit} this server decodes per request (max_decoded_bytes)"
        )
    return nbytes


def _read_member(stream: IO[bytes], what: str, budget: int, limit: int) -> np.ndarray:
    """The array of one ``.npz`` member: its header's size checked against ``budget``, then exactly
    that many bytes read into a new array (shorter or longer data is refused)."""
    shape, fortran, dtype = _npy_header(stream, what)
    nbytes = _checked_size(shape, dtype, budget, limit, what)
    flat = np.empty(math.prod(shape), dtype)
    raw = flat.view(np.uint8)
    filled = 0
    while filled < nbytes:
        chunk = stream.read(min(_CHUNK, nbytes - filled))
        if not chunk:
            raise DecodeError(f"{what} holds {filled} bytes of data; its header declares {nbytes}")
        raw[filled : filled + len(chunk)] = np.frombuffer(chunk, np.uint8)
        filled += len(chunk)
    if stream.read(1):  # also the end of the member, where zipfile checks its CRC
        raise DecodeError(f"{what} holds more data than the {nbytes} bytes its header declares")
    return _shaped(flat, shape, fortran)


def _shaped(flat: np.ndarray, shape: tuple[int, ...], fortran: bool) -> np.ndarray:
    return flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)


@contextlib.contextmanager
def _zip_errors(what: str) -> Iterator[None]:
    """zipfile's and the decompressors' failures on a malformed archive, as a :class:`DecodeError`."""
    try:
        yield
    except AioInferError:
        raise
    except _ZIP_FAILURES as exc:
        raise DecodeError(f"the body is not a valid .npz archive: {what}: {exc}") from None
