"""Serving a model or a task from an ASGI server, or mounted in your own Starlette/FastAPI app.

Routes of :func:`create_app`:

* ``POST /v1/infer``: tensors in, outputs out. The body is JSON ``{"inputs": ...}`` (an array, a list
  by input index, or an object by input name), a ``.npy`` array (``application/x-npy``) or a ``.npz``
  archive by input name (``application/x-npz``). The answer is JSON ``{"outputs": {name: array}}``,
  or ``.npz``/``.npy`` when the ``Accept`` header asks for it.
* ``POST /v1/predict``: an encoded image (JPEG/PNG bytes, or a multipart form with the file ``image``)
  to the task's prediction as JSON.
* ``GET /v1/info``; ``GET /v1/settings`` and ``PATCH /v1/settings`` (a JSON object) for a task.
* ``GET /health/live``; ``GET /health/ready`` (200 once every model is compiled and its batching
  decided, else 503; each model's status under ``models``).
* ``GET /metrics``: Prometheus text: requests, their latency, queue depths, batch sizes, the latency
  of each model's stages and the event loop's lag (``GET /v1/info`` has its figures under ``loop``).
* The Open Inference Protocol (KServe v2) for every model by name: ``GET /v2``, ``/v2/health/live``,
  ``/v2/health/ready``, ``/v2/models/{name}[/versions/1][/ready]``, ``POST
  /v2/models/{name}[/versions/1]/infer`` (JSON and binary tensors; errors ``{"error": ...}``). With a
  mapping ``{name: model_or_task}`` the app serves several models, ``/v1`` the first.

Errors answer JSON ``{"error": ..., "message": ...}``: 400 undecodable body, 404 no task, 408 body not
received within ``body_timeout``, 413 body too large or declaring more than ``max_decoded_bytes`` or
``max_pixels``, or JSON of more than ``max_json_values`` values (either way), 415 unsupported
content type or image format, 422 inputs or settings that do not fit (the message says what was
expected), 503 queue full, not ready or shutting down (with ``Retry-After``), 504 timeout.

Under your own uvicorn, ``uvicorn.run(app, http=http_protocol())`` bounds the time a client may
take to send a request's headers and the connections open at once, as ``aioinfer serve`` does
(uvicorn alone bounds neither).

Needs the ``serve`` extra (``pip install "aioinfer[serve]"``): importing this module without it
raises :class:`aioinfer.MissingExtraError` saying so.
"""

from ._batcher import Batcher
from ._install import require

require("serve")  # first: without the extra, an error naming the pip command, not starlette's
from ._app import create_app  # noqa: E402
from ._server import http_protocol  # noqa: E402

__all__ = ["Batcher", "create_app", "http_protocol"]
