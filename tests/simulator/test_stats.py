"""Stats, the request log, fingerprints, reset and profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from genbatch.simulator import (
    Behaviour,
    ProfileError,
    SimProfile,
    load_profile,
    request_fingerprint,
)
from tests.simulator.helpers import KEY, Sim, byteplus_body, novita_body

NOVITA_SUBMIT = "/v3/async/seedance-v1.5-pro-i2v"
BP_TASKS = "/api/v3/contents/generations/tasks"


def test_submits_are_counted_per_request_fingerprint(sim: Sim) -> None:
    first, second = novita_body(seed=1), novita_body(seed=2)
    with sim.client() as client:
        client.post(NOVITA_SUBMIT, json=first)
        client.post(NOVITA_SUBMIT, json=dict(reversed(list(first.items()))))  # same, reordered
        client.post(NOVITA_SUBMIT, json=second)
        client.post(NOVITA_SUBMIT, json={**second, "duration": 99})  # refused: attempt only
        client.post(BP_TASKS, json=byteplus_body())
    stats = sim.stats()
    fp_first = request_fingerprint("novita", "seedance-v1.5-pro-i2v", first)
    fp_second = request_fingerprint("novita", "seedance-v1.5-pro-i2v", second)
    fp_bp = request_fingerprint("byteplus", "seedance-1-5-pro-251215", byteplus_body())
    assert stats["submits_by_fingerprint"] == {fp_first: 2, fp_second: 1, fp_bp: 1}
    assert stats["submit_attempts_by_fingerprint"][fp_first] == 2
    assert sum(stats["submit_attempts_by_fingerprint"].values()) == stats["submit_attempts"] == 5
    assert stats["submits"] == 4
    # one simulated run time per created task, in creation order (refused: none)
    assert len(stats["run_seconds"]) == 4
    assert all(run > 0 for run in stats["run_seconds"])


def test_the_same_body_on_another_provider_is_another_fingerprint() -> None:
    body = novita_body()
    assert request_fingerprint("novita", "m", body) != request_fingerprint("highwayapi", "m", body)
    assert request_fingerprint("novita", "m", body) != request_fingerprint("novita", "n", body)


def test_request_log_keeps_headers_including_authorization(sim: Sim) -> None:
    with sim.client() as client:
        client.post(NOVITA_SUBMIT, json=novita_body())
        client.get("/v3/async/task-result", params={"task_id": "nope"})
    submit, poll = sim.stats()["request_log"]
    assert submit["method"] == "POST" and submit["path"] == NOVITA_SUBMIT
    assert submit["headers"]["authorization"] == f"Bearer {KEY}"
    assert submit["status"] == 200 and '"prompt"' in submit["body"]
    assert (poll["query"], poll["status"]) == ("task_id=nope", 404)


def test_request_log_is_bounded(sim: Sim) -> None:
    sim.profile(request_log_size=3, request_log_body_chars=10)
    with sim.client() as client:
        for _ in range(5):
            client.get("/v3/async/task-result", params={"task_id": "x"})
        client.post(NOVITA_SUBMIT, json=novita_body())
    log = sim.stats()["request_log"]
    assert len(log) == 3 and len(log[-1]["body"]) == 10


def test_reset_forgets_everything(sim: Sim) -> None:
    with sim.client() as client:
        task_id = client.post(NOVITA_SUBMIT, json=novita_body()).json()["task_id"]
        sim.control.post("/_sim/reset")
        gone = client.get("/v3/async/task-result", params={"task_id": task_id})
    assert gone.status_code == 404
    stats = sim.stats()
    assert stats["submits"] == 0 and stats["videos"] == {} and stats["max_in_flight"] == {}
    assert [entry["status"] for entry in stats["request_log"]] == [404]


def test_profile_can_be_read_and_replaced(sim: Sim) -> None:
    sim.profile(rpm=5, keys={"k2": {"p_429": 0.5}})
    profile = sim.control.get("/_sim/profile").json()
    assert profile["rpm"] == 5 and profile["keys"]["k2"]["p_429"] == 0.5
    refused = sim.control.put("/_sim/profile", json={"p_429": 2})
    assert refused.status_code == 400 and "p_429" in refused.json()["error"]
    assert sim.control.get("/_sim/profile").json()["rpm"] == 5


def test_key_overrides_apply_only_the_fields_given() -> None:
    override = Behaviour(provider="highwayapi", rpm=2)
    profile = SimProfile(rpm=10, time_factor=5, keys={"hw": override})
    assert profile.for_key("hw").rpm == 2
    assert profile.for_key("hw").time_factor == 5
    assert profile.for_key("hw").provider == "highwayapi"
    assert profile.for_key("other").rpm == 10


def test_load_profile(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text('{"time_factor": 50, "api_keys": ["a"], "keys": {"a": {"concurrency": 3}}}')
    profile = load_profile(str(path))
    assert profile.time_factor == 50 and profile.for_key("a").concurrency == 3
    assert profile.accepts("a") and not profile.accepts("b")
    assert load_profile(None) == SimProfile()
    path.write_text('{"time_factor": 0}')
    with pytest.raises(ProfileError, match="time_factor"):
        load_profile(str(path))
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(str(tmp_path / "missing.json"))
    path.write_text('{"keys": {"a": {"seed": 1}}}')  # seed is global, not per key
    with pytest.raises(ProfileError):
        load_profile(str(path))
