"""Live sources against real stream servers on 127.0.0.1, read as a user would: an HTTP MJPEG stream
(``ffmpeg -f mpjpeg -listen 1``), an RTSP/H.264 stream (GStreamer's RTSP server,
tests/rtsp_server.py) and a UDP MPEG-TS/H.264 stream (ffmpeg), each playing a video whose frames
encode their index. Frames in order; a model slower than the stream with ``drop="oldest"`` (age
bounded, every drop counted); the server killed and restarted (one reconnection), killed for good
(SourceError); giving up during a back-off or a hung reconnection (prompt, no thread left).

ffmpeg and GStreamer come from Debian packages (.ci/run installs them); a test skips, saying which
is missing, only when one cannot be had. ``pytest tests/test_live_streams.py -s`` prints the figures."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import cv2
import numpy as np
import pytest
from live import HungServer, free_port, give_up, threads_end, wait_for
from models import EXACT, decode_index, frame_index, frame_probe, indexed_frame

import aioinfer
from aioinfer._sources import open_source

pytestmark = pytest.mark.timeout(120)

FPS = 25
SECONDS = 10  # the video's length: 250 frames, indexes 0..249 (an indexed frame holds 0..255)
SIZE = (120, 160)  # height, width
RESULTS = 30  # results of the slow model, once the stream runs
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")
GST_CHECK = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
    "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
    "needed = ('x264enc', 'rtph264pay', 'avidemux', 'jpegdec');"
    "missing = [e for e in needed if not Gst.ElementFactory.find(e)];"
    "assert not missing, 'GStreamer elements missing: ' + ', '.join(missing)"
)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MJPG .avi of indexed frames 0..249 at 25 fps (160x120)."""
    path = tmp_path_factory.mktemp("live") / "indexed.avi"
    height, width = SIZE
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (width, height))
    for i in range(FPS * SECONDS):
        writer.write(indexed_frame(i, height, width))
    writer.release()
    return path


def ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found is None:
        pytest.skip("ffmpeg not found on PATH (Debian package ffmpeg; .ci/run installs it)")
    return found


def gst_python() -> str:
    """A Python that runs GStreamer's RTSP server (the system one: python3-gi is a Debian package)."""
    reasons = []
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        try:
            check = subprocess.run([python, "-c", GST_CHECK], capture_output=True, text=True, timeout=30)
        except OSError as exc:
            reasons.append(f"{python}: {exc}")
            continue
        if check.returncode == 0:
            return python
        reasons.append(f"{python}: {(check.stderr.strip().splitlines() or ['failed'])[-1]}")
    pytest.skip(
        "GStreamer's RTSP server cannot be run (Debian packages python3-gi, gir1.2-gst-rtsp-server-1.0, "
        "gstreamer1.0-plugins-base/good/ugly; .ci/run installs them): " + "; ".join(reasons)
    )


def listening(port: int) -> bool:
    """Whether a TCP socket listens on 127.0.0.1:``port`` (read from /proc: no connection made,
    which a one-client ``ffmpeg -listen 1`` would take for its client)."""
    wanted = f":{port:04X} "
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            if any(wanted in line and line.split()[3] == "0A" for line in f.readlines()[1:]):
                return True
    return False


