"""Frames out of stored videos, and videos joined end to end, with PyAV (FFmpeg's libraries
in a wheel from PyPI: no system ffmpeg).

A chain's next shot starts on the last frame of the shot before it (`last_frame`), and a
finished chain becomes one file (`join`: stream copy when the shots' codec parameters
match, so nothing is re-encoded; otherwise decoded and encoded once as H.264). The review
page shows a poster per video so a page of a thousand videos loads as images and plays a
video only when asked (`poster`). All read a video genbatch already stored: a
path on disk (object storage's local folder, or a download to a temporary file).

A video PyAV cannot open or that has no decodable picture is `VideoUnreadable`, one line
naming the file, never a traceback.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import av
import av.error
from PIL import Image

from genbatch.errors import GenbatchError

POSTER_WIDTH = 480  # a gallery tile; the poster keeps the video's aspect ratio
POSTER_QUALITY = 80
JOIN_CODEC: Final = "libx264"  # a re-encoded join: H.264 plays everywhere
JOIN_CRF = "18"  # visually lossless: a join should not look worse than its shots


class VideoUnreadable(GenbatchError):
    """A stored video that cannot be opened or has no picture to decode."""


def last_frame(video: Path) -> bytes:
    """The last picture of `video` as PNG bytes (lossless: it becomes the next shot's input).

    Decodes the whole stream (shots are seconds long; seeking to the end and decoding
    forward from the last keyframe would be faster on long videos, and less sure on odd
    containers)."""
    frame: av.VideoFrame | None = None
    for decoded in _frames(video):
        frame = decoded
    if frame is None:
        raise VideoUnreadable(f"{video}: the video has no frame to decode")
    return _encode_image(_image(frame), "PNG")


def poster(video: Path, width: int = POSTER_WIDTH) -> bytes:
    """The first picture of `video` as a JPEG `width` pixels wide, for a gallery tile."""
    for frame in _frames(video):
        image = _image(frame)
        if image.width > width:
            image = image.resize((width, max(1, round(image.height * width / image.width))))
        return _encode_image(image, "JPEG")
    raise VideoUnreadable(f"{video}: the video has no frame to decode")


def _frames(video: Path) -> Iterator[av.VideoFrame]:
    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise VideoUnreadable(f"{video}: no video stream in the file")
            yield from container.decode(video=0)
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoUnreadable(f"{video}: cannot decode the video ({exc})") from None


def _image(frame: av.VideoFrame) -> Image.Image:
    image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]  # untyped in PyAV
    return image


def _encode_image(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=POSTER_QUALITY)
    else:
        image.save(out, fmt)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class Joined:
    """A joined video: where it is, its frames, and whether the shots had to be re-encoded
    (codecs or parameters differ) or were copied as they are (`reencoded` False)."""

    path: Path
    frames: int
    reencoded: bool


def join(videos: Sequence[Path], dest: Path) -> Joined:
    """The `videos` end to end in one MP4 at `dest`.

    Shots whose streams agree (codec, size, pixel format, time base, codec headers: the
    shots of one chain on one model do) are remuxed, packets copied with their timestamps
    shifted, so nothing is re-encoded and audio comes along. Otherwise every picture is
    decoded and encoded once, at the first shot's size and frame rate; audio is left out
    then (its formats may differ too)."""
    if not videos:
        raise ValueError("join needs at least one video")
    shapes = [_shape(v) for v in videos]
    dest.parent.mkdir(parents=True, exist_ok=True)
    if all(shape == shapes[0] for shape in shapes):
        frames = _remux(videos, dest, audio=shapes[0][1] is not None)
        return Joined(dest, frames, reencoded=False)
    return Joined(dest, _reencode(videos, dest), reencoded=True)


def _stream_shape(stream: Any) -> tuple[Any, ...]:
    ctx = stream.codec_context
    return (ctx.name, getattr(ctx, "width", None), getattr(ctx, "height", None),
            getattr(ctx, "format", None) and ctx.format.name,
            getattr(ctx, "sample_rate", None), stream.time_base, bytes(ctx.extradata or b""))


def _shape(video: Path) -> tuple[tuple[Any, ...], tuple[Any, ...] | None]:
    """What must agree for two videos to be joined by stream copy: (video, audio or None)."""
    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise VideoUnreadable(f"{video}: no video stream in the file")
            audio = container.streams.audio
            return (_stream_shape(container.streams.video[0]),
                    _stream_shape(audio[0]) if audio else None)
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoUnreadable(f"{video}: cannot read the video ({exc})") from None


def _remux(videos: Sequence[Path], dest: Path, *, audio: bool) -> int:
    """Copy the packets of every video into `dest`, each shot's timestamps shifted to
    start where the one before ended. Returns the video frames (packets) written."""
    frames = 0
    with av.open(str(dest), "w") as out:
        with av.open(str(videos[0])) as first:
            inputs = [first.streams.video[0], *(first.streams.audio[:1] if audio else [])]
            outs = [out.add_stream_from_template(s) for s in inputs]
        ends = [0] * len(outs)  # per stream: where the next shot starts (pts)
        last_dts = [-(2**62)] * len(outs)
        for video in videos:
            with av.open(str(video)) as src:
                streams = [src.streams.video[0], *(src.streams.audio[:1] if audio else [])]
                shift: list[int | None] = [None] * len(streams)
                shot_end = list(ends)
                for packet in src.demux(streams):
                    if packet.dts is None:  # a demuxer's flush packet
                        continue
                    n = streams.index(packet.stream)
                    if shift[n] is None:
                        first_pts = packet.pts if packet.pts is not None else packet.dts
                        shift[n] = max(ends[n] - first_pts, last_dts[n] + 1 - packet.dts)
                    move = shift[n] or 0
                    packet.dts += move
                    if packet.pts is not None:
                        packet.pts += move
                        shot_end[n] = max(shot_end[n], packet.pts + (packet.duration or 0))
                    last_dts[n] = packet.dts
                    packet.stream = outs[n]
                    out.mux(packet)
                    frames += n == 0
                ends = shot_end
    return frames


def _reencode(videos: Sequence[Path], dest: Path) -> int:
    """Decode every picture of `videos` and encode them once as H.264 in `dest`."""
    frames = 0
    with av.open(str(dest), "w") as out:
        with av.open(str(videos[0])) as first:
            src = first.streams.video[0]
            rate = src.average_rate or src.guessed_rate or Fraction(24)
            width, height = src.codec_context.width, src.codec_context.height
        stream = out.add_stream(JOIN_CODEC, rate=rate, options={"crf": JOIN_CRF})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for video in videos:
            for frame in _frames(video):
                picture = frame.reformat(width=width, height=height, format="yuv420p")
                picture.pts = frames
                picture.time_base = Fraction(1, 1) / Fraction(rate)
                out.mux(stream.encode(picture))
                frames += 1
        out.mux(stream.encode(None))
    return frames
