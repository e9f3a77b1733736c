"""Veo on the Gemini API: the key header, inline images, the operation, Google's errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from genbatch.errors import AmbiguousSubmit, PermanentProviderError, RateLimited
from genbatch.models import GenerationRequest, TaskStatus
from genbatch.providers import validate_request
from genbatch.providers.base import Provider
from genbatch.providers.failures import FailureClass, failure_class

from .conftest import API_KEY, FakeProvider

Build = Callable[..., Provider]
MODEL = "veo-3.1-generate-preview"
BASE = "https://gemini.test"
OP = "models/veo-3.1-generate-preview/operations/op123"
PNG = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture
def veo(adapter: Build) -> Callable[[], Provider]:
    return lambda: adapter("veo", base_url=BASE)


def test_submit_sends_the_key_header_and_inline_images(veo: Callable[[], Provider],
                                                       fake: FakeProvider) -> None:
    fake.reply(200, {"name": OP})
    request = GenerationRequest(image=PNG, last_image=PNG, prompt="a cat", ratio="9:16",
                                duration=6, seed=7)
    assert veo().submit(MODEL, request) == OP
    sent = fake.last
    assert sent.url.path == "/v1beta/models/veo-3.1-generate-preview:predictLongRunning"
    assert sent.headers["x-goog-api-key"] == API_KEY
    assert "authorization" not in sent.headers
    image = {"bytesBase64Encoded": "iVBORw0KGgo=", "mimeType": "image/png"}
    assert fake.body() == {
        "instances": [{"image": image, "prompt": "a cat", "lastFrame": image}],
        "parameters": {"durationSeconds": 6, "resolution": "720p", "aspectRatio": "9:16",
                       "seed": 7, "personGeneration": "allow_adult"}}


def test_an_image_url_is_refused_without_a_request(veo: Callable[[], Provider],
                                                  fake: FakeProvider) -> None:
    """The adapter fetches nothing: the worker inlines a row's image URL first, confined
    (tests/test_remote_images.py); a URL reaching the adapter is refused."""
    with pytest.raises(PermanentProviderError) as caught:
        veo().submit(MODEL, GenerationRequest(image="http://169.254.169.254/latest/meta-data"))
    assert caught.value.code == "IMAGE_NOT_INLINE"
    assert fake.requests == []


@pytest.mark.parametrize(("operation", "status", "url"), [
    ({"name": OP}, TaskStatus.RUNNING, None),
    ({"name": OP, "done": False}, TaskStatus.RUNNING, None),
    ({"name": OP, "done": True, "response": {"generateVideoResponse": {"generatedSamples": [
        {"video": {"uri": f"{BASE}/v1beta/files/f1:download?alt=media"}}]}}},
     TaskStatus.SUCCEEDED, f"{BASE}/v1beta/files/f1:download?alt=media"),
    ({"name": OP, "done": True, "error": {"code": 3, "message": "bad image",
                                          "status": "INVALID_ARGUMENT"}},
     TaskStatus.FAILED, None),
    ({"name": OP, "done": True, "response": {"generateVideoResponse": {
        "raiMediaFilteredCount": 1, "raiMediaFilteredReasons": ["celebrity"]}}},
     TaskStatus.FAILED, None)])
def test_each_operation_state(veo: Callable[[], Provider], fake: FakeProvider,
                              operation: dict[str, Any], status: TaskStatus,
                              url: str | None) -> None:
    fake.reply(200, operation)
    result = veo().poll(MODEL, OP)
    assert fake.last.url.path == f"/v1beta/{OP}"
    assert result.status is status
    assert result.video_url == url


@pytest.mark.parametrize(("status", "google", "error", "code"), [
    (429, "RESOURCE_EXHAUSTED", RateLimited, "RESOURCE_EXHAUSTED"),
    (400, "INVALID_ARGUMENT", PermanentProviderError, "INVALID_ARGUMENT"),
    (403, "PERMISSION_DENIED", PermanentProviderError, "PERMISSION_DENIED"),
    (500, "INTERNAL", AmbiguousSubmit, "INTERNAL"),
    (503, "UNAVAILABLE", AmbiguousSubmit, "UNAVAILABLE")])
def test_each_error_envelope(veo: Callable[[], Provider], fake: FakeProvider, status: int,
                             google: str, error: type[Exception], code: str) -> None:
    fake.reply(status, {"error": {"code": status, "message": "m", "status": google}})
    with pytest.raises(error) as caught:
        veo().submit(MODEL, GenerationRequest(image=PNG))
    assert getattr(caught.value, "code", None) == code


def _quota_429(quota_id: str) -> dict[str, Any]:
    """A 429 as the Gemini API answers an exceeded quota: the QuotaFailure names it."""
    return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                      "message": "You exceeded your current quota, please check your plan "
                      "and billing details.",
                      "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                   "violations": [{"quotaId": quota_id}]},
                                  {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                   "retryDelay": "22s"}]}}


@pytest.mark.parametrize(("status", "body", "code", "kind"), [
    # A per-day quota: the account pauses until the reset (a daily cap), no item fails.
    (429, _quota_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), "DAILY_QUOTA",
     FailureClass.BALANCE),
    # Prepaid credits used up: a bare 429 with its message, or a 402.
    (429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message":
                     "Your prepayment credits are depleted. Please go to AI Studio."}},
     "PREPAY_DEPLETED", FailureClass.BALANCE),
    (402, {"error": {"code": 402, "status": "RESOURCE_EXHAUSTED", "message": "Prepay"}},
     "PREPAY_DEPLETED", FailureClass.BALANCE),
    # No billing where the free tier is not offered (the troubleshooting table).
    (400, {"error": {"code": 400, "status": "FAILED_PRECONDITION", "message":
                     "Gemini API free tier is not available in your country. Please enable "
                     "billing on your project in Google AI Studio."}},
     "FAILED_PRECONDITION", FailureClass.BALANCE)])
def test_account_refusals_pause_the_account(veo: Callable[[], Provider], fake: FakeProvider,
                                            status: int, body: dict[str, Any], code: str,
                                            kind: FailureClass) -> None:
    fake.reply(status, body)
    with pytest.raises(PermanentProviderError) as caught:
        veo().submit(MODEL, GenerationRequest(image=PNG))
    assert (caught.value.code, failure_class(caught.value)) == (code, kind)
    assert failure_class(caught.value).pauses  # type: ignore[union-attr]


def test_a_per_minute_quota_is_a_rate_limit(veo: Callable[[], Provider],
                                            fake: FakeProvider) -> None:
    for _ in range(2):
        fake.reply(429, _quota_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"))
    with pytest.raises(RateLimited) as caught:
        veo().submit(MODEL, GenerationRequest(image=PNG))
    assert caught.value.code == "RESOURCE_EXHAUSTED"
    with pytest.raises(RateLimited):
        veo().poll(MODEL, OP)


def test_a_bad_key_pauses_the_account(veo: Callable[[], Provider], fake: FakeProvider) -> None:
    fake.reply(400, {"error": {"code": 400, "message": "API key not valid.",
                               "status": "INVALID_ARGUMENT",
                               "details": [{"reason": "API_KEY_INVALID"}]}})
    with pytest.raises(PermanentProviderError) as caught:
        veo().submit(MODEL, GenerationRequest(image=PNG))
    assert failure_class(caught.value) is FailureClass.AUTH
    assert API_KEY not in str(caught.value)


def test_the_key_goes_only_to_the_api_host(veo: Callable[[], Provider]) -> None:
    adapter = veo()
    assert adapter.download_headers(f"{BASE}/v1beta/files/f:download") == {
        "x-goog-api-key": API_KEY}
    for other in ("https://cdn.other.test/f", "http://gemini.test/f",
                  "https://gemini.test:8443/f", "https://gemini.test.evil.test/f"):
        assert adapter.download_headers(other) == {}


@pytest.mark.parametrize(("fields", "field"), [
    ({"duration": 5}, "duration"), ({"resolution": "1080p", "duration": 4}, "duration"),
    ({"ratio": "1:1"}, "ratio"), ({"service_tier": "flex"}, "service_tier"),
    ({"generate_audio": False}, "generate_audio"), ({"camera_fixed": True}, "camera_fixed"),
    ({"resolution": "4k"}, "resolution")])
def test_validation(fields: dict[str, Any], field: str) -> None:
    problems = validate_request("veo", MODEL, GenerationRequest(image=PNG, **fields))
    assert [p.field for p in problems] == [field]


def test_the_fast_model_and_a_full_hd_8s_request_are_accepted() -> None:
    request = GenerationRequest(image=PNG, resolution="1080p", duration=8,
                                execution_expires_after=3600)
    assert validate_request("veo", "veo-3.1-fast-generate-preview", request) == []
