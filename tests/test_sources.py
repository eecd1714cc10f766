"""Frame sources over real video files written by OpenCV, image folders, iterables and dead URLs."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading

import cv2
import hostile
import numpy as np
import pytest
from frames import EMPTY, IMAGES, faulty_folder
from models import frame_index, indexed_frame, write_indexed_video

import aioinfer
from aioinfer._sources import FrameSource, is_live, open_source

N = 40
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def video(tmp_path):
    return write_indexed_video(tmp_path / "clip.avi", N, fps=20.0)


async def collect(source: FrameSource) -> list[aioinfer._sources.Frame]:
    async with source as frames:
        return [f async for f in frames]


def source_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("aioinfer-source")]


async def test_video_frames_arrive_once_in_order_with_index_and_timestamp(video):
    async with open_source(video) as frames:
        assert len(frames) == N
        assert frames.fps == 20.0
        got = [f async for f in frames]
    assert [f.index for f in got] == list(range(N))
    assert [frame_index(f.image) for f in got] == list(range(N))
    assert [f.timestamp_ms for f in got] == [i * 50.0 for i in range(N)]
    assert got[0].image.shape == (48, 64, 3) and got[0].image.dtype == np.uint8
    assert not source_threads()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"start": 5, "count": 10}, list(range(5, 15))),
        ({"start": 3, "count": 5, "step": 4}, [3, 7, 11, 15, 19]),
        ({"step": 7}, list(range(0, N, 7))),
        ({"start": 30, "step": 3}, [30, 33, 36, 39]),
        ({"start": 38, "count": 10}, [38, 39]),
        ({"start": 100}, []),
        ({"count": 0}, []),
        ({"direction": "backward"}, list(range(N - 1, -1, -1))),
        ({"start": 20, "count": 4, "direction": "backward"}, [20, 19, 18, 17]),
        ({"start": 25, "step": 10, "direction": "backward"}, [25, 15, 5]),
        ({"start": 500, "count": 2, "direction": "backward"}, [N - 1, N - 2]),
    ],
)
async def test_start_count_step_direction_pick_exactly_those_frames(video, kwargs, expected):
    source = open_source(video, **kwargs)
    got = await collect(source)
    assert [f.index for f in got] == expected
    assert [frame_index(f.image) for f in got] == expected
    assert len(source) == len(expected)


async def test_image_folder_glob_and_single_image_are_natural_sorted(tmp_path):
    for i in (0, 2, 10, 1):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), indexed_frame(i))
    (tmp_path / "notes.txt").write_text("not an image")
    folder = await collect(open_source(tmp_path))
    assert [frame_index(f.image) for f in folder] == [0, 1, 2, 10]
    assert [f.index for f in folder] == [0, 1, 2, 3] and folder[0].timestamp_ms is None
    pattern = await collect(open_source(str(tmp_path / "img1*.png"), direction="backward"))
    assert [frame_index(f.image) for f in pattern] == [10, 1]
    single = await collect(open_source(tmp_path / "img2.png"))
    assert [frame_index(f.image) for f in single] == [2]


async def test_in_memory_sequence_and_iterables_select_by_position():
    arrays = [np.full((2, 2), i, np.uint8) for i in range(10)]

    async def agen():
        for a in arrays:
            yield a

    expected = [2, 5, 8]
    for items in (arrays, iter(arrays), (a for a in arrays), agen()):
        got = await collect(open_source(items, start=2, step=3))
        assert [f.index for f in got] == expected
        assert [int(f.image[0, 0]) for f in got] == expected
        assert all(f.timestamp_ms is None for f in got)
    assert len(open_source(arrays, count=4)) == 4
    backward = await collect(open_source(arrays, start=4, count=2, direction="backward"))
    assert [f.index for f in backward] == [4, 3]


async def test_live_iterable_is_stamped_with_time_since_opening():
    got = await collect(open_source(iter([np.zeros(3)] * 3), live=True))
    stamps = [f.timestamp_ms for f in got]
    assert all(s is not None and s >= 0 for s in stamps) and stamps == sorted(stamps)


def test_bad_arguments_are_rejected_at_once(video):
    with pytest.raises(ValueError, match="step"):
        open_source(video, step=0)
    with pytest.raises(ValueError, match="direction"):
        open_source(video, direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="drop"):
        open_source(video, drop="newest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="known length"):
        open_source(iter([]), direction="backward")
    with pytest.raises(ValueError, match="known length"):
        open_source(0, direction="backward")
    with pytest.raises(TypeError, match="single image"):
        open_source(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(TypeError, match="not known"):
        len(open_source(video))  # a video's length is known once it is opened


async def test_missing_file_raises_source_error_naming_it(tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(aioinfer.SourceError, match=r"missing\.mp4"):
        await collect(open_source(missing))
    with pytest.raises(aioinfer.SourceError, match=r"no images found.*\*\.jpg"):
        await collect(open_source(str(tmp_path / "*.jpg")))


async def test_file_that_is_not_a_video_raises_source_error(tmp_path):
    fake = tmp_path / "fake.avi"
    fake.write_bytes(b"this is not a video" * 100)
    with pytest.raises(aioinfer.SourceError, match=r"fake\.avi.*as a video"):
        await collect(open_source(fake))
    assert not source_threads()


async def test_truncated_video_raises_source_error(video, tmp_path):
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    with pytest.raises(aioinfer.SourceError, match=r"cut\.avi"):
        await collect(open_source(cut))
    assert not source_threads()


async def test_unreadable_image_in_folder_raises_at_its_position(tmp_path):
    cv2.imwrite(str(tmp_path / "a0.png"), indexed_frame(7))
    (tmp_path / "a1.png").write_bytes(b"broken png")
    got = []
    with pytest.raises(aioinfer.SourceError, match=r"a1\.png"):
        async with open_source(tmp_path) as frames:
            async for f in frames:
                got.append(frame_index(f.image))
    assert got == [7]


async def collect_with_errors(source: FrameSource) -> list[aioinfer._sources.Frame | aioinfer.FrameError]:
    """Every frame, and in its place the FrameError of each frame that could not be read."""
    got: list[aioinfer._sources.Frame | aioinfer.FrameError] = []
    async with source as frames:
        while True:
            try:
                got.append(await frames.__anext__())
            except aioinfer.FrameError as exc:
                got.append(exc)
            except StopAsyncIteration:
                return got


@pytest.mark.parametrize("kind", ["folder", "glob", "list of paths"])
async def test_a_bad_image_file_fails_only_its_own_frame(tmp_path, kind):
    paths = faulty_folder(tmp_path / "frames")
    source = open_source(
        {"folder": paths[0].parent, "glob": str(paths[0].parent / "*.jpg"), "list of paths": paths}[kind]
    )
    got = await collect_with_errors(source)
    assert [item.index for item in got] == list(range(IMAGES))  # ._junk.png is not a frame
    error = got[EMPTY]
    assert isinstance(error, aioinfer.FrameError) and isinstance(error, aioinfer.SourceError)
    assert f"img{EMPTY}.jpg" in str(error) and "empty" in str(error)
    assert [frame_index(f.image) for f in got if f is not error] == [i for i in range(IMAGES) if i != EMPTY]
    stats = source.stats()
    assert (stats.read, stats.failed, stats.delivered, stats.dropped) == (IMAGES - 1, 1, IMAGES, 0)
    assert not source_threads()


async def test_an_image_file_declaring_a_huge_size_fails_alone_before_decoding(tmp_path):
    """A 30000x30000 PNG of a few KB (it would decode to 2.7 GB) in a folder: refused from its header,
    its frame fails, the others come."""
    cv2.imwrite(str(tmp_path / "img0.png"), indexed_frame(0))
    (tmp_path / "img1.png").write_bytes(hostile.png_bomb(30_000, 30_000))
    cv2.imwrite(str(tmp_path / "img2.png"), indexed_frame(2))
    got = await collect_with_errors(open_source(tmp_path))
    assert isinstance(got[1], aioinfer.FrameError)
    assert "img1.png" in str(got[1]) and "30000x30000" in str(got[1])
    assert [frame_index(got[i].image) for i in (0, 2)] == [0, 2]


async def test_folder_listing_skips_hidden_files_and_subfolders(tmp_path):
    cv2.imwrite(str(tmp_path / "b.png"), indexed_frame(2))
    cv2.imwrite(str(tmp_path / ".a.png"), indexed_frame(1))  # a hidden image is not a frame either
    (tmp_path / "._b.png").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "c.png").mkdir()
    got = await collect(open_source(tmp_path))
    assert [frame_index(f.image) for f in got] == [2]


async def test_source_whose_iter_raises_cancelled_error_fails_with_source_error():
    class Camera:
        def __iter__(self):
            raise asyncio.CancelledError  # on the opening thread: anyio would re-raise it to us as is

    with pytest.raises(aioinfer.SourceError, match=r"Camera.*CancelledError although nobody cancelled"):
        await collect(open_source(Camera()))
    assert asyncio.current_task().cancelling() == 0
    assert not source_threads()


async def test_generator_failing_when_closed_still_ends_the_stream():
    def frames():
        try:
            for i in range(10):
                yield np.full((2, 2), i, np.uint8)
        finally:
            raise RuntimeError("camera driver crashed on release")

    got = []

    async def consume():
        async with open_source(frames(), count=3) as source:
            async for f in source:
                got.append(f.index)

    with pytest.raises(RuntimeError, match="crashed on release"):
        await asyncio.wait_for(consume(), 10)  # the end it waits for used to never come
    assert got == [0, 1, 2]
    assert not source_threads()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
async def test_url_that_cannot_open_is_retried_with_backoff_then_fails(scheme):
    url = f"{scheme}://127.0.0.1:{closed_port()}/stream"
    source = open_source(url, reconnect=2, reconnect_delay=0.001)
    with pytest.raises(aioinfer.SourceError, match=rf"{url}.*after 3 attempts"):
        await collect(source)
    assert source.stats().reconnects == 2
    with pytest.raises(TypeError, match="not known"):
        len(source)


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


async def test_drop_oldest_keeps_only_the_newest_frames_and_counts_the_rest():
    produced = threading.Event()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def camera():  # a live source that never waits for its consumer
        for i in range(100):
            yield np.full((4, 4, 3), i, np.uint8)
        loop.call_soon_threadsafe(done.set)
        produced.wait()

    async with open_source(camera(), drop="oldest", buffer=2, live=True) as frames:
        await done.wait()  # everything was produced while nobody consumed
        produced.set()
        got = [f.index async for f in frames]
        stats = frames.stats()
    assert got == [98, 99]
    assert (stats.read, stats.delivered, stats.dropped, stats.buffered) == (100, 2, 98, 0)


async def test_without_drop_the_reader_waits_for_the_consumer():
    produced = []
    loop = asyncio.get_running_loop()
    blocked = asyncio.Event()

    def items():
        for i in range(20):
            produced.append(i)
            if i == 2:  # the 3rd frame cannot enter a full buffer of 2 until one is consumed
                loop.call_soon_threadsafe(blocked.set)
            yield np.zeros(1)

    async with open_source(items(), buffer=2) as frames:
        await blocked.wait()
        assert frames.stats().read == 2 and len(produced) == 3
        got = [f.index async for f in frames]
    assert got == list(range(20)) and frames.stats().dropped == 0


async def test_stop_ends_iteration_releases_capture_and_joins_thread(video):
    async with open_source(video) as frames:
        got = []
        async for f in frames:
            got.append(f.index)
            if f.index == 4:
                frames.stop()
        assert got == list(range(5))
        reader = frames._reader
        assert not frames._thread.is_alive()
        assert not reader._cap.isOpened()
    assert not source_threads()


@pytest.mark.parametrize("how", ["break", "cancel"])
async def test_break_or_cancel_then_exit_releases_everything(video, how):
    source = open_source(video)

    async def consume():
        async with source as frames:
            async for f in frames:
                if f.index == 3:
                    if how == "break":
                        break
                    asyncio.current_task().cancel()
                    await asyncio.sleep(0)

    task = asyncio.ensure_future(consume())
    await asyncio.wait([task])
    assert task.cancelled() == (how == "cancel")
    assert not source._thread.is_alive()
    assert not source._reader._cap.isOpened()
    assert not source_threads()


async def test_source_dropped_without_closing_stops_its_thread(video):
    source = open_source(video, buffer=1)
    assert (await source.__anext__()).index == 0
    thread = source._thread
    del source
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()


async def test_stop_before_opening_yields_nothing(video):
    source = open_source(video)
    source.stop()
    assert await collect(source) == []
    assert not source_threads()


async def test_aclose_before_opening_yields_nothing(video):
    source = open_source(video)
    await source.aclose()
    assert [f async for f in source] == []


async def test_live_video_file_plays_at_its_frame_rate_like_a_camera(tmp_path):
    video = write_indexed_video(tmp_path / "fast.avi", 9, fps=100.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    got = await collect(open_source(video, live=True, step=2))
    assert [f.index for f in got] == [0, 2, 4, 6, 8]
    assert [f.timestamp_ms for f in got] == [0.0, 20.0, 40.0, 60.0, 80.0]
    assert loop.time() - start >= 0.08  # never delivered ahead of the video's own clock


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


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"start": 1, "count": 2, "step": 5}, [1, 6]),
        ({"step": 30, "count": 1}, [0]),
        ({"start": 3, "count": 1, "step": 30}, [3]),
        ({"start": 4, "count": 0}, []),
        ({"count": 0, "step": 7}, []),
        ({"start": 95, "count": 3, "step": 4}, [95, 99]),
    ],
)
async def test_stream_selection_pulls_nothing_after_the_last_selected_item(kwargs, expected):
    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield np.full((2, 2), i, np.uint8)

    got = await collect(open_source(items(), **kwargs))
    assert [f.index for f in got] == expected
    assert [int(f.image[0, 0]) for f in got] == expected
    last = expected[-1] if expected else kwargs.get("start", 0) - 1
    assert pulled == list(range(last + 1))  # a camera decodes no frame it does not deliver


async def test_image_folder_is_listed_when_opened_not_when_made(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    source = open_source(folder)  # empty yet: listing it now would fail
    with pytest.raises(TypeError, match="before it is opened"):
        len(source)
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.png"), indexed_frame(i))
    async with source as frames:
        assert len(frames) == 3
        assert [frame_index(f.image) async for f in frames] == [0, 1, 2]
    empty = open_source(str(tmp_path / "none*.png"))  # no error until it is opened, like a video
    with pytest.raises(aioinfer.SourceError, match="no images found"):
        await empty.open()
    assert not source_threads()


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


def test_is_live_means_a_camera_index_or_a_stream_url(tmp_path):
    assert is_live(0) and is_live(3)
    assert is_live("rtsp://camera/stream") and is_live("http://host/cam.mjpg")
    assert not is_live("clip.mp4") and not is_live(str(tmp_path)) and not is_live(tmp_path)
    assert not is_live([np.zeros(2)])
