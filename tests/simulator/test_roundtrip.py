"""Each provider, end to end on loopback: submit, poll to a terminal status, download a real
MP4 whose sha256 is the one the simulator recorded."""

from __future__ import annotations

import hashlib

import pytest

from tests.simulator.helpers import (
    URL_TTL_S,
    Sim,
    byteplus_body,
    mp4_boxes,
    novita_body,
    wait_until,
    wavespeed_body,
)

NOVITA_MODELS = ["seedance-v1.5-pro-i2v", "seedance-v1-pro-i2v", "seedance-v1-lite-i2v"]
WAVESPEED_MODELS = [
    "seedance-v1.5-pro/image-to-video",
    "seedance-v1-pro-i2v-720p",
    "seedance-v1-lite-i2v-480p",
]
BYTEPLUS_MODELS = [
    "seedance-1-5-pro-251215",
    "seedance-1-0-pro-250528",
    "seedance-1-0-lite-i2v-250428",
]


def check_video(sim: Sim, task_id: str, url: str) -> None:
    response = sim.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    boxes = mp4_boxes(response.content)
    assert [kind for kind, _ in boxes][:1] == [b"ftyp"]
    assert {b"moov", b"mdat"} <= {kind for kind, _ in boxes}
    assert boxes[-1] == (b"free", task_id.encode())
    stats = sim.stats()
    assert stats["videos"][task_id] == hashlib.sha256(response.content).hexdigest()
    assert stats["downloads_by_task"] == {task_id: 1}


@pytest.mark.parametrize("prefix", ["", "/novita", "/highwayapi"])
@pytest.mark.parametrize("model", NOVITA_MODELS)
def test_novita_family_round_trip(sim: Sim, prefix: str, model: str) -> None:
    body = novita_body(sim.asset())
    if model != "seedance-v1.5-pro-i2v":
        body["aspect_ratio"] = "16:9"
    with sim.client(prefix=prefix) as client:
        submitted = client.post(f"/v3/async/{model}", json=body)
        assert submitted.status_code == 200, submitted.text
        task_id = submitted.json()["task_id"]
        final = wait_until(
            lambda: client.get("/v3/async/task-result", params={"task_id": task_id}).json(),
            lambda r: r["task"]["status"] in ("TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED"),
        )
    assert final["task"]["status"] == "TASK_STATUS_SUCCEED"
    assert final["task"]["task_id"] == task_id
    assert final["task"]["progress_percent"] == 100
    assert isinstance(final["extra"]["seed"], str)
    assert final["images"] == [] and final["audios"] == []
    [video] = final["videos"]
    assert video["video_url_ttl"] == str(URL_TTL_S) and video["video_type"] == "mp4"
    check_video(sim, task_id, video["video_url"])


@pytest.mark.parametrize("prefix", ["", "/wavespeed"])
@pytest.mark.parametrize("model", WAVESPEED_MODELS)
def test_wavespeed_round_trip(sim: Sim, prefix: str, model: str) -> None:
    with sim.client(prefix=prefix) as client:
        submitted = client.post(f"/api/v3/bytedance/{model}", json=wavespeed_body(sim.asset()))
        assert submitted.status_code == 200, submitted.text
        envelope = submitted.json()
        assert (envelope["code"], envelope["message"]) == (200, "success")
        data = envelope["data"]
        assert data["status"] == "created" and data["outputs"] == []
        assert data["model"] == f"bytedance/{model}"
        assert data["urls"]["get"] == f"{sim.url}{prefix}/api/v3/predictions/{data['id']}/result"
        final = wait_until(
            lambda: client.get(data["urls"]["get"]).json()["data"],
            lambda d: d["status"] in ("completed", "failed"),
        )
        # The docs' other result path answers the same.
        again = client.get(f"/api/v3/predictions/{data['id']}").json()["data"]
    assert final["status"] == "completed" and again == final
    assert final["error"] == "" and final["has_nsfw_contents"] == [False]
    assert final["timings"]["inference"] > 0
    check_video(sim, data["id"], final["outputs"][0])


@pytest.mark.parametrize("prefix", ["", "/byteplus"])
@pytest.mark.parametrize("model", BYTEPLUS_MODELS)
def test_byteplus_round_trip(sim: Sim, prefix: str, model: str) -> None:
    with sim.client(prefix=prefix) as client:
        submitted = client.post(
            "/api/v3/contents/generations/tasks",
            json=byteplus_body(sim.asset(), model=model, ratio="16:9", resolution="720p"),
        )
        assert submitted.status_code == 200, submitted.text
        task_id = submitted.json()["id"]
        assert task_id.startswith("cgt-")
        final = wait_until(
            lambda: client.get(f"/api/v3/contents/generations/tasks/{task_id}").json(),
            lambda t: t["status"] not in ("queued", "running"),
        )
    assert final["status"] == "succeeded" and final["model"] == model
    assert final["error"] is None
    assert (final["resolution"], final["ratio"], final["duration"]) == ("720p", "16:9", 5)
    # W x H x 24 fps x duration / 1024, with 720p 16:9 = 1280 x 720.
    assert final["usage"] == {"completion_tokens": 108000, "total_tokens": 108000}
    assert isinstance(final["created_at"], int) and final["updated_at"] >= final["created_at"]
    check_video(sim, task_id, final["content"]["video_url"])


def test_every_task_gets_its_own_video(sim: Sim) -> None:
    with sim.client() as client:
        ids = [
            client.post("/v3/async/seedance-v1.5-pro-i2v", json=novita_body(seed=i)).json()[
                "task_id"
            ]
            for i in range(5)
        ]
    videos = wait_until(sim.stats, lambda s: len(s["videos"]) == 5)["videos"]
    assert set(videos) == set(ids)
    assert len(set(videos.values())) == 5


def test_sample_images_are_served(sim: Sim) -> None:
    response = sim.get(sim.asset("portrait.png"))
    assert response.status_code == 200
    assert response.content.startswith(b"\x89PNG")
    assert sim.get(sim.asset("missing.png")).status_code == 404
