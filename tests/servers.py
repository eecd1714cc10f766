"""A real uvicorn server on a free loopback port, in this process or as an ``aioinfer serve``
subprocess, for the tests that talk HTTP, and the bodies they send."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import uvicorn
from prometheus_client.parser import text_string_to_metric_families


def npy(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a .npy file."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def text_png(text: str) -> bytes:
    """A PNG of one line of black ``text`` on white, 320x48: what PP-OCR reads back exactly."""
    image = np.full((48, 320, 3), 255, np.uint8)
    cv2.putText(image, text, (8, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    return cv2.imencode(".png", image)[1].tobytes()


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app`` under uvicorn on a free loopback port; yield a client bound to it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)  # connections wait in the backlog until uvicorn accepts: no start-up race
    # idle connections are kept for the whole test: with uvicorn's default of 5 s, a loaded box
    # could see the server close an idle keep-alive connection just as the client reused it
    # (httpx.ReadError on a request the server never read)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_keep_alive=300)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        async with httpx.AsyncClient(
            base_url=url, timeout=60, limits=httpx.Limits(max_connections=128)
        ) as client:
            yield client
    finally:
        server.should_exit = True
        await task
        sock.close()


class Serving:
    """``async with Serving(*args) as server``: ``aioinfer serve *args`` as a subprocess on CPU,
    exact f32, a free port, entered once it listens; killed at exit if it still runs. Its log is
    read all along (a full pipe would block the server), into ``log``. With ``command``, that
    command instead (any that runs uvicorn), in ``cwd`` with the environment ``env``."""

    def __init__(
        self,
        *args: str | Path,
        command: list[str] | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = args
        self.command = command
        self.cwd = cwd
        self.env = env
        self.proc: asyncio.subprocess.Process  # started by __aenter__
        self.log: list[str] = []
        self.url = ""
        self._logging: asyncio.Task[None] | None = None
        self._grew = asyncio.Event()

    async def __aenter__(self) -> Serving:
        serve = [sys.executable, "-m", "aioinfer", "serve", *map(str, self.args), "--device", "CPU"]
        serve += ["--port", "0", "--config", "INFERENCE_PRECISION_HINT=f32"]
        self.proc = await asyncio.create_subprocess_exec(
            *(self.command or serve), stderr=asyncio.subprocess.PIPE, cwd=self.cwd, env=self.env
        )
        self._logging = asyncio.create_task(self._read_log())
        try:
            running = await self.wait_for_line("Uvicorn running on")
        except BaseException:
            await self.__aexit__()
            raise
        self.url = re.search(r"http://\S+", running).group(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self._logging

    async def _read_log(self) -> None:
        while line := (await self.proc.stderr.readline()).decode():
            self.log.append(line)
            self._grew.set()
        self._grew.set()  # the end of the log

    async def wait_for_line(self, text: str) -> str:
        """The first line of the log containing ``text``, once it is there (fails if the log ends
        without one)."""
        while True:
            for line in self.log:
                if text in line:
                    return line
            if self._logging.done():
                raise AssertionError(f"the server exited without logging {text!r}:\n{''.join(self.log)}")
            self._grew.clear()
            await self._grew.wait()

    async def finish(self) -> int:
        """The exit code, once the server has exited and its whole log is read."""
        await self._logging
        return await self.proc.wait()

    async def stalled(
        self, path: str, length: int, sent: bytes, content_type: str = "application/x-npy"
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw connection that POSTs to ``path`` a body of ``length`` bytes but sends only ``sent``
        of it and then nothing more: read the server's answer from the reader."""
        host, port = self.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        writer.write(f"{head}Content-Length: {length}\r\n\r\n".encode() + sent)
        await writer.drain()
        return reader, writer

    def memory_mb(self, field: str = "VmHWM") -> int:
        """The server process's peak (``VmHWM``) or current (``VmRSS``) resident memory, in MB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) // 1024


def in_flight(metrics_text: str) -> float:
    (family,) = [
        f for f in text_string_to_metric_families(metrics_text) if f.name == "aioinfer_requests_in_flight"
    ]
    return sum(sample.value for sample in family.samples)  # over every model label
