"""Frames out of a real video: the simulator's sample MP4 (64x64, 24 frames), and one this
test encodes with PyAV whose first and last frames differ in colour."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from PIL import Image, ImageStat

from genbatch.frames import VideoUnreadable, join, last_frame, poster

SAMPLE = Path(__file__).parent.parent / "genbatch" / "simulator" / "assets" / "sample.mp4"


def _video(path: Path, colours: list[tuple[int, int, int]], size: tuple[int, int] = (64, 48),
           ) -> Path:
    """A 64x48 (or `size`) MP4 with one frame per colour."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for colour in colours:
            frame = av.VideoFrame.from_image(Image.new("RGB", size, colour))  # type: ignore[no-untyped-call]
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


def _decoded(path: Path) -> list[Image.Image]:
    with av.open(str(path)) as container:
        return [f.to_image() for f in container.decode(video=0)]  # type: ignore[no-untyped-call]


def test_join_copies_shots_that_agree_without_re_encoding(tmp_path: Path) -> None:
    red = _video(tmp_path / "a.mp4", [(250, 10, 10)] * 4)
    blue = _video(tmp_path / "b.mp4", [(10, 10, 250)] * 5)
    joined = join([red, blue, red], tmp_path / "chains" / "root.mp4")
    assert joined.reencoded is False
    frames = _decoded(joined.path)
    assert len(frames) == joined.frames == 13
    means = [ImageStat.Stat(f.convert("RGB")).mean for f in frames]
    assert [m[0] > 200 for m in means] == [True] * 4 + [False] * 5 + [True] * 4
    with av.open(str(joined.path)) as container:  # the shots play one after another
        pts = [f.pts or 0 for f in container.decode(video=0)]
    assert pts == sorted(pts) and len(set(pts)) == 13


def test_join_re_encodes_shots_whose_parameters_differ(tmp_path: Path) -> None:
    small = _video(tmp_path / "a.mp4", [(250, 10, 10)] * 3)
    large = _video(tmp_path / "b.mp4", [(10, 10, 250)] * 2, size=(96, 64))
    joined = join([small, large], tmp_path / "joined.mp4")
    assert joined.reencoded is True
    frames = _decoded(joined.path)
    assert len(frames) == joined.frames == 5
    assert {f.size for f in frames} == {(64, 48)}  # the first shot's size
    red, _, blue = ImageStat.Stat(frames[-1].convert("RGB")).mean
    assert blue > 200 and red < 60


def test_join_of_an_unreadable_shot_names_it(tmp_path: Path) -> None:
    bogus = tmp_path / "gone.mp4"
    bogus.write_bytes(b"expired")
    with pytest.raises(VideoUnreadable, match=r"gone\.mp4"):
        join([SAMPLE, bogus], tmp_path / "x.mp4")


def _with_sound(path: Path, frames: int) -> Path:
    """An MP4 of `frames` red pictures at 8 fps with as long a silent AAC track."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=8)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("aac", rate=16000)
        sound.layout = "mono"
        for _ in range(frames):
            picture = av.VideoFrame.from_image(Image.new("RGB", (64, 48), (200, 0, 0)))  # type: ignore[no-untyped-call]
            out.mux(video.encode(picture))
        for n in range(0, 16000 * frames // 8, 1024):
            chunk = av.AudioFrame(format="fltp", layout="mono", samples=1024)
            for plane in chunk.planes:
                plane.update(bytes(plane.buffer_size))
            chunk.sample_rate, chunk.pts = 16000, n
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
        out.mux(video.encode(None))
    return path


def _samples(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(f.samples for f in container.decode(audio=0))


def test_join_by_stream_copy_keeps_the_sound(tmp_path: Path) -> None:
    shots = [_with_sound(tmp_path / f"{n}.mp4", 8) for n in range(3)]
    joined = join(shots, tmp_path / "joined.mp4")
    assert (joined.reencoded, joined.frames) == (False, 24)
    with av.open(str(joined.path)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
    each = _samples(shots[0])
    assert 3 * each <= _samples(joined.path) <= 3 * each + 3 * 2048  # + each shot's priming
