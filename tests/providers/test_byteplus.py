"""BytePlus ModelArk: content[] bodies, task parsing, usage tokens, cancel via DELETE."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from genbatch.errors import RateLimited, RetryableProviderError
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers.base import Provider

from .conftest import IMAGE, FakeProvider

Build = Callable[..., Provider]
Req = Callable[..., GenerationRequest]
V15, V1_PRO, V1_LITE = "seedance-v1.5-pro-i2v", "seedance-v1-pro-i2v", "seedance-v1-lite-i2v"
TASKS = "/api/v3/contents/generations/tasks"
LAST = "https://cdn.example.com/last.png"


def polled(adapter: Build, fake: FakeProvider, body: dict[str, Any]) -> PollResult:
    fake.reply(200, body)
    return adapter("byteplus").poll(V15, "cgt-20250331175019-68d9t")


def test_15_pro_body_puts_prompt_and_frames_in_content(adapter: Build, req: Req) -> None:
    request = req(
        last_image=LAST,
        resolution="1080p",
        ratio="adaptive",
        duration=8,
        seed=42,
        camera_fixed=False,
        watermark=False,
        generate_audio=True,
        service_tier="flex",
        execution_expires_after=86400,
    )
    assert adapter("byteplus").build_body(V15, request) == {
        "model": "seedance-1-5-pro-251215",
        "content": [
            {"type": "text", "text": "a cat turns its head"},
            {"type": "image_url", "image_url": {"url": IMAGE}, "role": "first_frame"},
            {"type": "image_url", "image_url": {"url": LAST}, "role": "last_frame"},
        ],
        "resolution": "1080p",
        "ratio": "adaptive",
        "duration": 8,
        "seed": 42,
        "camera_fixed": False,
        "generate_audio": True,
        "watermark": False,
        "service_tier": "flex",
        "execution_expires_after": 86400,
    }


@pytest.mark.parametrize(
    ("model", "wire"),
    [(V1_PRO, "seedance-1-0-pro-250528"), (V1_LITE, "seedance-1-0-lite-i2v-250428")],
)
def test_v1_minimal_body_has_no_text_item_and_no_unset_fields(
    adapter: Build, req: Req, model: str, wire: str
) -> None:
    assert adapter("byteplus").build_body(model, req(prompt="")) == {
        "model": wire,
        "content": [{"type": "image_url", "image_url": {"url": IMAGE}, "role": "first_frame"}],
    }


@pytest.mark.parametrize("base", ["https://ark.byteplus.test", "https://ark.byteplus.test/api/v3"])
def test_submit_posts_a_task_and_returns_its_id(
    adapter: Build, req: Req, fake: FakeProvider, base: str
) -> None:
    fake.reply(200, {"id": "cgt-20250331175019-68d9t"})
    assert adapter("byteplus", base).submit(V15, req()) == "cgt-20250331175019-68d9t"
    assert (fake.last.method, fake.last.url.path) == ("POST", TASKS)
    assert fake.body()["model"] == "seedance-1-5-pro-251215"


def test_poll_path(adapter: Build, fake: FakeProvider) -> None:
    polled(adapter, fake, {"status": "queued"})
    assert (fake.last.method, fake.last.url.path) == ("GET", f"{TASKS}/cgt-20250331175019-68d9t")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("queued", TaskStatus.QUEUED),
        ("running", TaskStatus.RUNNING),
        ("succeeded", TaskStatus.SUCCEEDED),
        ("failed", TaskStatus.FAILED),
        ("cancelled", TaskStatus.CANCELLED),
        ("expired", TaskStatus.EXPIRED),
        ("archived", TaskStatus.UNKNOWN),
    ],
)
def test_each_status(adapter: Build, fake: FakeProvider, raw: str, status: TaskStatus) -> None:
    result = polled(adapter, fake, {"id": "cgt-1", "status": raw})
    assert (result.status, result.raw_status) == (status, raw)
    assert result.status.terminal == (raw not in ("queued", "running", "archived"))


def test_succeeded_gives_video_url_usage_and_seed(adapter: Build, fake: FakeProvider) -> None:
    body = {
        "id": "cgt-1",
        "model": "seedance-1-5-pro-251215",
        "status": "succeeded",
        "content": {"video_url": "https://ark-content.test/v.mp4?sig=1"},
        "usage": {"completion_tokens": 108900, "total_tokens": 108900},
        "seed": 78674,
        "error": None,
    }
    assert polled(adapter, fake, body) == PollResult(
        status=TaskStatus.SUCCEEDED,
        raw_status="succeeded",
        progress=100.0,
        video_url="https://ark-content.test/v.mp4?sig=1",
        video_ttl_s=24 * 3600,
        usage_tokens=108900,
        seed=78674,
    )


def test_numbers_as_strings(adapter: Build, fake: FakeProvider) -> None:
    body = {"status": "succeeded", "usage": {"completion_tokens": "108900"}, "seed": "11"}
    result = polled(adapter, fake, body)
    assert (result.usage_tokens, result.seed) == (108900, 11)


def test_failed_carries_code_and_message(adapter: Build, fake: FakeProvider) -> None:
    body = {
        "status": "failed",
        "error": {"code": "OutputVideoSensitiveContentDetected", "message": "blocked"},
    }
    result = polled(adapter, fake, body)
    assert (result.status, result.error_code, result.error_message) == (
        TaskStatus.FAILED,
        "OutputVideoSensitiveContentDetected",
        "blocked",
    )


def test_expired_without_an_error_object(adapter: Build, fake: FakeProvider) -> None:
    result = polled(adapter, fake, {"status": "expired", "error": None})
    assert (result.status, result.error_code, result.error_message) == (
        TaskStatus.EXPIRED,
        "expired",
        "task expired",
    )


@pytest.mark.parametrize("body", [{}, {"status": None, "content": "x", "usage": []}])
def test_missing_fields_are_tolerated(
    adapter: Build, fake: FakeProvider, body: dict[str, Any]
) -> None:
    result = polled(adapter, fake, body)
    assert result.status is TaskStatus.UNKNOWN
    assert (result.video_url, result.usage_tokens) == (None, None)


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_deletes_a_queued_task(adapter: Build, fake: FakeProvider) -> None:
    fake.reply(200, {"id": "cgt-1", "status": "queued"})
    fake.reply(200, {})
    assert adapter("byteplus").cancel(V15, "cgt-1") is True
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("GET", f"{TASKS}/cgt-1"),
        ("DELETE", f"{TASKS}/cgt-1"),
    ]


@pytest.mark.parametrize("status", [400, 404, 409])
def test_cancel_is_false_when_the_delete_is_refused(
    adapter: Build, fake: FakeProvider, status: int
) -> None:
    fake.reply(200, {"status": "queued"})
    fake.reply(status, {"error": {"code": "InvalidParameter", "message": "not queued"}})
    assert adapter("byteplus").cancel(V15, "cgt-1") is False


@pytest.mark.parametrize("raw", ["running", "succeeded", "failed", "expired"])
def test_cancel_never_deletes_a_task_past_queued(
    adapter: Build, fake: FakeProvider, raw: str
) -> None:
    fake.reply(200, {"status": raw})
    assert adapter("byteplus").cancel(V15, "cgt-1") is False
    assert [r.method for r in fake.requests] == ["GET"]  # a DELETE would erase a finished task


def test_cancel_of_a_cancelled_task_is_true_without_a_delete(
    adapter: Build, fake: FakeProvider
) -> None:
    fake.reply(200, {"status": "cancelled"})
    assert adapter("byteplus").cancel(V15, "cgt-1") is True
    assert [r.method for r in fake.requests] == ["GET"]


@pytest.mark.parametrize(("status", "error"), [(500, RetryableProviderError), (429, RateLimited)])
def test_cancel_failures_raise(
    adapter: Build, fake: FakeProvider, status: int, error: type[Exception]
) -> None:
    fake.reply(200, {"status": "queued"})
    fake.reply(status, text="oops")
    with pytest.raises(error):
        adapter("byteplus").cancel(V15, "cgt-1")
