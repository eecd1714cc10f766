"""Where a frame is read from a camera or a stream URL: what is live, reconnection with back-off on
dead URLs and on a real MJPEG stream over HTTP on 127.0.0.1, and giving up while waiting: during a
back-off, a hung connect (a server that accepts and never answers) or a hung read. The same against
real stream servers (ffmpeg, GStreamer): test_live_streams.py."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading

import anyio
import cv2
import numpy as np
import openvino as ov
import pytest
from frames import collect, source_threads
from live import HungServer, consume, give_up, threads_end
from models import frame_index, frame_probe, indexed_frame

import aioinfer
from aioinfer._cli import main
from aioinfer._sources import is_live, open_source

pytestmark = pytest.mark.timeout(60)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FRAMES = 20  # frames the hung MJPEG camera sends before it stops sending anything


class OneShotMjpeg(http.server.BaseHTTPRequestHandler):
    """An MJPEG-over-HTTP camera that sends 5 frames, hangs up, then answers 503 to reconnections."""

    frames = 5

    def do_GET(self):
        if self.server.served:
            self.send_error(503)
            return
        self.server.served = 1
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for i in range(self.frames):
            jpeg = cv2.imencode(".jpg", indexed_frame(i))[1].tobytes()
            head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            self.wfile.write(head.encode() + jpeg + b"\r\n")
        self.wfile.flush()

    def log_message(self, *args):
        pass


class HungMjpeg(OneShotMjpeg):
    """An MJPEG camera that sends FRAMES frames, then nothing, holding the connection until its
    server's ``hung_up`` event is set."""

    frames = FRAMES

    def do_GET(self):
        super().do_GET()
        self.server.hung_up.wait(30)


class FlakyMjpeg(OneShotMjpeg):
    """An MJPEG camera that sends 20 frames and hangs up, and refuses every second connection (503):
    each outage takes two attempts, the second one after a back-off."""

    frames = 20

    def do_GET(self):
        self.server.connections += 1
        self.server.served = self.server.connections % 2 == 0  # served: the next one answers 503
        super().do_GET()


