"""Where a frame is read from image files: one file, a folder or a glob, natural-sorted, listed when
opened; hidden files skipped; a bad or oversized file fails only its own frame."""

from __future__ import annotations

import cv2
import hostile
import pytest
from frames import EMPTY, IMAGES, collect, collect_with_errors, faulty_folder, source_threads
from models import frame_index, indexed_frame

import aioinfer
from aioinfer._sources import open_source

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]


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


async def test_unreadable_image_in_folder_raises_at_its_position(tmp_path):
    cv2.imwrite(str(tmp_path / "a0.png"), indexed_frame(7))
    (tmp_path / "a1.png").write_bytes(b"broken png")
    got = []
    with pytest.raises(aioinfer.SourceError, match=r"a1\.png"):
        async with open_source(tmp_path) as frames:
            async for f in frames:
                got.append(frame_index(f.image))
    assert got == [7]


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
