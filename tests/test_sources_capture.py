"""Where a frame is read from a camera or a stream URL: what is live, reconnection with back-off on
dead URLs and on a real MJPEG stream over HTTP on 127.0.0.1, and giving up while waiting."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading

import cv2
import numpy as np
import pytest
from frames import collect, source_threads
from models import frame_index, indexed_frame

import aioinfer
from aioinfer._sources import is_live, open_source

pytestmark = pytest.mark.timeout(60)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OneShotMjpeg(http.server.BaseHTTPRequestHandler):
    """An MJPEG-over-HTTP camera that sends 5 frames, hangs up, then answers 503 to reconnections."""

    def do_GET(self):
        if self.server.served:
            self.send_error(503)
            return
        self.server.served = 1
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for i in range(5):
            jpeg = cv2.imencode(".jpg", indexed_frame(i))[1].tobytes()
            head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            self.wfile.write(head.encode() + jpeg + b"\r\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def mjpeg_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OneShotMjpeg)
    server.served = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cam.mjpg"
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
    assert source.stats().reconnects == 2
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
    assert source.stats().reconnects == 3
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
    assert source.stats().reconnects <= 1


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
