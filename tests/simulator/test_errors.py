"""Refusals in each provider's own envelope: auth, per-model validation, unknown ids."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image

from tests.simulator.helpers import (
    BP_MODEL,
    KEY,
    Sim,
    byteplus_body,
    novita_body,
    wavespeed_body,
)

NOVITA_SUBMIT = "/v3/async/seedance-v1.5-pro-i2v"
WS_SUBMIT = "/api/v3/bytedance/seedance-v1.5-pro/image-to-video"
BP_TASKS = "/api/v3/contents/generations/tasks"


def data_uri(width: int, height: int, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def novita_error(response: Any, status: int, reason: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status and body["reason"] == reason and body["metadata"] == {}
    message: str = body["message"]
    return message


def byteplus_error(response: Any, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    assert error["code"] == code and set(error) == {"code", "message", "param", "type"}
    return error


# --- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", NOVITA_SUBMIT, novita_body()),
        ("GET", "/v3/async/task-result?task_id=x", None),
        ("POST", WS_SUBMIT, wavespeed_body()),
        ("GET", "/api/v3/predictions/x/result", None),
        ("POST", BP_TASKS, byteplus_body()),
        ("GET", BP_TASKS + "/cgt-x", None),
        ("DELETE", BP_TASKS + "/cgt-x", None),
    ],
)
def test_every_provider_route_needs_a_bearer_key(
    sim: Sim, method: str, path: str, body: Any
) -> None:
    response = sim.control.request(method, path, json=body)
    assert response.status_code in (400, 401)
    response = sim.control.request(method, path, json=body, headers={"Authorization": KEY})
    assert response.status_code in (401, 403)  # not "Bearer <key>"
    assert sim.stats()["submits"] == 0


def test_auth_errors_per_provider(sim: Sim) -> None:
    missing = sim.control.post(NOVITA_SUBMIT, json=novita_body())
    novita_error(missing, 400, "MISSING_API_KEY")
    sim.profile(api_keys=["good"])
    with sim.client("bad") as client:
        novita_error(client.post(NOVITA_SUBMIT, json=novita_body()), 403, "INVALID_API_KEY")
        ws = client.post(WS_SUBMIT, json=wavespeed_body())
        assert ws.status_code == 401 and ws.json()["code"] == 401 and ws.json()["message"]
        byteplus_error(client.post(BP_TASKS, json=byteplus_body()), 401, "AuthenticationError")
    with sim.client("good") as client:
        assert client.post(NOVITA_SUBMIT, json=novita_body()).status_code == 200


# --- Novita / HighwayAPI ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        ("seedance-v1.5-pro-i2v", {"prompt": "p"}, "image"),
        ("seedance-v1.5-pro-i2v", {"image": "https://x/a.png"}, "prompt"),
        ("seedance-v1.5-pro-i2v", novita_body(duration=3), "duration"),
        ("seedance-v1.5-pro-i2v", novita_body(duration=13), "duration"),
        ("seedance-v1.5-pro-i2v", novita_body(resolution="1080p"), "resolution"),
        ("seedance-v1.5-pro-i2v", novita_body(fps=30), "fps"),
        ("seedance-v1.5-pro-i2v", novita_body(seed=4294967296), "seed"),
        ("seedance-v1.5-pro-i2v", novita_body(ratio="2:1"), "ratio"),
        ("seedance-v1.5-pro-i2v", novita_body(aspect_ratio="16:9"), "aspect_ratio"),
        ("seedance-v1.5-pro-i2v", novita_body(service_tier="batch"), "service_tier"),
        ("seedance-v1.5-pro-i2v", novita_body(execution_expires_after=345600), "execution"),
        ("seedance-v1.5-pro-i2v", novita_body(camera_fixed="yes"), "camera_fixed"),
        ("seedance-v1-pro-i2v", {"image": "https://x/a.png"}, "resolution"),
        ("seedance-v1-pro-i2v", novita_body(duration=6), "duration"),
        ("seedance-v1-pro-i2v", novita_body(aspect_ratio="adaptive"), "aspect_ratio"),
        ("seedance-v1-pro-i2v", novita_body(aspect_ratio="9:21"), "aspect_ratio"),
        ("seedance-v1-lite-i2v", novita_body(seed=2147483648), "seed"),
        ("seedance-v1-pro-i2v", novita_body(ratio="16:9"), "ratio"),
        ("seedance-v1-pro-i2v", novita_body(seed=2147483648), "seed"),
        ("seedance-v1-pro-i2v", novita_body(generate_audio=True), "generate_audio"),
        ("seedance-v1-lite-i2v", novita_body(prompt="x" * 2001), "prompt"),
    ],
)
def test_novita_validation(sim: Sim, model: str, body: dict[str, Any], field: str) -> None:
    with sim.client() as client:
        response = client.post(f"/v3/async/{model}", json=body)
    assert field in novita_error(response, 400, "INVALID_REQUEST_BODY")
    assert sim.stats()["submits"] == 0


def test_novita_accepts_documented_extremes(sim: Sim) -> None:
    body = novita_body(
        ratio="adaptive", duration=12, fps=24, seed=4294967295, camera_fixed=True,
        watermark=False, generate_audio=False, service_tier="flex",
        execution_expires_after=259200, last_image="https://x/b.png", resolution="480p",
    )
    with sim.client() as client:
        assert client.post(NOVITA_SUBMIT, json=body).status_code == 200
        v1 = novita_body(aspect_ratio="9:16", duration=10, seed=-1, resolution="1080p")
        assert client.post("/v3/async/seedance-v1-lite-i2v", json=v1).status_code == 200


def test_highwayapi_rules_differ_on_1080p_and_bare_base64(sim: Sim) -> None:
    bare = data_uri(640, 360).split(",", 1)[1]
    with sim.client(prefix="/novita") as novita, sim.client(prefix="/highwayapi") as highway:
        assert novita.post(NOVITA_SUBMIT, json=novita_body(resolution="1080p")).status_code == 400
        assert highway.post(NOVITA_SUBMIT, json=novita_body(resolution="1080p")).status_code == 200
        assert novita.post(NOVITA_SUBMIT, json=novita_body(bare)).status_code == 200
        refused = highway.post(NOVITA_SUBMIT, json=novita_body(bare))
    novita_error(refused, 400, "INVALID_IMAGE_FORMAT")


def test_unprefixed_novita_paths_follow_the_key_profile(sim: Sim) -> None:
    sim.profile(keys={"hw-key": {"provider": "highwayapi"}})
    body = novita_body(resolution="1080p")
    with sim.client("hw-key") as highway, sim.client() as novita:
        task_id = highway.post(NOVITA_SUBMIT, json=body).json()["task_id"]
        assert novita.post(NOVITA_SUBMIT, json=body).status_code == 400
        # The task belongs to HighwayAPI: found there, not at Novita.
        found = highway.get("/highwayapi/v3/async/task-result", params={"task_id": task_id})
        assert found.status_code == 200
    with sim.client("hw-key", prefix="/novita") as other:
        response = other.get("/v3/async/task-result", params={"task_id": task_id})
    novita_error(response, 404, "TASK_NOT_FOUND")


@pytest.mark.parametrize(
    ("size", "reason"),
    [((300, 300), "INVALID_IMAGE_SIZE"), ((1200, 301), "INVALID_IMAGE_SIZE")],
)
def test_novita_checks_data_uri_images(sim: Sim, size: tuple[int, int], reason: str) -> None:
    with sim.client() as client:
        assert client.post(NOVITA_SUBMIT, json=novita_body(data_uri(301, 400))).status_code == 200
        response = client.post(NOVITA_SUBMIT, json=novita_body(data_uri(*size)))
    novita_error(response, 400, reason)


def test_novita_unknown_task_model_and_bad_json(sim: Sim) -> None:
    with sim.client() as client:
        missing = client.get("/v3/async/task-result", params={"task_id": "nope"})
        novita_error(missing, 404, "TASK_NOT_FOUND")
        novita_error(client.post("/v3/async/seedance-9", json={}), 404, "API_NOT_FOUND")
        bad = client.post(NOVITA_SUBMIT, content=b"{not json")
        novita_error(bad, 400, "INVALID_REQUEST_BODY")


def test_tasks_are_private_to_their_key(sim: Sim) -> None:
    with sim.client() as owner, sim.client("someone-else") as other:
        task_id = owner.post(NOVITA_SUBMIT, json=novita_body()).json()["task_id"]
        response = other.get("/v3/async/task-result", params={"task_id": task_id})
    novita_error(response, 404, "TASK_NOT_FOUND")


# --- WaveSpeed --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (WS_SUBMIT, {"image": "https://x/a.png"}, "prompt"),
        (WS_SUBMIT, {"prompt": "p"}, "image"),
        (WS_SUBMIT, wavespeed_body(service_tier="flex"), "service_tier"),
        (WS_SUBMIT, wavespeed_body(ratio="16:9"), "ratio"),
        (WS_SUBMIT, wavespeed_body(aspect_ratio="adaptive"), "aspect_ratio"),
        (WS_SUBMIT, wavespeed_body(resolution="1080p"), "resolution"),
        (WS_SUBMIT, wavespeed_body(duration=13), "duration"),
        (WS_SUBMIT, wavespeed_body(seed=2147483648), "seed"),
        (WS_SUBMIT, wavespeed_body(fps=24), "fps"),
        (WS_SUBMIT, wavespeed_body(data_uri(640, 360)), "image"),
        ("/api/v3/bytedance/seedance-v1-pro-i2v-720p", wavespeed_body(duration=4), "duration"),
        ("/api/v3/bytedance/seedance-v1-pro-i2v-720p", wavespeed_body(resolution="720p"),
         "resolution"),
    ],
)
def test_wavespeed_validation(sim: Sim, path: str, body: dict[str, Any], field: str) -> None:
    with sim.client() as client:
        response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 400 and field in response.json()["message"]
    assert sim.stats()["submits"] == 0


def test_wavespeed_unknown_model_and_prediction(sim: Sim) -> None:
    with sim.client() as client:
        model = client.post("/api/v3/bytedance/seedance-v9/image-to-video", json={})
        prediction = client.get("/api/v3/predictions/0123/result")
    assert (model.status_code, model.json()["code"]) == (404, 404)
    assert (prediction.status_code, prediction.json()["code"]) == (404, 404)


# --- BytePlus ---------------------------------------------------------------------------


def _content(*items: dict[str, Any]) -> list[dict[str, Any]]:
    return list(items)


TEXT = {"type": "text", "text": "a cat"}
FIRST = {"type": "image_url", "image_url": {"url": "https://x/a.png"}, "role": "first_frame"}
LAST = {"type": "image_url", "image_url": {"url": "https://x/b.png"}, "role": "last_frame"}


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"content": [TEXT, FIRST]}, "MissingParameter", "model"),
        ({"model": BP_MODEL}, "MissingParameter", "content"),
        (byteplus_body(duration=3), "InvalidParameter", "duration"),
        (byteplus_body(duration=-1), "InvalidParameter", "duration"),
        (byteplus_body(duration=4, frames=97), "InvalidParameter", "frames"),
        (byteplus_body(frames=30), "InvalidParameter", "frames"),
        (byteplus_body(resolution="2k"), "InvalidParameter", "resolution"),
        (byteplus_body(ratio="2:1"), "InvalidParameter", "ratio"),
        (byteplus_body(execution_expires_after=345600), "InvalidParameter",
         "execution_expires_after"),
        (byteplus_body(service_tier="batch"), "InvalidParameter", "service_tier"),
        (byteplus_body(model="seedance-1-0-pro-250528", generate_audio=True),
         "InvalidParameter", "generate_audio"),
        (byteplus_body(model="seedance-1-0-pro-250528", duration=13), "InvalidParameter",
         "duration"),
        (byteplus_body(aspect_ratio="16:9"), "InvalidParameter", "aspect_ratio"),
        ({"model": BP_MODEL, "content": []}, "InvalidParameter", "content"),
        ({"model": BP_MODEL, "content": [TEXT, LAST]}, "InvalidParameter", "content"),
        ({"model": BP_MODEL, "content": [TEXT, FIRST, FIRST]}, "InvalidParameter", "content"),
        ({"model": BP_MODEL, "content": [{"type": "video_url"}]}, "InvalidParameter",
         "content[0].type"),
        ({"model": BP_MODEL, "content": [{**FIRST, "role": "middle"}]}, "InvalidParameter",
         "content[0].role"),
        ({"model": BP_MODEL, "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
         "InvalidParameter", "content[0].image_url.url"),
        ({"model": "seedance-1-0-lite-i2v-250428", "content": [TEXT]}, "MissingParameter",
         "content"),
    ],
)
def test_byteplus_validation(sim: Sim, body: dict[str, Any], code: str, param: str) -> None:
    with sim.client() as client:
        response = client.post(BP_TASKS, json=body)
    error = byteplus_error(response, 400, code)
    assert error["param"] == param and error["type"] == "BadRequest"
    assert "Request id:" in error["message"]
    assert sim.stats()["submits"] == 0


def test_byteplus_accepts_frames_1080p_and_last_frame(sim: Sim) -> None:
    with sim.client() as client:
        for body in (
            byteplus_body(frames=121),
            byteplus_body(duration=12, resolution="1080p", generate_audio=False),
            {"model": BP_MODEL, "content": [TEXT, FIRST, LAST], "service_tier": "flex"},
            {"model": "seedance-1-0-pro-250528", "content": [TEXT]},  # text-to-video
        ):
            assert client.post(BP_TASKS, json=body).status_code == 200, body


def test_byteplus_unknown_model_and_task(sim: Sim) -> None:
    with sim.client() as client:
        model = client.post(BP_TASKS, json=byteplus_body(model="seedance-9"))
        task = client.get(BP_TASKS + "/cgt-20250101000000-abcde")
    byteplus_error(model, 404, "InvalidEndpoint.NotFound")
    assert byteplus_error(task, 404, "ResourceNotFound")["type"] == "NotFound"
