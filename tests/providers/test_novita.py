"""Novita and HighwayAPI (same protocol): bodies, submit and poll paths, status parsing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from genbatch.errors import PermanentProviderError, RequestInvalid, RetryableProviderError
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers.base import Provider

from .conftest import IMAGE, FakeProvider

Build = Callable[..., Provider]
Req = Callable[..., GenerationRequest]
V15, V1_PRO, V1_LITE = "seedance-v1.5-pro-i2v", "seedance-v1-pro-i2v", "seedance-v1-lite-i2v"


def polled(
    adapter: Build, fake: FakeProvider, body: dict[str, Any], name: str = "novita"
) -> PollResult:
    fake.reply(200, body)
    return adapter(name).poll(V15, "830d9c90-d53f")


# -- bodies -----------------------------------------------------------------------------------


def test_15_pro_minimal_body_leaves_unset_fields_out(adapter: Build, req: Req) -> None:
    assert adapter("novita").build_body(V15, req()) == {
        "prompt": "a cat turns its head",
        "image": IMAGE,
    }


def test_15_pro_full_body_uses_the_wire_names(adapter: Build, req: Req) -> None:
    request = req(
        last_image="data:image/png;base64,AAAA",
        resolution="480p",
        ratio="adaptive",
        duration=12,
        seed=4294967295,
        camera_fixed=True,
        generate_audio=False,
        watermark=True,
        fps=24,
        service_tier="flex",
        execution_expires_after=3600,
    )
    assert adapter("novita").build_body(V15, request) == {
        "prompt": "a cat turns its head",
        "image": IMAGE,
        "last_image": "data:image/png;base64,AAAA",
        "resolution": "480p",
        "ratio": "adaptive",
        "duration": 12,
        "seed": 4294967295,
        "camera_fixed": True,
        "generate_audio": False,
        "watermark": True,
        "fps": 24,
        "service_tier": "flex",
        "execution_expires_after": 3600,
    }


@pytest.mark.parametrize("model", [V1_PRO, V1_LITE])
def test_v1_sends_aspect_ratio_and_a_resolution_even_when_unset(
    adapter: Build, req: Req, model: str
) -> None:
    body = adapter("novita").build_body(model, req(prompt="", ratio="9:16", duration=10))
    assert body == {"image": IMAGE, "resolution": "720p", "aspect_ratio": "9:16", "duration": 10}


def test_v1_keeps_an_explicit_resolution(adapter: Build, req: Req) -> None:
    assert adapter("novita").build_body(V1_PRO, req(resolution="1080p"))["resolution"] == "1080p"


def test_build_body_refuses_an_invalid_request(adapter: Build, req: Req) -> None:
    with pytest.raises(RequestInvalid, match="duration: must be 5 or 10"):
        adapter("novita").build_body(V1_PRO, req(duration=7))


def test_highwayapi_takes_1080p_on_15_pro(adapter: Build, req: Req) -> None:
    assert adapter("highwayapi").build_body(V15, req(resolution="1080p"))["resolution"] == "1080p"
    with pytest.raises(RequestInvalid):
        adapter("novita").build_body(V15, req(resolution="1080p"))


# -- submit and poll --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "host"), [("novita", "api.novita.test"), ("highwayapi", "api.highwayapi.test")]
)
@pytest.mark.parametrize("model", [V15, V1_PRO, V1_LITE])
def test_submit_posts_to_the_model_slug_and_returns_the_task_id(
    adapter: Build, req: Req, fake: FakeProvider, name: str, host: str, model: str
) -> None:
    fake.reply(200, {"task_id": "830d9c90-d53f-4c5a-8009"})
    assert adapter(name).submit(model, req()) == "830d9c90-d53f-4c5a-8009"
    assert fake.last.method == "POST"
    assert fake.last.url.host == host
    assert fake.last.url.path == f"/v3/async/{model}"
    assert fake.body()["image"] == IMAGE


def test_a_numeric_task_id_becomes_a_string(adapter: Build, req: Req, fake: FakeProvider) -> None:
    fake.reply(200, {"task_id": 12345})
    assert adapter("novita").submit(V15, req()) == "12345"


def test_an_invalid_request_is_never_sent(adapter: Build, req: Req, fake: FakeProvider) -> None:
    with pytest.raises(PermanentProviderError) as info:
        adapter("novita").submit(V15, req(prompt=""))
    assert info.value.code == "REQUEST_INVALID"
    assert "prompt: is required" in info.value.message
    assert fake.requests == []


def test_poll_gets_the_task_result_by_query(adapter: Build, fake: FakeProvider) -> None:
    polled(adapter, fake, {"task": {"status": "TASK_STATUS_QUEUED"}})
    assert fake.last.method == "GET"
    assert fake.last.url.path == "/v3/async/task-result"
    assert fake.last.url.params["task_id"] == "830d9c90-d53f"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("TASK_STATUS_QUEUED", TaskStatus.QUEUED),
        ("TASK_STATUS_PROCESSING", TaskStatus.RUNNING),
        ("TASK_STATUS_RUNNING", TaskStatus.RUNNING),
        ("TASK_STATUS_SUCCEED", TaskStatus.SUCCEEDED),
        ("TASK_STATUS_FAILED", TaskStatus.FAILED),
        ("TASK_STATUS_CANCELED", TaskStatus.CANCELLED),
        ("TASK_STATUS_UNKNOWN", TaskStatus.UNKNOWN),
        ("TASK_STATUS_SOMETHING_NEW", TaskStatus.UNKNOWN),
        ("", TaskStatus.UNKNOWN),
    ],
)
@pytest.mark.parametrize("name", ["novita", "highwayapi"])
def test_each_status(
    adapter: Build, fake: FakeProvider, name: str, raw: str, status: TaskStatus
) -> None:
    result = polled(adapter, fake, {"task": {"status": raw}}, name)
    assert result.status is status
    assert result.raw_status == raw


def test_unknown_statuses_are_not_terminal(adapter: Build, fake: FakeProvider) -> None:
    result = polled(adapter, fake, {"task": {"status": "TASK_STATUS_UNKNOWN"}})
    assert not result.status.terminal


def test_succeeded_with_numbers_as_strings(adapter: Build, fake: FakeProvider) -> None:
    body = {
        "extra": {"seed": "158881667", "debug_info": {"submit_time_ms": "1732200000000"}},
        "task": {
            "task_id": "830d9c90-d53f",
            "status": "TASK_STATUS_SUCCEED",
            "reason": "",
            "eta": "0",
            "progress_percent": "100",
        },
        "images": [],
        "videos": [
            {"video_url": "https://out.test/v.mp4?X-Amz-Expires=3600", "video_url_ttl": "3600"}
        ],
        "audios": [],
    }
    assert polled(adapter, fake, body) == PollResult(
        status=TaskStatus.SUCCEEDED,
        raw_status="TASK_STATUS_SUCCEED",
        progress=100.0,
        eta_s=None,
        video_url="https://out.test/v.mp4?X-Amz-Expires=3600",
        video_ttl_s=3600,
        seed=158881667,
    )


def test_processing_reports_eta_and_progress(adapter: Build, fake: FakeProvider) -> None:
    body = {"task": {"status": "TASK_STATUS_PROCESSING", "eta": 45, "progress_percent": 40}}
    result = polled(adapter, fake, body)
    assert (result.eta_s, result.progress) == (45.0, 40.0)


def test_an_integer_ttl_is_read_too(adapter: Build, fake: FakeProvider) -> None:
    body = {
        "task": {"status": "TASK_STATUS_SUCCEED"},
        "videos": [{"video_url": "u", "video_url_ttl": 3600}],
    }
    assert polled(adapter, fake, body).video_ttl_s == 3600


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"task": None, "videos": None},
        {"task": {}, "videos": [], "extra": {"seed": ""}},
        {"task": {"status": 3, "eta": "soon", "progress_percent": None}, "videos": [{}]},
    ],
)
def test_missing_or_odd_fields_are_tolerated(
    adapter: Build, fake: FakeProvider, body: dict[str, Any]
) -> None:
    result = polled(adapter, fake, body)
    assert result.status is TaskStatus.UNKNOWN
    assert (result.video_url, result.eta_s, result.seed) == (None, None, None)


def test_succeeded_without_videos_has_no_url(adapter: Build, fake: FakeProvider) -> None:
    result = polled(adapter, fake, {"task": {"status": "TASK_STATUS_SUCCEED"}, "videos": []})
    assert result.status is TaskStatus.SUCCEEDED
    assert result.video_url is None


def test_failed_carries_the_reason(adapter: Build, fake: FakeProvider) -> None:
    body = {"task": {"status": "TASK_STATUS_FAILED", "reason": "content moderation"}}
    result = polled(adapter, fake, body)
    assert (result.status, result.error_code, result.error_message) == (
        TaskStatus.FAILED,
        "TASK_STATUS_FAILED",
        "content moderation",
    )


def test_an_http_500_task_failed_on_poll_is_a_failed_task(
    adapter: Build, fake: FakeProvider
) -> None:
    fake.reply(500, {"code": 500, "reason": "TASK_FAILED", "message": "generation failed"})
    result = adapter("novita").poll(V15, "830d9c90-d53f")
    assert (result.status, result.error_code, result.error_message) == (
        TaskStatus.FAILED,
        "TASK_FAILED",
        "generation failed",
    )


def test_other_500s_on_poll_stay_retryable(adapter: Build, fake: FakeProvider) -> None:
    fake.reply(500, {"code": 500, "reason": "GET_RESULT_FAILED", "message": "try later"})
    with pytest.raises(RetryableProviderError):
        adapter("novita").poll(V15, "830d9c90-d53f")


def test_cancel_is_not_supported_and_sends_nothing(adapter: Build, fake: FakeProvider) -> None:
    assert adapter("novita").cancel(V15, "830d9c90-d53f") is False
    assert adapter("highwayapi").cancel(V15, "830d9c90-d53f") is False
    assert fake.requests == []
