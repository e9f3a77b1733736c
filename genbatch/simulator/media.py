"""Output videos and sample input images.

Every succeeded task's video is `assets/sample.mp4` (a real 64x64, 1 s H.264 MP4) followed by
one top-level MP4 `free` box holding the task id: still a valid MP4, and a different sha256
per task. Output URLs are signed and expire (`/_sim/videos/<id>.mp4?expires=<unix>&sig=<hmac>`),
like the presigned object-store URLs the providers hand out. With the profile's
`distinct_videos`, each task's video is one of its own instead (shots.py).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from importlib import resources

from genbatch.simulator import shots

ASSETS = resources.files("genbatch.simulator") / "assets"
VIDEO_PATH = "/_sim/videos/"
ASSET_PATH = "/_sim/assets/"


def free_box(payload: bytes) -> bytes:
    """A top-level MP4 `free` box (size, type, payload): players skip it."""
    return struct.pack(">I", 8 + len(payload)) + b"free" + payload


@dataclass(slots=True)
class Upload:
    """A file stored by WaveSpeed's media upload (uploads.py)."""

    name: str
    content_type: str
    api_key: str
    data: bytes | None = None  # None until the official SDK's PUT arrives


class Media:
    """The sample bytes, held in memory, and the URL signer."""

    def __init__(self, secret: bytes) -> None:
        self.sample_mp4 = (ASSETS / "sample.mp4").read_bytes()
        self._sample_hash = hashlib.sha256(self.sample_mp4)
        self.images = {
            entry.name: entry.read_bytes()
            for entry in ASSETS.iterdir()
            if entry.name.endswith(".png")
        }
        self._secret = secret
        self.distinct = False  # the profile's distinct_videos (set by the Simulator)

    def video_bytes(self, task_id: str) -> bytes:
        if self.distinct:
            return shots.video(task_id)
        return self.sample_mp4 + free_box(task_id.encode())

    def video_sha256(self, task_id: str) -> str:
        if self.distinct:
            return hashlib.sha256(shots.video(task_id)).hexdigest()
        digest = self._sample_hash.copy()
        digest.update(free_box(task_id.encode()))
        return digest.hexdigest()

    def video_url(self, origin: str, task_id: str, expires: float) -> str:
        stamp = f"{expires:.3f}"
        return f"{origin}{VIDEO_PATH}{task_id}.mp4?expires={stamp}&sig={self._sign(task_id, stamp)}"

    def signature_ok(self, task_id: str, stamp: str, sig: str) -> bool:
        return hmac.compare_digest(self._sign(task_id, stamp), sig)

    def _sign(self, task_id: str, stamp: str) -> str:
        mac = hmac.new(self._secret, f"{task_id}\n{stamp}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]
