"""An aioinfer model as a Ray Serve deployment: each replica is a Ray actor (a process, on any node of
the cluster) that loads its own ``AsyncModel`` and awaits it; Ray Serve routes requests to the
replicas and adds or removes them with the load.

- The model is compiled in the replica's ``async def __init__`` (Ray Serve awaits it before the
  replica takes traffic) and closed in ``async def __del__``, which Ray Serve awaits when it stops a
  replica, after the requests in flight have finished.
- Over Ray Serve's HTTP proxy: ``POST /`` with JSON ``{"inputs": ...}`` (as ``aioinfer serve``'s
  ``/v1/infer``: an array, a list by input index or an object by input name) answers
  ``{"outputs": {name: array}, "replica": id}``; aioinfer's errors answer 4xx/503/504 with a JSON
  ``{"error", "message"}`` (``examples/shared.py``), a body over ``MAX_BODY_BYTES`` 413.
- From Python, through a ``DeploymentHandle``: ``await handle.infer.remote(x)`` returns
  ``{"outputs": {name: numpy array}, "replica": id}`` (the arrays travel in Ray's object store).

Needs the ``ray`` extra (``pip install ".[ray]"``, which brings ``ray[serve]``). From the repository's
root, on one machine:

    serve run examples.ray_serve_app:build model=model.xml                 # 2 replicas
    serve run examples.ray_serve_app:build model=model.xml autoscale=true  # 1 to 4, by load
    curl -s -X POST localhost:8000/ -H 'content-type: application/json' -d '{"inputs": [[1, 2, 3, 4]]}'

On a cluster (README, "Scaling out"): ``ray start --head`` on one machine, ``ray start
--address=HEAD:6379`` on the others, the model at the same path on every node (shared storage or
the image), and ``serve run --address=ray://HEAD:10001 ...`` or ``RAY_ADDRESS=HEAD:6379``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import aioinfer

try:
    from ray import serve
    from ray.serve import Application
    from starlette.requests import Request
    from starlette.responses import JSONResponse
except ModuleNotFoundError as exc:  # say which extra to install
    raise aioinfer.MissingExtraError("ray", exc.name or "ray", "the Ray Serve example") from None

if not __package__:  # run as a script: import the examples as a package, from the repository's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.shared import error_answer

log = logging.getLogger("ray.serve")  # Ray Serve writes this logger to each replica's log file

MAX_BODY_BYTES = 16 * 2**20  # the largest HTTP body a replica reads; 413 beyond
# requests a replica is sent at once; beyond them Ray Serve queues at the caller's router
MAX_ONGOING_REQUESTS = 64
# Ray Serve's autoscaler: replicas are added while each has more than target_ongoing_requests
# requests (running and waiting in the replica), removed when they have fewer, within min..max
AUTOSCALING: dict[str, Any] = {
    "min_replicas": 1,
    "max_replicas": 4,
    "target_ongoing_requests": 32,
    "upscale_delay_s": 5,
    "downscale_delay_s": 60,
}


@serve.deployment(
    num_replicas=2, max_ongoing_requests=MAX_ONGOING_REQUESTS, ray_actor_options={"num_cpus": 1}
)
class AioInferDeployment:
    """One replica: an ``AsyncModel`` loaded from ``model`` (a path every node can read) with
    :func:`aioinfer.load`'s ``options`` (``device``, ``config``, ``num_requests``, ``max_queue``...)."""

    # Ray Serve awaits an async constructor (type checkers want __init__ to be sync)
    async def __init__(self, model: str, options: dict[str, Any] | None = None) -> None:  # type: ignore[misc]
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.model = await aioinfer.load(model, **(options or {}))
        log.info("replica %s (pid %d): %s ready", self.replica, os.getpid(), model)

    async def infer(self, inputs: Any) -> dict[str, Any]:
        """The model's outputs for ``inputs`` (what ``AsyncModel.infer`` takes) by output name, and
        this replica's id. Raises what ``AsyncModel.infer`` raises (``InputError``, ``QueueFull``...)."""
        outputs = await self.model.infer(inputs)
        return {"outputs": outputs.to_dict(), "replica": self.replica}

    async def __call__(self, request: Request) -> JSONResponse:
        """HTTP: JSON ``{"inputs": ...}`` in, ``{"outputs": {name: nested lists}, "replica": id}`` out."""
        body = await _bounded_body(request)
        if body is None:
            return _error(413, "TooLarge", f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return _error(400, "DecodeError", f"the body is not valid JSON: {exc}")
        if not isinstance(payload, dict) or "inputs" not in payload:
            return _error(400, "DecodeError", 'expected a JSON object {"inputs": ...}')
        try:
            answer = await self.infer(payload["inputs"])
        except aioinfer.AioInferError as exc:
            status, content, headers = error_answer(exc)
            return JSONResponse(content, status_code=status, headers=headers)
        outputs = {name: array.tolist() for name, array in answer["outputs"].items()}
        return JSONResponse({"outputs": outputs, "replica": self.replica})

    async def __del__(self) -> None:
        """Ray Serve awaits this when it stops the replica, once its requests have finished."""
        await self.model.aclose()
        log.info("replica %s: model closed", self.replica)


async def _bounded_body(request: Request) -> bytes | None:
    """The request's body, or None as soon as it is over ``MAX_BODY_BYTES`` (never read beyond)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def application(
    model: str,
    *,
    replicas: int = 2,
    autoscaling: dict[str, Any] | None = None,
    num_cpus: float = 1.0,
    **options: Any,
) -> Application:
    """The deployment bound to ``model``: ``replicas`` replicas, or as many as ``autoscaling`` (a
    Ray Serve ``autoscaling_config`` such as :data:`AUTOSCALING`) decides; ``num_cpus`` Ray CPUs
    reserved by each; ``options`` go to :func:`aioinfer.load` in every replica."""
    settings: dict[str, Any] = {"ray_actor_options": {"num_cpus": num_cpus}}
    if autoscaling:  # Ray Serve wants num_replicas "auto" beside an autoscaling_config
        settings |= {"num_replicas": "auto", "autoscaling_config": autoscaling}
    else:
        settings["num_replicas"] = replicas
    deployment = AioInferDeployment.options(**settings)  # type: ignore[attr-defined]
    return deployment.bind(model, options)  # type: ignore[no-any-return]


def build(args: dict[str, str]) -> Application:
    """``serve run examples.ray_serve_app:build model=PATH [replicas=N] [autoscale=true]
    [device=CPU] [num_cpus=1]``: the application, from ``serve run``'s ``key=value`` arguments."""
    if "model" not in args:
        raise ValueError("expected model=PATH (a model file every node can read)")
    return application(
        args["model"],
        replicas=int(args.get("replicas", "2")),
        autoscaling=AUTOSCALING if args.get("autoscale", "").lower() in ("1", "true", "yes") else None,
        num_cpus=float(args.get("num_cpus", "1")),
        device=args.get("device", "AUTO"),
    )


if __name__ == "__main__":  # python examples/ray_serve_app.py model.xml: a local Ray, until Ctrl-C
    serve.run(build({"model": sys.argv[1]}), blocking=True)
