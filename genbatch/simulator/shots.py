"""Per-task videos whose pictures differ, for tests that must tell one shot from another.

With the profile's `distinct_videos` on, each succeeded task's video is a small H.264 MP4
encoded here with PyAV (320x320, 24 frames at 24 fps): a colour drawn from the task id,
darkening frame by frame, so the first and last frames differ and no two tasks' videos
look alike. A chain test can then check that a child's submit carried exactly its parent's
last frame. 320 px, not the sample's 64: the last frame becomes a child's input image,
which the simulated providers refuse under 300 px like the real ones.

BytePlus answers `return_last_frame` with `content.last_frame_url`: `FRAME_PATH<id>.png`,
the last picture of that task's video decoded again (what a provider would give).
"""

from __future__ import annotations

import functools
import hashlib
import io

import av
from PIL import Image

FRAME_PATH = "/_sim/frames/"
SIDE = 320
FRAMES = 24
CACHED = 64  # videos kept encoded (a few kB each)


def colour(task_id: str) -> tuple[int, int, int]:
    """The task's colour: bright enough that 24 frames of darkening stay distinct."""
    digest = hashlib.sha256(task_id.encode()).digest()
    return (80 + digest[0] % 176, 80 + digest[1] % 176, 80 + digest[2] % 176)


@functools.lru_cache(maxsize=CACHED)
def video(task_id: str) -> bytes:
    """The task's MP4: its colour, a little darker each frame."""
    red, green, blue = colour(task_id)
    out_file = io.BytesIO()
    with av.open(out_file, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=24, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = SIDE, SIDE, "yuv420p"
        for n in range(FRAMES):
            scale = 1 - n / (2 * FRAMES)
            image = Image.new("RGB", (SIDE, SIDE),
                              (int(red * scale), int(green * scale), int(blue * scale)))
            frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return out_file.getvalue()


@functools.lru_cache(maxsize=CACHED)
def last_frame(task_id: str) -> bytes:
    """The last picture of the task's video, decoded, as PNG."""
    with av.open(io.BytesIO(video(task_id)), "r") as container:
        picture: Image.Image | None = None
        for frame in container.decode(video=0):
            picture = frame.to_image()  # type: ignore[no-untyped-call]
    assert picture is not None
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()
