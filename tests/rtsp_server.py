"""An RTSP/H.264 camera for the live-stream tests: GStreamer's RTSP server streaming a video file,
from its first frame for each client, at its own frame rate (x264, zero latency, a key frame a
second). Run by the system Python that has ``gi`` (python3-gi, gir1.2-gst-rtsp-server-1.0):

    python3 tests/rtsp_server.py PORT VIDEO

prints ``ready`` once it listens on rtsp://127.0.0.1:PORT/stream and serves until killed."""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = (
    "( filesrc location={video} ! decodebin ! videoconvert ! video/x-raw,format=I420 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! rtph264pay name=pay0 pt=96 )"
)


def main(port: int, video: str) -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH.format(video=video))
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
