"""Failure injection: each mode is observable on the wire and in the stats."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.simulator.helpers import (
    TLS,
    Sim,
    byteplus_body,
    novita_body,
    wait_until,
    wavespeed_body,
)

NOVITA_SUBMIT = "/v3/async/seedance-v1.5-pro-i2v"
WS_SUBMIT = "/api/v3/bytedance/seedance-v1.5-pro/image-to-video"
BP_TASKS = "/api/v3/contents/generations/tasks"
SUBMITS: list[tuple[str, dict[str, Any]]] = [
    (NOVITA_SUBMIT, novita_body()),
    (WS_SUBMIT, wavespeed_body()),
    (BP_TASKS, byteplus_body()),
]


@pytest.mark.parametrize(("path", "body"), SUBMITS)
def test_injected_429_creates_nothing(sim: Sim, path: str, body: dict[str, Any]) -> None:
    sim.profile(p_429=1)
    with sim.client() as client:
        response = client.post(path, json=body)
    assert response.status_code == 429 and "retry-after" not in response.headers
    stats = sim.stats()
    assert (stats["submits"], stats["submit_attempts"], stats["responses_429"]) == (0, 1, 1)


@pytest.mark.parametrize(("path", "body"), SUBMITS)
def test_injected_5xx_on_submit_and_poll(sim: Sim, path: str, body: dict[str, Any]) -> None:
    with sim.client() as client:
        submitted = client.post(path, json=body).json()
        sim.profile(p_5xx=1)
        refused = client.post(path, json=body)
        task_id = submitted.get("task_id") or submitted.get("id") or submitted["data"]["id"]
        poll = {
            NOVITA_SUBMIT: f"/v3/async/task-result?task_id={task_id}",
            WS_SUBMIT: f"/api/v3/predictions/{task_id}/result",
            BP_TASKS: f"{BP_TASKS}/{task_id}",
        }[path]
        polled = client.get(poll)
    assert refused.status_code in (500, 502, 503) and polled.status_code in (500, 502, 503)
    assert refused.json() and polled.json()  # in the provider's envelope
    stats = sim.stats()
    assert (stats["submits"], stats["responses_5xx"], stats["polls"]) == (1, 2, 1)


@pytest.mark.parametrize(("path", "body"), SUBMITS)
def test_dropped_submit_creates_the_task(sim: Sim, path: str, body: dict[str, Any]) -> None:
    sim.profile(p_submit_timeout=1, submit_timeout_mode="drop")
    with sim.client() as client, pytest.raises(httpx.RemoteProtocolError):
        client.post(path, json=body)
    stats = sim.stats()
    assert (stats["submits"], stats["submit_timeouts"]) == (1, 1)
    assert stats["request_log"][-1]["status"] == "dropped"
    assert len(wait_until(sim.stats, lambda s: len(s["videos"]) == 1)["videos"]) == 1


def test_hanging_submit_times_the_client_out_but_creates_the_task(sim: Sim) -> None:
    sim.profile(p_submit_timeout=1, submit_timeout_mode="hang", submit_hang_s=30)
    headers = {"Authorization": "Bearer k"}
    client = httpx.Client(base_url=sim.url, headers=headers, timeout=0.2, verify=TLS)
    with client, pytest.raises(httpx.ReadTimeout):
        client.post(NOVITA_SUBMIT, json=novita_body())
    assert sim.stats()["submits"] == 1


def test_a_short_hang_answers_late(sim: Sim) -> None:
    sim.profile(p_submit_timeout=1, submit_timeout_mode="hang", submit_hang_s=0.05)
    with sim.client() as client:
        response = client.post(NOVITA_SUBMIT, json=novita_body())
    assert response.status_code == 200 and response.json()["task_id"]


@pytest.mark.parametrize(("path", "body"), SUBMITS)
def test_malformed_answers(sim: Sim, path: str, body: dict[str, Any]) -> None:
    sim.profile(p_malformed=1)
    with sim.client() as client:
        response = client.post(path, json=body)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    stats = sim.stats()
    assert (stats["submits"], stats["malformed"]) == (1, 1)  # the task exists


def test_injection_scope(sim: Sim) -> None:
    sim.profile(p_5xx=1, inject_on=["poll"])
    with sim.client() as client:
        task_id = client.post(NOVITA_SUBMIT, json=novita_body()).json()["task_id"]
        polled = client.get("/v3/async/task-result", params={"task_id": task_id})
    assert polled.status_code >= 500 and polled.json()["reason"] == "GET_RESULT_FAILED"


def test_injected_download_failures(sim: Sim) -> None:
    with sim.client() as client:
        task_id = client.post(NOVITA_SUBMIT, json=novita_body()).json()["task_id"]
        result = wait_until(
            lambda: client.get("/v3/async/task-result", params={"task_id": task_id}).json(),
            lambda r: r["videos"],
        )
    sim.profile(p_5xx=1, inject_on=["download"])
    assert sim.get(result["videos"][0]["video_url"]).status_code == 503
    sim.profile()
    assert sim.get(result["videos"][0]["video_url"]).status_code == 200


def final_state(sim: Sim, client: httpx.Client, path: str, body: dict[str, Any]) -> Any:
    submitted = client.post(path, json=body).json()
    if path == NOVITA_SUBMIT:
        return wait_until(
            lambda: client.get(
                "/v3/async/task-result", params={"task_id": submitted["task_id"]}
            ).json()["task"],
            lambda t: t["status"] == "TASK_STATUS_FAILED",
        )
    if path == WS_SUBMIT:
        return wait_until(
            lambda: client.get(submitted["data"]["urls"]["get"]).json(),
            lambda r: r["data"]["status"] == "failed",
        )
    return wait_until(
        lambda: client.get(f"{BP_TASKS}/{submitted['id']}").json(),
        lambda t: t["status"] == "failed",
    )


def test_task_failures_in_each_providers_shape(sim: Sim) -> None:
    sim.profile(p_task_fail=1)
    with sim.client() as client:
        novita = final_state(sim, client, NOVITA_SUBMIT, novita_body())
        wavespeed = final_state(sim, client, WS_SUBMIT, wavespeed_body())
        byteplus = final_state(sim, client, BP_TASKS, byteplus_body())
    assert novita["reason"]
    # WaveSpeed: still HTTP 200 / code 200; the failure is inside data.
    assert wavespeed["code"] == 200 and wavespeed["data"]["outputs"] == []
    assert isinstance(wavespeed["data"]["code"], int) and wavespeed["data"]["error"]
    assert byteplus["error"]["code"] and byteplus["error"]["message"]
    assert "content" not in byteplus
    stats = sim.stats()
    assert stats["tasks_by_status"] == {"failed": 3} and stats["videos"] == {}