class StreamServer:
    """A stream server process (``kind``: mjpeg, rtsp or udp) playing ``video`` on ``port``; the
    same server can be killed and started again on the same port."""

    def __init__(self, kind: str, video: Path, log: Path) -> None:
        self.kind = kind
        udp = kind == "udp"
        self.port = free_port(socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        self.url = {
            "mjpeg": f"http://127.0.0.1:{self.port}/",
            "rtsp": f"rtsp://127.0.0.1:{self.port}/stream",
            "udp": f"udp://127.0.0.1:{self.port}",
        }[kind]
        self._command = self._build(video)
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    def _build(self, video: Path) -> list[str]:
        if self.kind == "rtsp":
            return [gst_python(), str(RTSP_SERVER), str(self.port), str(video)]
        play = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video)]
        if self.kind == "mjpeg":
            return [*play, "-c:v", "mjpeg", "-q:v", "3", "-f", "mpjpeg", "-listen", "1", self.url]
        h264 = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(FPS)]
        return [*play, *h264, "-f", "mpegts", f"{self.url}?pkt_size=1316"]

    async def start(self) -> float:
        """Start the server; returns (``time.monotonic()``) once it listens (UDP: at once)."""
        with open(self._log, "ab") as log:
            self._process = subprocess.Popen(self._command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if self.kind != "udp":
            await wait_for(lambda: listening(self.port) or self._process.poll() is not None)
            assert self._process.poll() is None, f"{self._command} exited: {self._log.read_text()}"
        return time.monotonic()

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()


@pytest.fixture(params=["mjpeg", "rtsp", "udp"])
async def server(request: pytest.FixtureRequest, video: Path, tmp_path: Path):
    started = StreamServer(request.param, video, tmp_path / "server.log")
    await started.start()
    yield started
    started.kill()


def restartable(server: StreamServer) -> None:
    """A UDP sender killed and restarted is not an outage a receiver can see (no connection):
    only a pause; the reconnection tests run on the TCP servers."""
    if server.kind == "udp":
        pytest.skip("UDP has no connection to lose: reconnection is tested on mjpeg and rtsp")


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


async def test_frames_arrive_in_order_with_their_index(server):
    async with open_source(server.url, reconnect=10, reconnect_delay=0.1) as frames:
        got = []
        async for frame in frames:
            got.append((frame.index, frame_index(frame.image), frame.timestamp_ms))
            if len(got) == 30:
                break
    indexes, encoded, stamps = zip(*got, strict=True)
    assert list(indexes) == list(range(30))  # frames read, counted from the first
    assert all(a < b for a, b in itertools.pairwise(encoded)), encoded  # decoded: strictly increasing
    assert all(a <= b for a, b in itertools.pairwise(stamps)) and stamps[0] >= 0
    assert await threads_end()


@pytest.mark.parametrize("server", ["mjpeg", "rtsp"], indirect=True)
async def test_a_model_slower_than_the_stream_drops_the_oldest_and_counts_every_drop(server):
    # ~110 ms a frame on 2 cores, one request: 3-4 x slower than the stream's 25 fps
    async with aioinfer.load(frame_probe(layers=6, channels=64), config=EXACT, num_requests=1) as model:
        source = open_source(server.url, drop="oldest", buffer=2, reconnect=10, reconnect_delay=0.1)
        ages, encoded, done = [], [], []
        async with source:
            results = model.map(source, max_in_flight=1)
            async for r in results:
                done.append(time.monotonic())
                ages.append(done[-1] * 1000 - source._reader._t0 * 1000 - r.timestamp_ms)  # since read
                encoded.append(decode_index(r.output["means"]))
                if len(ages) == RESULTS:
                    source.stop()  # the frames in flight still come; those buffered are dropped
        stats = source.stats()
    inferred = results.stats().inferred
    lags = behind_live(done, encoded)
    print(
        f"\n{server.kind}: result age p95 {p95(ages):.0f} ms since read, {p95(lags):.0f} ms behind the "
        f"stream's clock; {stats.dropped} dropped of {stats.read} read, {inferred} inferred"
    )
    assert inferred >= RESULTS and stats.dropped > 0
    assert stats.read == inferred + stats.dropped  # every frame read was inferred or counted dropped
    assert all(a < b for a, b in itertools.pairwise(encoded))  # the newest frames, in order
    assert p95(ages) < 1500
    # bounded (~0.2-0.8 s here): without dropping, frames wait in the socket, and this grows by
    # ~70 ms a result (p95 2.5-3 s)
    assert p95(lags) < 1500


def behind_live(done: list[float], encoded: list[int]) -> list[float]:
    """How far each result (done at ``done``, of the frame ``encoded``) is behind the stream, in ms:
    by the stream's own clock (frame i is sent i/25 s after frame 0), relative to the result that
    was least behind (the stream's start and the client's probing delay are unknown)."""
    behind = [t - index / FPS for t, index in zip(done, encoded, strict=True)]
    return [(b - min(behind)) * 1000 for b in behind]


async def consume_into(source: aioinfer.FrameSource, got: list[tuple[float, int]]) -> None:
    async with source as frames:
        async for frame in frames:
            got.append((time.monotonic(), frame_index(frame.image)))


@pytest.mark.parametrize("server", ["mjpeg", "rtsp"], indirect=True)
async def test_server_killed_and_restarted_frames_resume_after_one_reconnection(server):
    # rtsp over UDP: a dead server is seen by the read timeout (RTP just stops)
    source = open_source(server.url, reconnect=6, reconnect_delay=0.25, timeout=2)
    got: list[tuple[float, int]] = []
    consumer = asyncio.ensure_future(consume_into(source, got))
    await wait_for(lambda: len(got) >= 40)
    server.kill()
    await wait_for(lambda: source.stats().reconnect_attempts >= 1)  # the outage is seen
    before = len(got)
    back = await server.start()
    await wait_for(lambda: len(got) >= before + 30)
    source.stop()
    await asyncio.wait([consumer])
    assert consumer.exception() is None
    after = [(t, index) for t, index in got[before:] if index < 30]  # the new connection's frames
    assert after and all(a < b for (_, a), (_, b) in itertools.pairwise(after))
    stats = source.stats()
    assert stats.reconnects == 1 and stats.reconnect_attempts >= 1
    print(
        f"\n{server.kind}: first frame {after[0][0] - back:.2f} s after the server listens again, "
        f"{stats.reconnect_attempts} attempts"
    )
    assert await threads_end()


@pytest.mark.parametrize("server", ["mjpeg"], indirect=True)
async def test_server_killed_for_good_raises_source_error_after_the_attempts(server):
    source = open_source(server.url, reconnect=2, reconnect_delay=0.05)
    got: list[tuple[float, int]] = []
    consumer = asyncio.ensure_future(consume_into(source, got))
    await wait_for(lambda: len(got) >= 10)
    server.kill()
    with anyio.fail_after(20):
        await asyncio.wait([consumer])
    with pytest.raises(aioinfer.SourceError, match=r"could not be reopened after 3 attempts"):
        consumer.result()
    stats = source.stats()
    assert (stats.reconnects, stats.reconnect_attempts) == (0, 3)
    assert await threads_end()


async def parked(source: aioinfer.FrameSource, resume: asyncio.Event, got: list[int], breaks: bool) -> None:
    """Consume ``source``; after 10 frames wait for ``resume``, then break out if ``breaks``, else
    go on reading."""
    async with source as frames:
        async for frame in frames:
            got.append(frame.index)
            if len(got) == 10:
                await resume.wait()
                if breaks:
                    break


@pytest.mark.parametrize("how", ["stop", "break", "cancel"])
@pytest.mark.parametrize("server", ["mjpeg"], indirect=True)
async def test_giving_up_during_a_back_off_is_prompt_and_leaves_no_thread(server, how):
    source = open_source(server.url, drop="oldest", reconnect=3, reconnect_delay=30)
    resume, got = asyncio.Event(), []
    consumer = asyncio.ensure_future(parked(source, resume, got, how == "break"))
    await wait_for(lambda: len(got) == 10)
    server.kill()
    await wait_for(lambda: source.stats().reconnect_attempts == 1)  # refused at once: 30 s to wait
    if how != "break":
        resume.set()  # a stop or a cancel finds the consumer waiting for a frame
        await wait_for(lambda: source.stats().buffered == 0)  # drops under load are fine
    with anyio.fail_after(5):  # a hang guard (the back-off is 30 s), not a timing assertion
        await give_up(how, source, consumer, resume)
    assert not source._thread.is_alive()  # the back-off was cut short: the thread ended
    assert source.stats().reconnects == 0


@pytest.mark.parametrize("how", ["stop", "break", "cancel"])
@pytest.mark.parametrize("server", ["mjpeg"], indirect=True)
async def test_giving_up_during_a_hung_reconnection_is_prompt_and_the_thread_ends(server, how):
    source = open_source(server.url, drop="oldest", reconnect=3, reconnect_delay=0.05, timeout=10)
    resume, got = asyncio.Event(), []
    consumer = asyncio.ensure_future(parked(source, resume, got, how == "break"))
    await wait_for(lambda: len(got) == 10)
    server.kill()
    hung = HungServer(server.port)  # on the camera's port: accepts the reconnection, never answers
    try:
        assert await anyio.to_thread.run_sync(hung.accepted.wait, 10)
        if how != "break":
            resume.set()
            await wait_for(lambda: source.stats().buffered == 0)  # drops under load are fine
        with anyio.fail_after(5):  # a hang guard below the 10 s open timeout
            await give_up(how, source, consumer, resume)
        assert source._thread.is_alive()  # still in OpenCV's open: left to end on its own
    finally:
        hung.close()  # the open fails at once; the thread releases what it holds and ends
    assert await threads_end()
