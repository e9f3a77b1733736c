"""Frames out of stored videos, and videos joined end to end, with PyAV (FFmpeg's libraries
in a wheel from PyPI: no system ffmpeg).

A chain's next shot starts on the last frame of the shot before it (`last_frame`); the
review page shows a poster per video so a page of a thousand videos loads as images and
plays a video only when asked (`poster`). Both read a video genbatch already stored: a
path on disk (object storage's local folder, or a download to a temporary file).

A video PyAV cannot open or that has no decodable picture is `VideoUnreadable`, one line
naming the file, never a traceback.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import av
import av.error
from PIL import Image

from genbatch.errors import GenbatchError

POSTER_WIDTH = 480  # a gallery tile; the poster keeps the video's aspect ratio
POSTER_QUALITY = 80


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
