"""Frames out of a real video: the simulator's sample MP4 (64x64, 24 frames), and one this
test encodes with PyAV whose first and last frames differ in colour."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from PIL import Image, ImageStat

from genbatch.frames import VideoUnreadable, last_frame, poster

SAMPLE = Path(__file__).parent.parent / "genbatch" / "simulator" / "assets" / "sample.mp4"


def _video(path: Path, colours: list[tuple[int, int, int]]) -> Path:
    """A 64x48 MP4 with one frame per colour."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for colour in colours:
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 48), colour))  # type: ignore[no-untyped-call]
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _mean(png_or_jpeg: bytes) -> tuple[float, ...]:
    return tuple(ImageStat.Stat(Image.open(io.BytesIO(png_or_jpeg)).convert("RGB")).mean)


def test_last_frame_is_the_last_picture_and_poster_the_first(tmp_path: Path) -> None:
    video = _video(tmp_path / "shot.mp4", [(250, 10, 10)] * 3 + [(10, 10, 250)] * 3)
    last = last_frame(video)
    assert last.startswith(b"\x89PNG")
    red, _, blue = _mean(last)
    assert blue > 200 and red < 60
    red, _, blue = _mean(poster(video))
    assert red > 200 and blue < 60


def test_poster_is_a_small_jpeg_keeping_the_aspect_ratio(tmp_path: Path) -> None:
    image = Image.open(io.BytesIO(poster(SAMPLE, width=32)))
    assert image.format == "JPEG"
    assert image.size == (32, 32)
    assert Image.open(io.BytesIO(last_frame(SAMPLE))).size == (64, 64)


def test_a_file_that_is_not_a_video_is_one_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-video.mp4"
    bogus.write_bytes(b"<html>expired</html>")
    with pytest.raises(VideoUnreadable, match=r"not-a-video\.mp4: cannot decode"):
        last_frame(bogus)
    with pytest.raises(VideoUnreadable, match=r"not-a-video\.mp4"):
        poster(bogus)
