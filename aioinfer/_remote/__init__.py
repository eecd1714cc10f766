"""Remote models: ``aioinfer.load(URL)`` for a model on any Open Inference Protocol server
(aioinfer's own, Triton, OpenVINO Model Server, KServe, MLServer), over HTTP
(``http(s)://host:port[/prefix]/v2/models/NAME[/versions/V]``) or gRPC
(``grpc(s)://host:port/NAME[/versions/V]``), with the face of a local model."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from .. import _bridge
from .._checks import check_optional, check_positive
from .._codecs import MAX_JSON_VALUES
from .._errors import EventLoopError
from .._install import require
from .._model import AsyncModel, _Loading
from ._model import Bounds, RemoteModel, Transport

DEFAULT_REQUESTS = 64  # requests in flight at once, by default
ANSWER_TIMEOUT = 300.0  # seconds a call without timeout= waits for its answer, by default
MAX_ANSWER_BYTES = 256 * 2**20  # as a server's max_decoded_bytes
# config= of a URL, and its defaults
OPTIONS: dict[str, Any] = {
    "answer_timeout": ANSWER_TIMEOUT,
    "binary_data": True,
    "connect_timeout": 10.0,
    "headers": {},
    "max_answer_bytes": MAX_ANSWER_BYTES,
    "max_json_values": MAX_JSON_VALUES,
}
_HTTP_PATH = re.compile(r"^(?P<prefix>.*)/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/?$")
_GRPC_PATH = re.compile(r"^/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/?$")


def load_url(
    url: str, *, num_requests: int | None, max_queue: int | None, config: Mapping[str, Any] | None
) -> _Loading[AsyncModel]:
    """What ``aioinfer.load(url)`` returns for a URL: the model's metadata read from its server
    when awaited. ``config``: the client's options ``binary_data`` (HTTP: ``False`` sends and
    asks JSON tensors), ``connect_timeout`` (seconds, also the most the metadata may take),
    ``answer_timeout`` (seconds a call that passes no ``timeout=`` waits for its answer, queue
    included; ``None``: for ever), ``headers`` (HTTP headers, gRPC metadata), and the bounds on
    what the server may make this process allocate: ``max_answer_bytes`` (one answer, as declared
    and as received) and ``max_json_values`` (values of a JSON answer or typed gRPC contents,
    converted one by one holding the GIL). Raises :class:`ValueError` at once for a URL of another
    form, an unknown option, a bound that is not a positive integer or a timeout that is not a
    positive number."""
    options = _options(config)
    scheme = url.partition("://")[0].lower()
    if scheme not in ("http", "https", "grpc", "grpcs"):
        raise ValueError(
            f"unknown scheme in {url!r}: a remote model's URL is http://, https://, grpc:// or grpcs://"
        )
    parts = urllib.parse.urlsplit(url)
    match = (_HTTP_PATH if scheme.startswith("http") else _GRPC_PATH).match(parts.path)
    if match is None or not parts.netloc:
        raise ValueError(
            f"{url!r} names no model: expected http(s)://host:port/v2/models/NAME[/versions/V] "
            "or grpc://host:port/NAME[/versions/V]"
        )
    n = num_requests or DEFAULT_REQUESTS

    async def make() -> AsyncModel:
        transport = _transport(url, scheme, parts.netloc, match, options)
        try:
            metadata = await transport.metadata()
            return RemoteModel(transport, metadata, num_requests=n, max_queue=max_queue, config=options)
        except BaseException:
            await transport.aclose()
            raise

    return _Loading(make)


def _options(config: Mapping[str, Any] | None) -> dict[str, Any]:
    unknown = set(config or {}) - set(OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} in config of a remote model: it takes {sorted(OPTIONS)}"
        )
    options = {**OPTIONS, **(config or {})}
    for bound in ("max_answer_bytes", "max_json_values"):
        check_positive(bound, options[bound], integer=True)
    check_positive("connect_timeout", options["connect_timeout"])
    check_optional("answer_timeout", options["answer_timeout"])
    return options


def _transport(
    url: str, scheme: str, netloc: str, match: re.Match[str], options: dict[str, Any]
) -> Transport:
    """The transport of ``url``, on the running loop (gRPC: asyncio only)."""
    require("remote")
    headers, timeout = options["headers"], float(options["connect_timeout"])
    bounds = Bounds(options["max_answer_bytes"], options["max_json_values"])
    if scheme.startswith("http"):
        from ._http import HttpTransport

        return HttpTransport(
            url,
            backend=_bridge.current().backend,
            binary=bool(options["binary_data"]),
            headers=headers,
            connect_timeout=timeout,
            bounds=bounds,
        )
    if _bridge.current().backend != "asyncio":
        raise EventLoopError(f"{url}: grpc.aio runs on asyncio only; under trio, use the model's http:// URL")
    from ._grpc import GrpcTransport

    name = urllib.parse.unquote(match["name"])
    return GrpcTransport(
        url,
        netloc,
        name,
        match["version"] or "",
        secure=scheme == "grpcs",
        headers=headers,
        connect_timeout=timeout,
        bounds=bounds,
    )
