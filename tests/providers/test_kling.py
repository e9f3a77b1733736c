"""Kling: the per-request JWT, the image2video body, each task status, each error envelope."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from genbatch.config import ProviderSettings
from genbatch.errors import (
    AmbiguousSubmit,
    ConfigError,
    PermanentProviderError,
    RateLimited,
    RetryableProviderError,
    SlotFull,
)
from genbatch.models import GenerationRequest, TaskStatus
from genbatch.providers import make_provider, validate_request
from genbatch.providers.failures import FailureClass, failure_class
from genbatch.providers.kling import KlingProvider
from genbatch.providers.kling_wire import encode_jwt, parse_callback

from .conftest import IMAGE, FakeProvider

ACCESS, SECRET = "ak-test-access", "sk-test-SECRET-value"
MODEL = "kling-v2-1"
PATH = "/v1/videos/image2video"
Build = Callable[..., KlingProvider]


@pytest.fixture
def kling(fake: FakeProvider) -> Iterator[Build]:
    clients: list[httpx.Client] = []

    def build(secret: str | None = SECRET) -> KlingProvider:
        client = httpx.Client(transport=httpx.MockTransport(fake), timeout=7.0)
        clients.append(client)
        options = (("secret_key", SecretStr(secret)),) if secret else ()
        settings = ProviderSettings(name="kling", base_url="https://api.kling.test",
                                    api_key=SecretStr(ACCESS), max_in_flight=4,
                                    options=options)
        adapter = make_provider(settings, client)
        assert isinstance(adapter, KlingProvider)
        return adapter

    yield build
    for client in clients:
        client.close()


def ok(data: dict[str, Any]) -> dict[str, Any]:
    return {"code": 0, "message": "SUCCEED", "request_id": "req-1", "data": data}


def _decode(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def test_every_request_carries_a_fresh_hs256_jwt_signed_with_the_secret(
        kling: Build, fake: FakeProvider) -> None:
    fake.reply(200, ok({"task_id": "t1", "task_status": "submitted"}))
    before = int(time.time())
    kling().submit(MODEL, GenerationRequest(image=IMAGE, prompt="p"))
    scheme, _, token = fake.last.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    header, claims, signature = token.split(".")
    assert _decode(header) == {"alg": "HS256", "typ": "JWT"}
    payload = _decode(claims)
    assert payload["iss"] == ACCESS
    assert before + 1800 <= payload["exp"] <= int(time.time()) + 1800
    assert before - 5 <= payload["nbf"] <= int(time.time()) - 5
    expected = hmac.new(SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "==") == expected
    assert SECRET not in fake.last.headers["authorization"]


def test_jwt_is_deterministic_for_a_given_time() -> None:
    assert encode_jwt("a", "s", now=1000) == encode_jwt("a", "s", now=1000)
    assert encode_jwt("a", "s", now=1000) != encode_jwt("a", "other", now=1000)


def test_a_missing_secret_key_is_a_config_error_naming_the_setting(kling: Build) -> None:
    with pytest.raises(ConfigError, match="GENBATCH_KLING_SECRET_KEY"):
        kling(secret=None).submit(MODEL, GenerationRequest(image=IMAGE))


def test_body_maps_resolution_to_mode_and_carries_our_ids(
        kling: Build, fake: FakeProvider) -> None:
    fake.reply(200, ok({"task_id": "t1", "task_status": "submitted"}))
    request = GenerationRequest(image="data:image/png;base64,AAAA", prompt="a cat",
                                last_image="https://cdn.example.com/last.png",
                                resolution="1080p", duration=10)
    assert kling().submit(MODEL, request, webhook_url="https://hooks.example/x",
                          client_ref="item-1.2") == "t1"
    assert fake.last.url.path == PATH
    assert fake.body() == {
        "model_name": "kling-v2-1", "image": "AAAA", "prompt": "a cat",
        "image_tail": "https://cdn.example.com/last.png", "mode": "pro", "duration": "10",
        "external_task_id": "item-1.2", "callback_url": "https://hooks.example/x"}


@pytest.mark.parametrize(("raw", "status"), [
    ("submitted", TaskStatus.QUEUED), ("processing", TaskStatus.RUNNING),
    ("succeed", TaskStatus.SUCCEEDED), ("failed", TaskStatus.FAILED),
    ("mystery", TaskStatus.UNKNOWN)])
def test_each_task_status(kling: Build, fake: FakeProvider, raw: str,
                          status: TaskStatus) -> None:
    task: dict[str, Any] = {"task_id": "t1", "task_status": raw,
                            "task_status_msg": "content risk" if raw == "failed" else ""}
    if raw == "succeed":
        task["task_result"] = {"videos": [{"id": "v", "url": "https://v.klingai.com/a.mp4",
                                           "duration": "5.1"}]}
    fake.reply(200, ok(task))
    result = kling().poll(MODEL, "t1")
    assert fake.last.url.path == f"{PATH}/t1"
    assert result.status is status
    if raw == "succeed":
        assert result.video_url == "https://v.klingai.com/a.mp4"
        assert result.usage_seconds == 5.1
    if raw == "failed":
        assert result.error_message == "content risk"


@pytest.mark.parametrize(("status", "code", "error"), [
    (429, 1303, SlotFull), (429, 1302, RateLimited), (401, 1004, PermanentProviderError),
    (400, 1201, PermanentProviderError), (429, 1102, PermanentProviderError),
    (500, 5000, AmbiguousSubmit), (503, 5001, AmbiguousSubmit)])
def test_each_error_envelope_on_submit(kling: Build, fake: FakeProvider, status: int,
                                       code: int, error: type[Exception]) -> None:
    fake.reply(status, {"code": code, "message": f"error {code}", "request_id": "r"})
    with pytest.raises(error) as caught:
        kling().submit(MODEL, GenerationRequest(image=IMAGE))
    assert getattr(caught.value, "code", None) == str(code)


def test_account_codes_pause_the_account(kling: Build, fake: FakeProvider) -> None:
    for code, kind in ((1102, FailureClass.BALANCE), (1004, FailureClass.AUTH)):
        fake.reply(429 if code == 1102 else 401, {"code": code, "message": "m"})
        with pytest.raises(PermanentProviderError) as caught:
            kling().submit(MODEL, GenerationRequest(image=IMAGE))
        assert failure_class(caught.value) is kind


def test_slot_full_is_not_an_account_failure(kling: Build, fake: FakeProvider) -> None:
    fake.reply(200, {"code": 1303, "message": "parallel task over resource pack limit"})
    with pytest.raises(SlotFull) as caught:
        kling().submit(MODEL, GenerationRequest(image=IMAGE))
    assert failure_class(caught.value) is None


def test_poll_errors_are_retryable(kling: Build, fake: FakeProvider) -> None:
    fake.reply(500, {"code": 5000, "message": "server"})
    with pytest.raises(RetryableProviderError):
        kling().poll(MODEL, "t1")


def test_lookup_by_external_task_id(kling: Build, fake: FakeProvider) -> None:
    fake.reply(200, ok({"task_id": "t9", "task_status": "processing",
                        "task_info": {"external_task_id": "item-1.1"}}))
    assert kling().lookup(MODEL, "item-1.1") == "t9"
    assert fake.last.url.path == f"{PATH}/item-1.1"
    fake.reply(404, {"code": 1203, "message": "task not found"})
    assert kling().lookup(MODEL, "item-1.1") is None
    fake.reply(500, {"code": 5000, "message": "server"})
    with pytest.raises(RetryableProviderError):
        kling().lookup(MODEL, "item-1.1")


def test_the_task_list_reads_each_task_as_a_query_does(kling: Build,
                                                       fake: FakeProvider) -> None:
    video = {"videos": [{"id": "v", "url": "https://v.klingai.com/a.mp4", "duration": "5"}]}
    fake.reply(200, {"code": 0, "message": "SUCCEED", "request_id": "r", "data": [
        {"task_id": "t2", "task_status": "processing"},
        {"task_id": "t1", "task_status": "succeed", "task_result": video},
        {"task_status": "failed"}]})  # no id: nothing to match it to
    listed = kling().recent(MODEL, 900)
    assert [(task, r.status) for task, r in listed] == [
        ("t2", TaskStatus.RUNNING), ("t1", TaskStatus.SUCCEEDED)]
    assert listed[1][1].video_url == "https://v.klingai.com/a.mp4"
    assert fake.last.url.path == PATH
    assert dict(fake.last.url.params) == {"pageNum": "1", "pageSize": "500"}  # Kling's most
    fake.reply(500, {"code": 5000, "message": "server"})
    with pytest.raises(RetryableProviderError):
        kling().recent(MODEL, 10)


def test_callback_body_is_the_task_object() -> None:
    parsed = parse_callback({"task_id": "t1", "task_status": "succeed", "task_result": {
        "videos": [{"id": "v", "url": "https://v.klingai.com/a.mp4", "duration": "5"}]}})
    assert parsed is not None
    assert parsed[0] == "t1" and parsed[1].status is TaskStatus.SUCCEEDED
    assert parse_callback({"unrelated": 1}) is None


@pytest.mark.parametrize(("fields", "field"), [
    ({"duration": 7}, "duration"), ({"resolution": "480p"}, "resolution"),
    ({"ratio": "16:9"}, "ratio"), ({"seed": 1}, "seed"),
    ({"last_image": IMAGE}, "last_image"),  # std mode (720p): no end frame
    ({"service_tier": "flex"}, "service_tier"), ({"prompt": "x" * 2501}, "prompt"),
    ({"generate_audio": True}, "generate_audio")])
def test_validation(fields: dict[str, Any], field: str) -> None:
    problems = validate_request("kling", MODEL, GenerationRequest(image=IMAGE, **fields))
    assert [p.field for p in problems] == [field]


@pytest.mark.parametrize(("image", "ok"), [
    ("images/a.webp", False), ("data:image/gif;base64,R0lG", False), ("images/a.JPG", True),
    ("data:image/png;base64,iVBO", True), ("https://cdn.example.com/a.webp", True),
    ("stored:ab12", True)])
def test_kling_takes_jpeg_and_png(image: str, ok: bool) -> None:
    problems = validate_request("kling", MODEL, GenerationRequest(image=image))
    assert [p.field for p in problems] == ([] if ok else ["image"])


def test_flex_refusal_names_the_providers_that_have_one() -> None:
    problems = validate_request("kling", MODEL,
                                GenerationRequest(image=IMAGE, service_tier="flex"))
    assert "byteplus" in problems[0].message


def test_end_frame_in_pro_mode_and_expiry_are_accepted() -> None:
    request = GenerationRequest(image=IMAGE, last_image=IMAGE, resolution="1080p",
                                execution_expires_after=7200)
    assert validate_request("kling", MODEL, request) == []