def serve(handler: type[http.server.BaseHTTPRequestHandler], **state):
    """A threading HTTP server of ``handler`` on 127.0.0.1 with ``state`` set on it, serving."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for name, value in state.items():
        setattr(server, name, value)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def flaky_mjpeg():
    server = serve(FlakyMjpeg, connections=0, served=0)
    yield f"http://127.0.0.1:{server.server_address[1]}/cam.mjpg"
    server.shutdown()
    server.server_close()


@pytest.fixture
def mjpeg_url():
    server = serve(OneShotMjpeg, served=0)
    yield f"http://127.0.0.1:{server.server_address[1]}/cam.mjpg"
    server.shutdown()
    server.server_close()


@pytest.fixture
def hung_mjpeg():
    hung_up = threading.Event()
    server = serve(HungMjpeg, served=0, hung_up=hung_up, hang_up=hung_up.set)
    yield f"http://127.0.0.1:{server.server_address[1]}/cam.mjpg", server
    server.hang_up()
    server.shutdown()
    server.server_close()


def test_is_live_means_a_camera_index_or_a_stream_url(tmp_path):
    assert is_live(0) and is_live(3)
    assert is_live("rtsp://camera/stream") and is_live("http://host/cam.mjpg")
    assert not is_live("clip.mp4") and not is_live(str(tmp_path)) and not is_live(tmp_path)
    assert not is_live([np.zeros(2)])


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
async def test_url_that_cannot_open_is_retried_with_backoff_then_fails(scheme):
    url = f"{scheme}://127.0.0.1:{closed_port()}/stream"
    source = open_source(url, reconnect=2, reconnect_delay=0.001)
    with pytest.raises(aioinfer.SourceError, match=rf"{url}.*after 3 attempts"):
        await collect(source)
    stats = source.stats()
    assert (stats.reconnects, stats.reconnect_attempts) == (0, 2)  # retries, no outage survived
    with pytest.raises(TypeError, match="not known"):
        len(source)


async def test_stream_that_fails_reconnects_then_raises_after_its_frames(mjpeg_url):
    source = open_source(mjpeg_url, reconnect=2, reconnect_delay=0.001)
    got = []
    with pytest.raises(aioinfer.SourceError, match=rf"{mjpeg_url}.*could not be reopened after 3 attempts"):
        async with source as frames:
            async for f in frames:
                got.append((f.index, frame_index(f.image)))
                assert f.timestamp_ms is not None and f.timestamp_ms >= 0
    assert got == [(i, i) for i in range(5)]
    stats = source.stats()
    assert (stats.reconnects, stats.reconnect_attempts) == (0, 3)  # an outage not survived
    assert not source_threads()


async def test_camera_that_does_not_exist_raises_source_error():
    with pytest.raises(aioinfer.SourceError, match="cannot open camera 99"):
        await collect(open_source(99))


async def test_giving_up_during_reconnection_back_off_does_not_wait_for_it():
    source = open_source(f"http://127.0.0.1:{closed_port()}/x.mjpg", reconnect=3, reconnect_delay=30)
    reader, returned = source._reader, threading.Event()
    reader_open = reader.open

    def open_then_signal(stopped):
        try:
            reader_open(stopped)
        finally:
            returned.set()

    reader.open = open_then_signal
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(collect(source), 0.2)  # would otherwise wait 30 + 60 + 120 s
    assert source._buffer.stopped.is_set()
    # the opening thread itself gives up at once, not only the consumer (which does not wait for it)
    assert await asyncio.to_thread(returned.wait, 5)
    assert source.stats().reconnect_attempts == 0 and source.stats().reconnects == 0


@pytest.mark.parametrize("how", ["stop", "aclose"])
async def test_source_stopped_before_opening_never_opens_its_reader(how):
    source = open_source(f"http://127.0.0.1:{closed_port()}/x.mjpg", reconnect=3, reconnect_delay=30)
    opened = []
    source._reader.open = opened.append
    if how == "stop":
        source.stop()
    else:
        await source.aclose()
    assert await collect(source) == []
    assert opened == []
    assert source.stats().read == 0 and not source_threads()


@pytest.fixture
def hung_server():
    server = HungServer()
    yield server
    server.close()


@pytest.mark.parametrize("how", ["stop", "aclose", "cancel"])
@pytest.mark.parametrize("scheme", ["http", "rtsp"])
async def test_giving_up_during_a_hung_connect_returns_without_waiting_for_it(hung_server, scheme, how):
    # the server accepts and never answers: OpenCV's open would block for its 10 s timeout
    source = open_source(f"{scheme}://127.0.0.1:{hung_server.port}/stream", timeout=10)
    consumer = asyncio.ensure_future(consume(source))
    assert await anyio.to_thread.run_sync(hung_server.accepted.wait, 10)
    with anyio.fail_after(5):  # a hang guard below the open timeout, not a timing assertion
        await give_up(how, source, consumer)
    assert consumer.cancelled() or consumer.result() == []
    thread = source._thread
    assert thread.is_alive()  # still in OpenCV's open: left to end on its own
    assert source.stats().read == 0
    hung_server.close()  # OpenCV's open fails at once; the thread releases what it holds and ends
    assert await threads_end()


@pytest.mark.anyio
async def test_a_deadline_during_a_hung_connect_returns_and_the_thread_ends(hung_server):
    source = open_source(f"http://127.0.0.1:{hung_server.port}/stream", timeout=10)

    async def deadline_once_connecting(scope: anyio.CancelScope) -> None:
        assert await anyio.to_thread.run_sync(hung_server.accepted.wait, 10)
        scope.deadline = anyio.current_time()  # it passes while the source waits for OpenCV's open

    with anyio.fail_after(5):  # a hang guard below the open timeout, not a timing assertion
        with anyio.move_on_after(30) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(deadline_once_connecting, scope)
                await collect(source)
    assert scope.cancelled_caught and source.stats().read == 0
    assert source._thread.is_alive()  # still in OpenCV's open: left to end on its own
    hung_server.close()  # OpenCV's open fails at once; the thread releases what it holds and ends
    assert await threads_end()


async def test_breaking_out_during_a_hung_read_returns_and_the_thread_ends(hung_mjpeg):
    url, server = hung_mjpeg
    source = open_source(url, timeout=10)
    with anyio.fail_after(5):  # the last read hangs: the server sent its frames, then nothing
        got = await consume(source, until=FRAMES - 2)
    assert [frame_index(f.image) for f in got] == list(range(FRAMES - 2))
    server.hang_up()
    assert await threads_end()


def test_run_shows_outages_survived_and_attempts_apart(flaky_mjpeg, tmp_path, capsys):
    model = tmp_path / "probe.xml"
    ov.save_model(frame_probe(), model)
    assert main(["run", str(model), flaky_mjpeg, "--count", "50", "--drop", "none"]) == 0
    err = capsys.readouterr().err
    # two outages survived (after frames 19 and 39), each at its second attempt
    assert "50 frames in" in err and "2 reconnects (4 attempts)" in err  # the closing line
    assert "reconnects=2" in err and "attempts=4" in err  # the progress bar
