"""Replacing the profile mid-run (`PUT /_sim/profile`): one of three accounts starts answering
auth errors (or balance errors) while the others keep working, and tasks already created keep
their timelines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from genbatch.simulator import SimProfile
from genbatch.simulator.state import Simulator
from tests.simulator.helpers import FAST, FakeClock, Sim, byteplus_body, novita_body, wavespeed_body

KEYS = ("acct-1", "acct-2", "acct-3")
NOVITA_SUBMIT = "/v3/async/seedance-v1.5-pro-i2v"
WS_SUBMIT = "/api/v3/bytedance/seedance-v1.5-pro/image-to-video"
BP_TASKS = "/api/v3/contents/generations/tasks"
TIMING = {"time_factor": 1, "latency_mean_s": 10, "queue_delay_s": 1}


def submit_all(client: httpx.Client) -> dict[str, httpx.Response]:
    """One submit per protocol."""
    return {
        "novita": client.post(NOVITA_SUBMIT, json=novita_body()),
        "highwayapi": client.post("/highwayapi" + NOVITA_SUBMIT, json=novita_body()),
        "wavespeed": client.post(WS_SUBMIT, json=wavespeed_body()),
        "byteplus": client.post(BP_TASKS, json=byteplus_body()),
    }


def poll_paths(created: dict[str, httpx.Response]) -> dict[str, str]:
    return {
        "novita": f"/v3/async/task-result?task_id={created['novita'].json()['task_id']}",
        "highwayapi": "/highwayapi/v3/async/task-result?task_id="
        + created["highwayapi"].json()["task_id"],
        "wavespeed": f"/api/v3/predictions/{created['wavespeed'].json()['data']['id']}/result",
        "byteplus": f"{BP_TASKS}/{created['byteplus'].json()['id']}",
    }


def finished(client: httpx.Client, paths: dict[str, str]) -> dict[str, Any]:
    """Each task's status as its provider spells it."""
    bodies = {name: client.get(path).json() for name, path in paths.items()}
    return {
        "novita": bodies["novita"]["task"]["status"],
        "highwayapi": bodies["highwayapi"]["task"]["status"],
        "wavespeed": bodies["wavespeed"]["data"]["status"],
        "byteplus": bodies["byteplus"]["status"],
    }


DONE = {"novita": "TASK_STATUS_SUCCEED", "highwayapi": "TASK_STATUS_SUCCEED",
        "wavespeed": "completed", "byteplus": "succeeded"}


def test_one_of_three_accounts_starts_answering_auth_errors(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    sim = local(**TIMING, api_keys=list(KEYS))
    clients = {key: sim.client(key) for key in KEYS}
    try:
        created = {key: submit_all(client) for key, client in clients.items()}
        assert {r.status_code for c in created.values() for r in c.values()} == {200}
        sim.profile(**TIMING, api_keys=[KEYS[0], KEYS[2]])  # acct-2 is revoked mid-run
        after = {key: submit_all(client) for key, client in clients.items()}
        clock.advance(12)
        polls = {key: poll_paths(created[key]) for key in KEYS}
        survivors = {key: finished(clients[key], polls[key]) for key in (KEYS[0], KEYS[2])}
        revoked_polls = {name: clients[KEYS[1]].get(path)
                         for name, path in polls[KEYS[1]].items()}
    finally:
        for client in clients.values():
            client.close()

    for key in (KEYS[0], KEYS[2]):
        assert {name: r.status_code for name, r in after[key].items()} == dict.fromkeys(DONE, 200)
        assert survivors[key] == DONE  # tasks from before the switch finished as planned
    refused = after[KEYS[1]]
    assert_auth_refused(refused)
    assert_auth_refused(revoked_polls)  # the revoked key cannot read its old tasks either
    stats = sim.stats()
    assert stats["submits"] == 4 * 3 + 4 * 2
    assert stats["tasks_by_status"] == {"succeeded": 20}


def assert_auth_refused(responses: dict[str, httpx.Response]) -> None:
    """Each provider's own auth error: Novita and HighwayAPI 403 INVALID_API_KEY, WaveSpeed
    401, BytePlus 401 AuthenticationError."""
    for name in ("novita", "highwayapi"):
        assert responses[name].status_code == 403
        assert responses[name].json()["reason"] == "INVALID_API_KEY"
    assert responses["wavespeed"].status_code == 401
    assert responses["wavespeed"].json()["code"] == 401
    assert responses["byteplus"].status_code == 401
    assert responses["byteplus"].json()["error"]["code"] == "AuthenticationError"


def test_a_key_switched_out_of_balance_mid_run(local: Callable[..., Sim]) -> None:
    sim = local(**TIMING)
    with sim.client(KEYS[0]) as first, sim.client(KEYS[1]) as second:
        created = submit_all(second)  # resolves (and caches) acct-2's behaviour
        sim.profile(**TIMING, keys={KEYS[1]: {"out_of_balance": True}})
        refused = submit_all(second)
        fine = submit_all(first)
        polled = [second.get(path).status_code for path in poll_paths(created).values()]
    assert {r.status_code for r in created.values()} == {200}
    assert {r.status_code for r in fine.values()} == {200}
    assert refused["novita"].json()["reason"] == "BILLING_BALANCE_NOT_ENOUGH"
    assert refused["highwayapi"].status_code == 400
    assert refused["wavespeed"].status_code == 402
    assert refused["byteplus"].status_code == 403
    assert refused["byteplus"].json()["error"]["code"] == "AccountOverdueError"
    assert polled == [200] * 4  # reading old tasks still works


def test_replacing_the_profile_drops_the_resolved_behaviours() -> None:
    sim = Simulator(SimProfile.model_validate({**FAST, "rpm": 5}))
    assert sim.behaviour("k").rpm == 5  # resolved and cached
    sim.replace_profile(SimProfile.model_validate({**FAST, "keys": {"k": {"rpm": 1}}}))
    assert sim.behaviour("k").rpm == 1
    assert sim.behaviour("other").rpm is None
