"""Per-model limits at an API key (`model_limits`), on top of the key's own: over a model's
rpm the provider's 429; over its concurrency WaveSpeed and BytePlus queue the task for a slot
of that model, Novita and HighwayAPI answer 429."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from genbatch.simulator import SimProfile
from tests.simulator.helpers import (
    BP_MODEL,
    FakeClock,
    Sim,
    byteplus_body,
    novita_body,
    wavespeed_body,
)

NOVITA_MODEL = "seedance-v1.5-pro-i2v"
NOVITA_OTHER = "seedance-v1-pro-i2v"
WS_MODEL = "bytedance/seedance-v1.5-pro/image-to-video"
WS_OTHER = "bytedance/seedance-v1-pro-i2v-720p"
BP_OTHER = "seedance-1-0-pro-250528"
BP_TASKS = "/api/v3/contents/generations/tasks"


def novita_submit(client: httpx.Client, model: str = NOVITA_MODEL) -> httpx.Response:
    return client.post(f"/v3/async/{model}", json=novita_body())


def ws_submit(client: httpx.Client, model: str = WS_MODEL) -> httpx.Response:
    return client.post(f"/api/v3/{model}", json=wavespeed_body())


def bp_submit(client: httpx.Client, model: str = BP_MODEL) -> httpx.Response:
    return client.post(BP_TASKS, json=byteplus_body(model=model))


def test_a_models_rpm_is_refused_with_the_providers_429(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    limit = {"rpm": 2}
    sim = local(time_factor=1, rpm=3,
                model_limits={BP_MODEL: limit, WS_MODEL: limit, NOVITA_MODEL: limit})
    with sim.client() as client:
        bp = [bp_submit(client) for _ in range(3)]
        bp_other = [bp_submit(client, BP_OTHER) for _ in range(2)]  # the key's rpm: 3
        ws = [ws_submit(client) for _ in range(3)]
        novita = [novita_submit(client) for _ in range(3)]
        clock.advance(60.001)  # the window slides
        again = bp_submit(client)
    assert [r.status_code for r in bp] == [200, 200, 429]
    error = bp[2].json()["error"]
    assert error["code"] == "RateLimitExceeded.EndpointRPMExceeded" and BP_MODEL in error["message"]
    assert [r.status_code for r in bp_other] == [200, 429]
    assert "3 RPM" in bp_other[1].json()["error"]["message"]  # the key's, not the model's
    assert [r.status_code for r in ws] == [200, 200, 429] and ws[2].json()["code"] == 429
    assert [r.status_code for r in novita] == [200, 200, 429]
    assert novita[2].json()["reason"] == "RATE_LIMIT_EXCEEDED"
    assert again.status_code == 200


def test_byteplus_and_wavespeed_queue_over_a_models_concurrency(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    # Each task: 1 s queued, then runs 10 s. The key runs 3 at once, each model 1.
    one = {"concurrency": 1}
    sim = local(time_factor=1, latency_mean_s=10, queue_delay_s=1, concurrency=3,
                model_limits={BP_MODEL: one, WS_MODEL: one})
    with sim.client() as client:
        bp = [bp_submit(client).json()["id"] for _ in range(2)]
        bp += [bp_submit(client, BP_OTHER).json()["id"] for _ in range(3)]
        ws = [ws_submit(client).json()["data"]["id"] for _ in range(2)]

        def statuses() -> tuple[list[str], list[str]]:
            return ([client.get(f"{BP_TASKS}/{i}").json()["status"] for i in bp],
                    [client.get(f"/api/v3/predictions/{i}/result").json()["data"]["status"]
                     for i in ws])

        # The model's second task waits for its model's slot, the third of another model for
        # one of the key's (the first two of it and the model's first hold all three).
        assert statuses() == (["queued"] * 5, ["created"] * 2)
        clock.advance(2)
        assert statuses() == (["running", "queued", "running", "running", "queued"],
                              ["processing", "created"])
        clock.advance(9.5)  # 11.5 s: the first three finished
        assert statuses() == (["succeeded", "running", "succeeded", "succeeded", "running"],
                              ["completed", "processing"])
    assert sim.stats()["responses_429"] == 0


def test_a_task_held_back_by_its_model_leaves_the_account_slot_to_others(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    # The key runs 2 at once, the model 1: three of the model queue behind each other, and a
    # task of another model still starts at once on the key's second slot.
    sim = local(time_factor=1, latency_mean_s=10, queue_delay_s=1, concurrency=2,
                model_limits={BP_MODEL: {"concurrency": 1}})
    with sim.client() as client:
        ids = [bp_submit(client).json()["id"] for _ in range(3)]
        ids.append(bp_submit(client, BP_OTHER).json()["id"])
        clock.advance(2)
        statuses = [client.get(f"{BP_TASKS}/{i}").json()["status"] for i in ids]
    assert statuses == ["running", "queued", "queued", "running"]


def test_novita_and_highwayapi_refuse_over_a_models_concurrency(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    sim = local(time_factor=1, latency_mean_s=10, model_limits={NOVITA_MODEL: {"concurrency": 1}})
    with sim.client() as novita, sim.client(prefix="/highwayapi") as highway:
        for client in (novita, highway):
            assert novita_submit(client).status_code == 200
            refused = novita_submit(client)
            assert refused.status_code == 429 and refused.json()["reason"] == "RATE_LIMIT_EXCEEDED"
            assert NOVITA_MODEL in refused.json()["message"]
            assert novita_submit(client, NOVITA_OTHER).status_code == 200  # another model
        clock.advance(12)  # finished: the model's slot is free again
        assert novita_submit(novita).status_code == 200


def test_the_keys_concurrency_still_applies_at_novita(local: Callable[..., Sim]) -> None:
    sim = local(time_factor=1, latency_mean_s=10, concurrency=1,
                model_limits={NOVITA_MODEL: {"concurrency": 5}})
    with sim.client() as client:
        assert novita_submit(client).status_code == 200
        refused = novita_submit(client)
    assert refused.status_code == 429 and "1 tasks" in refused.json()["message"]


def test_model_limits_are_validated_and_overridden_per_key(sim: Sim) -> None:
    bad = sim.control.put("/_sim/profile", json={"model_limits": {"m": {"rpm": 1, "burst": 2}}})
    assert bad.status_code == 400 and "burst" in bad.json()["error"]
    zero = sim.control.put("/_sim/profile", json={"model_limits": {"m": {"concurrency": 0}}})
    assert zero.status_code == 400
    profile = SimProfile.model_validate({
        "model_limits": {"a": {"rpm": 1}, "b": {"concurrency": 2}},
        "keys": {"k": {"model_limits": {"b": {"rpm": 5}}}},
    })
    assert profile.for_key("other").model_limits["a"].rpm == 1
    k = profile.for_key("k").model_limits
    assert set(k) == {"b"} and (k["b"].rpm, k["b"].concurrency) == (5, None)  # replaced whole
