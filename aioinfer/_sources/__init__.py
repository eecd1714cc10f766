"""Frame sources: video files, cameras, streams, image folders and in-memory sequences as async
iterators of :class:`Frame`, decoded on a worker thread so the event loop never waits on OpenCV.

The package, a module a job. Where a frame is read, one reader a kind (each a ``_reader.Reader``):
``_video`` (a video file), ``_capture`` (a camera or a stream, reconnecting), ``_sequence`` (arrays,
or image files that ``_image_files`` finds and reads) and ``_iterables`` (sync and async iterables).
``_pacing`` plays a video at its frame rate; ``_selection`` picks the frames (start, count, step,
direction); ``_buffer`` holds them between the reader's thread and the event loop; ``_pump`` runs a
reader (its thread, or the task of an async source); ``_frame_source`` is the async iterator the
caller gets; ``_open`` dispatches a source to its reader.
"""

from ._buffer import Drop
from ._frame import Frame, SourceStats
from ._frame_source import FrameSource, source_name
from ._image_files import IMAGE_SUFFIXES
from ._open import is_live, open_source
from ._pump import guard_source, source_failure
from ._selection import Direction

__all__ = [
    "IMAGE_SUFFIXES",
    "Direction",
    "Drop",
    "Frame",
    "FrameSource",
    "SourceStats",
    "guard_source",
    "is_live",
    "open_source",
    "source_failure",
    "source_name",
]
