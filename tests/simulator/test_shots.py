"""Distinct per-task videos (profile `distinct_videos`) and BytePlus's last frame of them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image, ImageStat

from genbatch.frames import last_frame
from tests.simulator.helpers import Sim, byteplus_body, wait_until

BP_TASKS = "/api/v3/contents/generations/tasks"


def _finished(sim: Sim, **extra: Any) -> dict[str, Any]:
    with sim.client() as client:
        task_id = client.post(BP_TASKS, json=byteplus_body(**extra)).json()["id"]
        task: dict[str, Any] = wait_until(lambda: client.get(f"{BP_TASKS}/{task_id}").json(),
                                          lambda t: t["status"] == "succeeded")
    return task


def _mean(png: bytes) -> tuple[float, ...]:
    return tuple(ImageStat.Stat(Image.open(io.BytesIO(png)).convert("RGB")).mean)


def test_each_task_gets_a_video_of_its_own_and_its_last_frame(sim: Sim,
                                                                tmp_path: Path) -> None:
    sim.profile(distinct_videos=True)
    one, two = (_finished(sim, return_last_frame=True) for _ in range(2))
    videos = [sim.get(t["content"]["video_url"]).content for t in (one, two)]
    assert videos[0] != videos[1]
    (tmp_path / "one.mp4").write_bytes(videos[0])
    decoded = last_frame(tmp_path / "one.mp4")  # what genbatch would decode itself
    served = sim.get(one["content"]["last_frame_url"])
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(served.content)).size == (320, 320)
    assert served.content == decoded
    other = sim.get(two["content"]["last_frame_url"]).content
    assert max(abs(a - b) for a, b in zip(_mean(other), _mean(decoded), strict=True)) > 3


def test_without_distinct_videos_every_task_shares_the_sample(sim: Sim) -> None:
    one, two = (_finished(sim) for _ in range(2))
    videos = [sim.get(t["content"]["video_url"]).content for t in (one, two)]
    assert videos[0][:1000] == videos[1][:1000] and videos[0] != videos[1]  # free box differs
    assert "last_frame_url" not in one["content"]
    assert sim.get(f"{sim.url}/_sim/frames/{one['id']}.png").status_code == 200
    assert sim.get(f"{sim.url}/_sim/frames/nope.png").status_code == 404
