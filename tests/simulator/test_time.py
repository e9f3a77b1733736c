"""Simulated time: task progression read off timestamps, the time factor, URL expiry,
BytePlus cancel and expiry. Time is moved by hand (the fake clock), never waited for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.simulator.helpers import FakeClock, Sim, byteplus_body, novita_body

NOVITA_SUBMIT = "/v3/async/seedance-v1.5-pro-i2v"
BP_TASKS = "/api/v3/contents/generations/tasks"


def novita_task(client: httpx.Client, task_id: str) -> dict[str, Any]:
    task: dict[str, Any] = client.get(
        "/v3/async/task-result", params={"task_id": task_id}
    ).json()["task"]
    return task


def test_time_factor_divides_every_duration(local: Callable[..., Sim], clock: FakeClock) -> None:
    # 20 simulated seconds queued + 100 running, at 10x: 2 s + 10 s of real time.
    sim = local(time_factor=10, queue_delay_s=20, latency_mean_s=100, latency_sigma=0)
    with sim.client() as client:
        task_id = client.post(NOVITA_SUBMIT, json=novita_body()).json()["task_id"]
        queued = novita_task(client, task_id)
        clock.advance(7)  # 5 s into the 10 s run
        running = novita_task(client, task_id)
        clock.advance(5.01)
        done = novita_task(client, task_id)
    assert (queued["status"], queued["progress_percent"], queued["eta"]) == (
        "TASK_STATUS_QUEUED", 0, 120,
    )
    assert running["status"] == "TASK_STATUS_PROCESSING"
    assert running["progress_percent"] == 50 and running["eta"] == 50  # simulated seconds
    assert (done["status"], done["progress_percent"], done["eta"]) == (
        "TASK_STATUS_SUCCEED", 100, 0,
    )


def test_latency_is_reproducible_for_a_seed(local: Callable[..., Sim], clock: FakeClock) -> None:
    def finish_order(seed: int) -> list[int]:
        sim = local(seed=seed, time_factor=1, latency_mean_s=10, latency_sigma=0.8)
        start = clock.now
        with sim.client() as client:
            ids = [client.post(NOVITA_SUBMIT, json=novita_body(seed=i)).json()["task_id"]
                   for i in range(6)]
            order: list[int] = []
            while len(order) < 6:
                clock.advance(0.25)
                order += [n for n, i in enumerate(ids) if n not in order
                          and novita_task(client, i)["status"] == "TASK_STATUS_SUCCEED"]
        clock.now = start
        return order

    assert finish_order(7) == finish_order(7)
    assert finish_order(7) != list(range(6)) or finish_order(8) != list(range(6))


def test_output_urls_expire(local: Callable[..., Sim], clock: FakeClock) -> None:
    sim = local(time_factor=10, url_ttl_s=600, latency_sigma=0,  # a 60 s real lifetime
                fresh_url_per_poll=False)
    with sim.client() as client:
        task_id = client.post(NOVITA_SUBMIT, json=novita_body()).json()["task_id"]
        clock.advance(1)
        video = client.get("/v3/async/task-result", params={"task_id": task_id}).json()["videos"][0]
        assert video["video_url_ttl"] == "600"
        assert sim.get(video["video_url"]).status_code == 200
        clock.advance(59)
        assert sim.get(video["video_url"]).status_code == 200
        clock.advance(1)
        expired = sim.get(video["video_url"])
        # Polling again hands out the same, now dead, URL: expiry runs from completion.
        again = client.get("/v3/async/task-result", params={"task_id": task_id}).json()
    assert expired.status_code == 403 and b"expired" in expired.content
    assert again["videos"][0]["video_url"] == video["video_url"]
    tampered = video["video_url"].replace("expires=", "expires=9")
    assert sim.get(tampered).status_code == 403
    stats = sim.stats()
    assert (stats["downloads"], stats["downloads_refused"]) == (2, 2)


def test_providers_that_presign_per_request_hand_out_a_fresh_url_per_poll(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    sim = local(time_factor=10, url_ttl_s=600, latency_sigma=0)  # the providers' own way
    with sim.client() as client:
        novita = client.post(NOVITA_SUBMIT, json=novita_body()).json()["task_id"]
        wavespeed = client.post(
            "/api/v3/bytedance/seedance-v1.5-pro/image-to-video",
            json={"image": "https://x/a.png", "prompt": "p"},
        ).json()["data"]["urls"]["get"]
        clock.advance(1)
        first = client.get("/v3/async/task-result", params={"task_id": novita}).json()
        fixed = client.get(wavespeed).json()["data"]["outputs"][0]
        clock.advance(61)  # both first URLs have lapsed
        again = client.get("/v3/async/task-result", params={"task_id": novita}).json()
        fixed_again = client.get(wavespeed).json()["data"]["outputs"][0]
    old, fresh = first["videos"][0]["video_url"], again["videos"][0]["video_url"]
    assert fresh != old and sim.get(fresh).status_code == 200
    assert sim.get(old).status_code == 403
    assert fixed_again == fixed and sim.get(fixed).status_code == 403  # WaveSpeed: one URL


def test_byteplus_cancels_only_queued_tasks(local: Callable[..., Sim], clock: FakeClock) -> None:
    sim = local(time_factor=1, queue_delay_s=10, latency_mean_s=30)
    with sim.client() as client:
        queued = client.post(BP_TASKS, json=byteplus_body(seed=1)).json()["id"]
        running = client.post(BP_TASKS, json=byteplus_body(seed=2)).json()["id"]
        assert client.delete(f"{BP_TASKS}/{queued}").status_code == 200
        clock.advance(11)
        refused = client.delete(f"{BP_TASKS}/{running}")
        cancelled = client.get(f"{BP_TASKS}/{queued}").json()
        still_running = client.get(f"{BP_TASKS}/{running}").json()
        clock.advance(40)
        # A finished task's record can be deleted; then it is gone.
        assert client.delete(f"{BP_TASKS}/{running}").status_code == 200
        gone = client.get(f"{BP_TASKS}/{running}")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "InvalidParameter"
    assert cancelled["status"] == "cancelled" and "content" not in cancelled
    assert still_running["status"] == "running"
    assert gone.status_code == 404
    stats = sim.stats()
    assert stats["cancels"] == 1 and stats["max_in_flight"]["byteplus"]["sk-sim-test-key"] == 2


def test_byteplus_tasks_expire(local: Callable[..., Sim], clock: FakeClock) -> None:
    # Generation would take 5000 s but the task may live only 3600 s (at 100x: 36 s real).
    sim = local(time_factor=100, latency_mean_s=5000, latency_sigma=0)
    with sim.client() as client:
        task_id = client.post(
            BP_TASKS, json=byteplus_body(execution_expires_after=3600)
        ).json()["id"]
        clock.advance(35)
        assert client.get(f"{BP_TASKS}/{task_id}").json()["status"] == "running"
        clock.advance(2)
        task = client.get(f"{BP_TASKS}/{task_id}").json()
    assert task["status"] == "expired" and task["error"]["code"]
    assert "content" not in task and "usage" not in task
    assert sim.stats()["tasks_by_status"] == {"expired": 1}


def test_novita_reports_expiry_as_failed_with_a_reason(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    sim = local(time_factor=100, latency_mean_s=5000, latency_sigma=0)
    with sim.client() as client:
        task_id = client.post(
            NOVITA_SUBMIT, json=novita_body(execution_expires_after=3600)
        ).json()["task_id"]
        clock.advance(37)
        task = novita_task(client, task_id)
    assert task["status"] == "TASK_STATUS_FAILED" and "expired" in task["reason"]


def test_each_provider_has_its_own_url_lifetime(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    sim = local(time_factor=1, latency_mean_s=1, queue_delay_s=0, latency_sigma=0, url_ttl_s=None,
                fresh_url_per_poll=False)
    with sim.client() as client:
        novita = client.post(NOVITA_SUBMIT, json=novita_body()).json()["task_id"]
        byteplus = client.post(BP_TASKS, json=byteplus_body()).json()["id"]
        wavespeed = client.post(
            "/api/v3/bytedance/seedance-v1.5-pro/image-to-video",
            json={"image": "https://x/a.png", "prompt": "p"},
        ).json()["data"]["urls"]["get"]
        clock.advance(2)
        urls = {
            "novita": client.get(
                "/v3/async/task-result", params={"task_id": novita}
            ).json()["videos"][0]["video_url"],
            "byteplus": client.get(f"{BP_TASKS}/{byteplus}").json()["content"]["video_url"],
            "wavespeed": client.get(wavespeed).json()["data"]["outputs"][0],
        }

    def alive() -> set[str]:
        return {name for name, url in urls.items() if sim.get(url).status_code == 200}

    assert alive() == {"novita", "byteplus", "wavespeed"}
    clock.advance(3600)
    assert alive() == {"byteplus", "wavespeed"}
    clock.advance(24 * 3600)
    assert alive() == {"wavespeed"}
    clock.advance(6 * 24 * 3600)
    assert alive() == set()
