"""Account limits: RPM answers 429 without Retry-After; over-concurrency queues at WaveSpeed
and BytePlus and is refused at Novita and HighwayAPI; BytePlus caps queued tasks."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.simulator.helpers import (
    KEY,
    FakeClock,
    Sim,
    byteplus_body,
    novita_body,
    wavespeed_body,
)

NOVITA_SUBMIT = "/v3/async/seedance-v1.5-pro-i2v"
WS_SUBMIT = "/api/v3/bytedance/seedance-v1.5-pro/image-to-video"
BP_TASKS = "/api/v3/contents/generations/tasks"


def test_rpm_limit_answers_429_without_retry_after(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    sim = local(rpm=3, time_factor=1)
    with sim.client() as client:
        accepted = [client.post(NOVITA_SUBMIT, json=novita_body(seed=i)) for i in range(3)]
        refused = client.post(NOVITA_SUBMIT, json=novita_body(seed=3))
        ws_refused = [client.post(WS_SUBMIT, json=wavespeed_body(seed=i)) for i in range(4)][-1]
        bp_refused = [client.post(BP_TASKS, json=byteplus_body(seed=i)) for i in range(4)][-1]
        clock.advance(60.001)  # the window slides
        again = client.post(NOVITA_SUBMIT, json=novita_body(seed=3))
    assert [r.status_code for r in accepted] == [200, 200, 200]
    assert refused.status_code == 429 and "retry-after" not in refused.headers
    assert refused.json()["reason"] == "RATE_LIMIT_EXCEEDED"
    assert ws_refused.status_code == 429 and ws_refused.json()["code"] == 429
    assert bp_refused.status_code == 429
    assert bp_refused.json()["error"]["code"] == "RateLimitExceeded.EndpointRPMExceeded"
    assert again.status_code == 200
    stats = sim.stats()
    assert stats["responses_429"] == 3 and stats["submits"] == 10
    assert stats["max_submits_per_minute"]["novita"][KEY] == 3


def test_rpm_window_is_scaled_by_the_time_factor(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    sim = local(rpm=1, time_factor=60)  # a simulated minute is one real second
    with sim.client() as client:
        assert client.post(NOVITA_SUBMIT, json=novita_body()).status_code == 200
        clock.advance(0.9)
        assert client.post(NOVITA_SUBMIT, json=novita_body()).status_code == 429
        clock.advance(0.2)
        assert client.post(NOVITA_SUBMIT, json=novita_body()).status_code == 200


def test_retry_after_is_optional(local: Callable[..., Sim]) -> None:
    sim = local(rpm=1, retry_after_s=7)
    with sim.client() as client:
        client.post(NOVITA_SUBMIT, json=novita_body())
        refused = client.post(NOVITA_SUBMIT, json=novita_body())
    assert refused.status_code == 429 and refused.headers["retry-after"] == "7"


def test_wavespeed_queues_over_concurrency(local: Callable[..., Sim], clock: FakeClock) -> None:
    # Each task: 1 s queued, then runs 10 s (simulated = real here).
    sim = local(concurrency=2, time_factor=1, latency_mean_s=10, queue_delay_s=1)
    with sim.client() as client:
        ids = [
            client.post(WS_SUBMIT, json=wavespeed_body(seed=i)).json()["data"]["id"]
            for i in range(3)
        ]

        def statuses() -> list[str]:
            return [
                client.get(f"/api/v3/predictions/{i}/result").json()["data"]["status"]
                for i in ids
            ]

        assert statuses() == ["created", "created", "created"]
        clock.advance(2)
        assert statuses() == ["processing", "processing", "created"]  # waits for a slot
        clock.advance(9.5)  # the first two finish at 11 s
        assert statuses() == ["completed", "completed", "processing"]
        clock.advance(10)
        assert statuses() == ["completed", "completed", "completed"]
    stats = sim.stats()
    assert stats["max_in_flight"]["wavespeed"][KEY] == 3  # accepted, not refused
    assert stats["responses_429"] == 0


def test_novita_and_highwayapi_refuse_over_concurrency(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    sim = local(concurrency=1, time_factor=1, latency_mean_s=10)
    with sim.client() as client, sim.client(prefix="/highwayapi") as highway:
        assert client.post(NOVITA_SUBMIT, json=novita_body()).status_code == 200
        assert client.post(NOVITA_SUBMIT, json=novita_body()).status_code == 429
        assert highway.post(NOVITA_SUBMIT, json=novita_body()).status_code == 200
        assert highway.post(NOVITA_SUBMIT, json=novita_body()).status_code == 429
        clock.advance(12)  # both finished: slots free again
        assert client.post(NOVITA_SUBMIT, json=novita_body()).status_code == 200
    stats = sim.stats()
    assert stats["max_in_flight"] == {"novita": {KEY: 1}, "highwayapi": {KEY: 1}}
    assert stats["in_flight"]["novita"][KEY] == 1


def bp_statuses(client: httpx.Client, ids: list[str]) -> list[str]:
    return [client.get(f"{BP_TASKS}/{i}").json()["status"] for i in ids]


def test_byteplus_queues_over_concurrency(local: Callable[..., Sim], clock: FakeClock) -> None:
    # Each task: 1 s queued, then runs 10 s; two may run at once.
    sim = local(concurrency=2, time_factor=1, latency_mean_s=10, queue_delay_s=1)
    with sim.client() as client:
        ids = [client.post(BP_TASKS, json=byteplus_body(seed=i)).json()["id"] for i in range(3)]
        assert bp_statuses(client, ids) == ["queued", "queued", "queued"]
        clock.advance(2)
        assert bp_statuses(client, ids) == ["running", "running", "queued"]  # waits for a slot
        clock.advance(8.9)  # 10.9 s: the first two finish at 11 s
        assert bp_statuses(client, ids) == ["running", "running", "queued"]
        clock.advance(0.2)
        assert bp_statuses(client, ids) == ["succeeded", "succeeded", "running"]
        clock.advance(10)
        assert bp_statuses(client, ids) == ["succeeded"] * 3
    stats = sim.stats()
    assert stats["max_in_flight"]["byteplus"][KEY] == 3  # accepted, not refused
    assert stats["responses_429"] == 0


def test_byteplus_caps_tasks_queued_for_a_slot(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    sim = local(concurrency=1, queue_cap=2, time_factor=1, latency_mean_s=10, queue_delay_s=0)
    with sim.client() as client:
        codes = [client.post(BP_TASKS, json=byteplus_body(seed=i)).status_code for i in range(4)]
        assert codes == [200, 200, 200, 429]  # one running, two queued, then the cap
        assert sim.stats()["queued"]["byteplus"][KEY] == 2
        refused = client.post(BP_TASKS, json=byteplus_body())
        clock.advance(10.5)  # the first finished, the second runs: one queued
        again = client.post(BP_TASKS, json=byteplus_body())
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RateLimitExceeded.EndpointRPMExceeded"
    assert again.status_code == 200


def test_a_cancelled_queued_byteplus_task_gives_its_slot_back(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    # One slot: a runs 0-10 s, b is planned 10-20 s, c 20-30 s.
    sim = local(concurrency=1, time_factor=1, latency_mean_s=10, queue_delay_s=0)
    with sim.client() as client:
        a, b, c = (client.post(BP_TASKS, json=byteplus_body(seed=i)).json()["id"]
                   for i in range(3))
        clock.advance(1)
        assert client.delete(f"{BP_TASKS}/{c}").status_code == 200
        d = client.post(BP_TASKS, json=byteplus_body(seed=3)).json()["id"]  # c's slot: 20 s
        clock.advance(19.5)
        assert bp_statuses(client, [a, b, c, d]) == ["succeeded", "succeeded", "cancelled",
                                                     "running"]
    assert sim.stats()["cancels"] == 1


def test_a_byteplus_task_expiring_in_the_queue_takes_no_slot(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    # One slot; generations take 5000 s. a runs 0-3600 s (expires), b 3600-7200 s (expires);
    # c may live only 3600 s, so it expires queued; d must still wait for b, until 7200 s.
    sim = local(concurrency=1, time_factor=1, latency_mean_s=5000, queue_delay_s=0)
    with sim.client() as client:
        ids = [client.post(BP_TASKS, json=byteplus_body(seed=i, execution_expires_after=ttl))
               .json()["id"] for i, ttl in enumerate((3600, 7200, 3600, 259200))]
        clock.advance(5000)
        assert bp_statuses(client, ids) == ["expired", "running", "expired", "queued"]
        clock.advance(2201)
        assert bp_statuses(client, ids) == ["expired", "expired", "expired", "running"]


def test_limits_are_per_key(local: Callable[..., Sim]) -> None:
    sim = local(rpm=1, keys={"vip": {"rpm": 100}})
    with sim.client() as plain, sim.client("vip") as vip:
        assert [plain.post(NOVITA_SUBMIT, json=novita_body()).status_code for _ in "ab"] == [
            200, 429,
        ]
        assert {vip.post(NOVITA_SUBMIT, json=novita_body()).status_code for _ in "abc"} == {200}


def test_byteplus_caps_queued_tasks(local: Callable[..., Sim], clock: FakeClock) -> None:
    sim = local(queue_cap=2, time_factor=1, queue_delay_s=100)
    with sim.client() as client:
        codes = [client.post(BP_TASKS, json=byteplus_body(seed=i)).status_code for i in range(3)]
        assert codes == [200, 200, 429]
        clock.advance(101)  # both started: nothing queued
        assert client.post(BP_TASKS, json=byteplus_body()).status_code == 200
    assert sim.stats()["queued"]["byteplus"][KEY] == 1
