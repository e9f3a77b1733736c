"""Runway: body and headers, every task status and error envelope, the daily cap."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from genbatch.errors import (
    AmbiguousSubmit,
    PermanentProviderError,
    RetryableProviderError,
)
from genbatch.models import GenerationRequest, TaskStatus
from genbatch.providers import actual_cost, estimate_cost, validate_request
from genbatch.providers.base import Provider
from genbatch.providers.failures import FailureClass, failure_class

from .conftest import API_KEY, IMAGE, FakeProvider

Build = Callable[..., Provider]
Req = Callable[..., GenerationRequest]
GEN4 = "gen4_turbo"
TID = "17f20503-6c24-4c16-946b-35dbbce2af2f"


def test_body_path_and_headers(adapter: Build, req: Req, fake: FakeProvider) -> None:
    fake.reply(200, {"id": TID})
    assert adapter("runway").submit(GEN4, req(ratio="9:16", duration=10, seed=7)) == TID
    assert str(fake.last.url) == "https://api.runway.test/v1/image_to_video"
    assert fake.last.headers["authorization"] == f"Bearer {API_KEY}"
    assert fake.last.headers["x-runway-version"] == "2024-11-06"
    assert fake.body() == {"model": "gen4_turbo", "promptImage": IMAGE,
                           "promptText": "a cat turns its head", "ratio": "720:1280",
                           "duration": 10, "seed": 7}


def test_defaults_and_runways_own_ratio_names(adapter: Build, req: Req) -> None:
    body = adapter("runway").build_body(GEN4, req(prompt=""))
    assert body == {"model": "gen4_turbo", "promptImage": IMAGE, "ratio": "1280:720",
                    "duration": 5}
    assert adapter("runway").build_body(GEN4, req(ratio="1584:672"))["ratio"] == "1584:672"


@pytest.mark.parametrize(("fields", "field"), [
    ({"duration": 1}, "duration"), ({"duration": 11}, "duration"),
    ({"ratio": "2:1"}, "ratio"), ({"prompt": "x" * 1001}, "prompt"),
    ({"seed": 4294967296}, "seed"), ({"last_image": IMAGE}, "last_image"),
    ({"camera_fixed": True}, "camera_fixed"), ({"resolution": "1080p"}, "resolution"),
    ({"generate_audio": True}, "generate_audio"),
])
def test_validation(req: Req, fields: dict[str, Any], field: str) -> None:
    problems = validate_request("runway", GEN4, req(**fields))
    assert [p.field for p in problems] == [field], problems


def test_plain_requests_are_valid(req: Req) -> None:
    assert validate_request("runway", GEN4, req()) == []
    assert validate_request("runway", GEN4, req(prompt="", duration=2, ratio="1:1",
                                                seed=0, resolution="720p")) == []


def test_flex_is_refused_naming_the_providers_that_have_one(req: Req) -> None:
    (problem,) = validate_request("runway", GEN4, req(service_tier="flex"))
    assert problem.field == "service_tier"
    assert "fal" in problem.message and "byteplus" in problem.message


def test_a_data_uri_over_5_mb_is_refused(req: Req, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"0" * (4 * 1024 * 1024))
    (problem,) = validate_request("runway", GEN4, req(image=str(big)))
    assert problem.field == "image" and "5 MB" in problem.message
    small = "data:image/png;base64," + "A" * 1000
    assert validate_request("runway", GEN4, req(image=small)) == []


@pytest.mark.parametrize(("raw", "status"), [
    ("PENDING", TaskStatus.QUEUED), ("THROTTLED", TaskStatus.QUEUED),
    ("RUNNING", TaskStatus.RUNNING), ("CANCELLED", TaskStatus.CANCELLED),
    ("SOMETHING_NEW", TaskStatus.UNKNOWN),
])
def test_statuses(adapter: Build, fake: FakeProvider, raw: str, status: TaskStatus) -> None:
    fake.reply(200, {"id": TID, "status": raw, "progress": 0.4})
    result = adapter("runway").poll(GEN4, TID)
    assert (result.status, result.raw_status) == (status, raw)
    assert str(fake.last.url) == f"https://api.runway.test/v1/tasks/{TID}"


def test_running_progress(adapter: Build, fake: FakeProvider) -> None:
    fake.reply(200, {"id": TID, "status": "RUNNING", "progress": 0.25})
    assert adapter("runway").poll(GEN4, TID).progress == 25.0


def test_succeeded_and_failed(adapter: Build, fake: FakeProvider) -> None:
    url = "https://dnznrvs05pmza.cloudfront.net/out.mp4?_jwt=x"
    fake.reply(200, {"id": TID, "status": "SUCCEEDED", "output": [url]})
    done = adapter("runway").poll(GEN4, TID)
    assert (done.status, done.video_url, done.video_ttl_s) == (TaskStatus.SUCCEEDED, url, 86400)
    fake.reply(200, {"id": TID, "status": "FAILED", "failure": "moderated",
                     "failureCode": "SAFETY.INPUT.IMAGE"})
    failed = adapter("runway").poll(GEN4, TID)
    assert (failed.status, failed.error_code, failed.error_message) == \
        (TaskStatus.FAILED, "SAFETY.INPUT.IMAGE", "moderated")


@pytest.mark.parametrize(("status", "body", "error", "code"), [
    (400, {"error": "Validation of body failed",
           "issues": [{"path": ["ratio"], "message": "Invalid enum value"}]},
     PermanentProviderError, "HTTP_400"),
    (400, {"error": "You do not have enough credits to run this task."},
     PermanentProviderError, "INSUFFICIENT_CREDITS"),
    (401, {"error": "Invalid API key"}, PermanentProviderError, "HTTP_401"),
    (429, {"error": "You have exceeded your daily generation limit."},
     PermanentProviderError, "DAILY_GENERATION_LIMIT"),
    (502, {"error": "Bad gateway"}, AmbiguousSubmit, "HTTP_502"),
])
def test_submit_error_envelopes(adapter: Build, req: Req, fake: FakeProvider, status: int,
                                body: dict[str, Any], error: type[Exception], code: str) -> None:
    fake.reply(status, body)
    with pytest.raises(error) as raised:
        adapter("runway").submit(GEN4, req())
    assert getattr(raised.value, "code", None) == code
    if status == 400 and "issues" in body:
        assert "ratio: Invalid enum value" in str(raised.value)


@pytest.mark.parametrize("code", ["DAILY_GENERATION_LIMIT", "INSUFFICIENT_CREDITS"])
def test_daily_cap_and_credits_pause_the_account(code: str) -> None:
    assert failure_class(PermanentProviderError("runway", code, "x", 429)) is \
        FailureClass.BALANCE


def test_poll_errors(adapter: Build, fake: FakeProvider) -> None:
    fake.reply(500, {"error": "oops"})
    with pytest.raises(RetryableProviderError):
        adapter("runway").poll(GEN4, TID)
    fake.reply(404, {"error": "Task not found"})
    with pytest.raises(PermanentProviderError):
        adapter("runway").poll(GEN4, TID)


def test_cancel_deletes_a_waiting_task_only(adapter: Build, fake: FakeProvider) -> None:
    fake.reply(200, {"id": TID, "status": "THROTTLED"})
    fake.reply(204)
    assert adapter("runway").cancel(GEN4, TID) is True
    assert [r.method for r in fake.requests] == ["GET", "DELETE"]
    fake.reply(200, {"id": TID, "status": "RUNNING", "progress": 0.5})
    assert adapter("runway").cancel(GEN4, TID) is False
    assert fake.last.method == "GET"


def test_price(req: Req, adapter: Build, fake: FakeProvider) -> None:
    assert estimate_cost("runway", GEN4, req(duration=10)) == pytest.approx(0.5)
    fake.reply(200, {"id": TID, "status": "SUCCEEDED", "output": ["https://x.runwayml.com/v"],
                     "cost": {"credits": 30}})
    result = adapter("runway").poll(GEN4, TID)
    assert actual_cost("runway", GEN4, req(duration=5), result) == pytest.approx(0.30)
