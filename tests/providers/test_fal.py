"""fal: bodies, headers and paths, every queue status and error envelope, webhooks."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import SecretStr

from genbatch.config import ProviderSettings
from genbatch.errors import (
    AmbiguousSubmit,
    BadSignature,
    PermanentProviderError,
    RateLimited,
    RetryableProviderError,
)
from genbatch.models import GenerationRequest, TaskStatus
from genbatch.providers import estimate_cost, fal_hooks, model_specs, plugin, validate_request
from genbatch.providers.base import Provider
from genbatch.providers.failures import FailureClass, failure_class
from genbatch.providers.fal import rest_url
from genbatch.providers.plugin import Capability

from .conftest import API_KEY, IMAGE, FakeProvider

Build = Callable[..., Provider]
Req = Callable[..., GenerationRequest]
KLING, TURBO, SEEDANCE = "kling-v2.1-std-i2v", "kling-v2.5-turbo-pro-i2v", "seedance-v1-pro-i2v"
RID = "764cabcf-b745-4b3e-ae38-1200304cf45b"
KLING_APP = "https://queue.fal.test/fal-ai/kling-video/requests/" + RID


def submitted() -> dict[str, Any]:
    return {"request_id": RID, "gateway_request_id": RID, "status": "IN_QUEUE",
            "status_url": KLING_APP + "/status", "response_url": KLING_APP}


def test_kling_body_path_and_key_header(adapter: Build, req: Req, fake: FakeProvider) -> None:
    fake.reply(200, submitted())
    assert adapter("fal").submit(KLING, req(duration=10)) == RID
    assert fake.last.method == "POST"
    assert str(fake.last.url) == \
        "https://queue.fal.test/fal-ai/kling-video/v2.1/standard/image-to-video"
    assert fake.last.headers["authorization"] == f"Key {API_KEY}"
    assert fake.body() == {"prompt": "a cat turns its head", "image_url": IMAGE,
                           "duration": "10"}
    assert "x-fal-queue-priority" not in fake.last.headers


def test_seedance_body_maps_fields(adapter: Build, req: Req) -> None:
    body = adapter("fal").build_body(SEEDANCE, req(
        ratio="adaptive", resolution="720p", duration=7, seed=42, camera_fixed=True,
        last_image="https://cdn.example.com/last.png"))
    assert body == {"prompt": "a cat turns its head", "image_url": IMAGE, "duration": "7",
                    "end_image_url": "https://cdn.example.com/last.png",
                    "aspect_ratio": "auto", "resolution": "720p", "seed": 42,
                    "camera_fixed": True}
    turbo = adapter("fal").build_body(TURBO, req(last_image="https://cdn.example.com/l.png"))
    assert turbo["tail_image_url"] == "https://cdn.example.com/l.png"


def test_flex_and_deadline_travel_as_headers(adapter: Build, req: Req,
                                             fake: FakeProvider) -> None:
    fake.reply(200, submitted())
    adapter("fal").submit(KLING, req(service_tier="flex", execution_expires_after=7200),
                          webhook_url="https://hooks.example.com/h/fal/1/tok")
    assert fake.last.headers["x-fal-queue-priority"] == "low"
    assert fake.last.headers["x-fal-request-timeout"] == "7200"
    assert fake.last.url.params["fal_webhook"] == "https://hooks.example.com/h/fal/1/tok"
    assert "service_tier" not in fake.body() and "execution_expires_after" not in fake.body()


@pytest.mark.parametrize(("fields", "field"), [
    ({"ratio": "16:9"}, "ratio"), ({"resolution": "720p"}, "resolution"),
    ({"seed": 3}, "seed"), ({"camera_fixed": True}, "camera_fixed"),
    ({"duration": 7}, "duration"), ({"prompt": "x" * 2501}, "prompt"),
    ({"last_image": IMAGE}, "last_image"), ({"prompt": ""}, "prompt"),
])
def test_kling_refuses_what_it_has_no_field_for(req: Req, fields: dict[str, Any],
                                                field: str) -> None:
    problems = validate_request("fal", KLING, req(**fields))
    assert [p.field for p in problems] == [field]
    assert "kling-v2.1-std-i2v on fal" in problems[0].message


def test_plain_requests_are_valid(req: Req) -> None:
    assert validate_request("fal", KLING, req(duration=5)) == []
    assert validate_request("fal", TURBO, req(duration=10, last_image=IMAGE)) == []
    assert validate_request("fal", SEEDANCE, req(duration=12, resolution="480p", ratio="9:16",
                                                 seed=-1, service_tier="flex")) == []
    assert validate_request("fal", "fal-ai/kling-video/v2.1/standard/image-to-video",
                            req()) == []


def test_prices(req: Req) -> None:
    assert estimate_cost("fal", KLING, req(duration=5)) == pytest.approx(0.28)
    assert estimate_cost("fal", KLING, req(duration=10)) == pytest.approx(0.56)
    assert estimate_cost("fal", TURBO, req(duration=10)) == pytest.approx(0.70)
    assert estimate_cost("fal", SEEDANCE, req(duration=5)) == pytest.approx(0.61, abs=0.01)


def poll(adapter: Build, fake: FakeProvider, status: int, body: dict[str, Any],
         result: tuple[int, Any] | None = None) -> Any:
    fake.reply(status, body)
    if result is not None:
        fake.reply(result[0], result[1])
    return adapter("fal").poll(KLING, RID)


def test_in_queue_and_in_progress(adapter: Build, fake: FakeProvider) -> None:
    queued = poll(adapter, fake, 202, {"status": "IN_QUEUE", "queue_position": 3})
    assert (queued.status, queued.raw_status) == (TaskStatus.QUEUED, "IN_QUEUE")
    assert str(fake.last.url) == KLING_APP + "/status"
    running = poll(adapter, fake, 202, {"status": "IN_PROGRESS", "logs": []})
    assert running.status is TaskStatus.RUNNING


def test_completed_fetches_the_result(adapter: Build, fake: FakeProvider) -> None:
    done = poll(adapter, fake, 200, {"status": "COMPLETED", "metrics": {"inference_time": 41.5}},
                (200, {"video": {"url": "https://v3.fal.media/files/x/out.mp4"}, "seed": 9}))
    assert done.status is TaskStatus.SUCCEEDED
    assert done.video_url == "https://v3.fal.media/files/x/out.mp4"
    assert (done.run_s, done.seed) == (41.5, 9)
    assert str(fake.last.url) == KLING_APP


def test_completed_with_an_error(adapter: Build, fake: FakeProvider) -> None:
    failed = poll(adapter, fake, 200, {"status": "COMPLETED", "error": "flagged",
                                       "error_type": "content_policy_violation"})
    assert (failed.status, failed.error_code, failed.error_message) == \
        (TaskStatus.FAILED, "content_policy_violation", "flagged")
    timed_out = poll(adapter, fake, 200, {"status": "COMPLETED", "error": "no start",
                                          "error_type": "request_timeout"})
    assert timed_out.status is TaskStatus.EXPIRED


def test_completed_whose_result_is_an_error(adapter: Build, fake: FakeProvider) -> None:
    detail = {"detail": [{"loc": ["body", "image_url"], "msg": "image too small",
                          "type": "image_too_small"}]}
    failed = poll(adapter, fake, 200, {"status": "COMPLETED"}, (422, detail))
    assert failed.status is TaskStatus.FAILED
    assert (failed.error_code, failed.error_message) == ("image_too_small",
                                                         "image_url: image too small")


@pytest.mark.parametrize(("status", "body", "error", "code"), [
    (401, {"detail": "Invalid API key"}, PermanentProviderError, "HTTP_401"),
    (403, {"detail": "User is locked. Reason: Exhausted balance. Top up."},
     PermanentProviderError, "EXHAUSTED_BALANCE"),
    (404, {"detail": "Application 'x' not found"}, PermanentProviderError, "HTTP_404"),
    (422, {"detail": [{"loc": ["body", "prompt"], "msg": "field required",
                       "type": "value_error.missing"}]},
     PermanentProviderError, "value_error.missing"),
    (429, {"detail": "Too many requests"}, RateLimited, "HTTP_429"),
    (500, {"detail": "Internal error"}, AmbiguousSubmit, "HTTP_500"),
])
def test_submit_error_envelopes(adapter: Build, req: Req, fake: FakeProvider, status: int,
                                body: dict[str, Any], error: type[Exception], code: str) -> None:
    fake.reply(status, body)
    with pytest.raises(error) as raised:
        adapter("fal").submit(KLING, req())
    assert getattr(raised.value, "code", None) == code
    assert API_KEY not in str(raised.value)


def test_exhausted_balance_pauses_the_account(adapter: Build, req: Req,
                                              fake: FakeProvider) -> None:
    fake.reply(403, {"detail": "User is locked. Reason: Exhausted balance."})
    with pytest.raises(PermanentProviderError) as raised:
        adapter("fal").submit(KLING, req())
    assert failure_class(raised.value) is FailureClass.BALANCE


def test_a_refused_key_on_the_result_is_not_the_requests_failure(
        adapter: Build, fake: FakeProvider) -> None:
    fake.reply(200, {"status": "COMPLETED"})
    fake.reply(401, {"detail": "Invalid API key"})
    with pytest.raises(PermanentProviderError) as raised:
        adapter("fal").poll(KLING, RID)
    assert failure_class(raised.value) is FailureClass.AUTH


def test_poll_errors_are_retryable(adapter: Build, fake: FakeProvider) -> None:
    fake.reply(503, {"detail": "unavailable"})
    with pytest.raises(RetryableProviderError):
        adapter("fal").poll(KLING, RID)


def test_cancel_is_a_put_and_false_once_started(adapter: Build, fake: FakeProvider) -> None:
    fake.reply(202, {"status": "CANCELLATION_REQUESTED"})
    assert adapter("fal").cancel(KLING, RID) is True
    assert (fake.last.method, str(fake.last.url)) == ("PUT", KLING_APP + "/cancel")
    fake.reply(400, {"status": "ALREADY_COMPLETED"})
    assert adapter("fal").cancel(KLING, RID) is False


# --- webhooks ---------------------------------------------------------------------------

KEY = Ed25519PrivateKey.generate()
JWKS_URL = "https://keys.fal.test/.well-known/jwks.json"


@pytest.fixture
def jwks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """fal's key set served from memory; counts the fetches."""
    raw = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    fetches = [0]

    def get(url: str, **_: Any) -> httpx.Response:
        fetches[0] += 1
        x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return httpx.Response(200, json={"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]},
                              request=httpx.Request("GET", url))

    fal_hooks.KEYS.clear()
    monkeypatch.setattr(httpx, "get", get)
    yield fetches
    fal_hooks.KEYS.clear()


def signed(body: bytes, now: float, key: Ed25519PrivateKey = KEY) -> dict[str, str]:
    stamp = str(int(now))
    message = f"{RID}\nuser-1\n{stamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    return {"x-fal-webhook-request-id": RID, "x-fal-webhook-user-id": "user-1",
            "x-fal-webhook-timestamp": stamp,
            "x-fal-webhook-signature": key.sign(message).hex()}


def test_a_signed_webhook_verifies_and_keys_are_cached(jwks: list[int]) -> None:
    body, now = json.dumps({"request_id": RID, "status": "OK"}).encode(), 1_700_000_000.0
    assert fal_hooks.verify(JWKS_URL, signed(body, now), body, now) == f"{RID}:{int(now)}"
    fal_hooks.verify(JWKS_URL, signed(body, now), body, now + 1)
    assert jwks == [1]


@pytest.mark.parametrize("tamper", ["body", "stale", "key", "missing"])
def test_bad_webhooks_are_refused(jwks: list[int], tamper: str) -> None:
    body, now = b'{"request_id": "x", "status": "OK"}', 1_700_000_000.0
    headers = signed(body, now, Ed25519PrivateKey.generate() if tamper == "key" else KEY)
    if tamper == "body":
        body += b" "
    if tamper == "stale":
        now += 301
    if tamper == "missing":
        del headers["x-fal-webhook-signature"]
    with pytest.raises(BadSignature):
        fal_hooks.verify(JWKS_URL, headers, body, now)


def test_webhook_bodies() -> None:
    ok = {"request_id": RID, "status": "OK",
          "payload": {"video": {"url": "https://v3.fal.media/o.mp4"}, "seed": 1}}
    task_id, result = fal_hooks.parse_callback(ok)
    assert (task_id, result.status, result.video_url) == \
        (RID, TaskStatus.SUCCEEDED, "https://v3.fal.media/o.mp4")
    error = {"request_id": RID, "status": "ERROR", "error": "Invalid status code: 422",
             "payload": {"detail": [{"loc": ["body", "prompt"], "msg": "field required",
                                     "type": "value_error.missing"}]}}
    _, failed = fal_hooks.parse_callback(error)
    assert (failed.status, failed.error_code) == (TaskStatus.FAILED, "value_error.missing")
    _, unserialisable = fal_hooks.parse_callback(
        {"request_id": RID, "status": "OK", "payload": None, "payload_error": "not JSON"})
    assert unserialisable.status is TaskStatus.UNKNOWN


# -- local images: fal's storage upload (initiate, then PUT to the signed URL) ---------------

UPLOAD_URL = "https://fal-uploads.test/put/abc?X-Signature=s"
FILE_URL = "https://v3.fal.media/files/abc/landscape.png"


def test_upload_initiates_with_the_key_and_puts_the_bytes_without_it(
        adapter: Build, fake: FakeProvider) -> None:
    fake.reply(200, {"upload_url": UPLOAD_URL, "file_url": FILE_URL})
    fake.reply(200)
    assert adapter("fal").upload(b"\x89PNG...", "landscape.png", "image/png") == FILE_URL
    initiate, put = fake.requests
    assert (initiate.method, str(initiate.url)) == (
        "POST", "https://queue.fal.test/storage/upload/initiate?storage_type=fal-cdn-v3")
    assert initiate.headers["authorization"] == f"Key {API_KEY}"
    assert json.loads(initiate.content) == {"content_type": "image/png",
                                            "file_name": "landscape.png"}
    lifetime = json.loads(initiate.headers["x-fal-object-lifecycle"])
    assert lifetime["expiration_duration_seconds"] >= 5 * 24 * 3600  # > worker's KEEP_S
    assert (put.method, str(put.url), put.content) == ("PUT", UPLOAD_URL, b"\x89PNG...")
    assert put.headers["content-type"] == "image/png"
    assert "authorization" not in put.headers  # a signed URL: the key stays with fal's API


@pytest.mark.parametrize(("base", "option", "rest"), [
    ("https://queue.fal.run", None, "https://rest.fal.ai"),  # fal's own hosts
    ("http://127.0.0.1:8700/fal", None, "http://127.0.0.1:8700/fal"),  # the simulator
    ("https://queue.fal.run", "https://rest.alpha.fal.ai/", "https://rest.alpha.fal.ai")])
def test_the_upload_goes_to_fal_s_rest_host(base: str, option: str | None, rest: str) -> None:
    settings = ProviderSettings(
        name="fal", base_url=base, api_key=SecretStr(API_KEY), max_in_flight=1,
        options=(("rest_url", SecretStr(option)),) if option else ())
    assert rest_url(settings) == rest


@pytest.mark.parametrize(("initiate", "put", "error"), [
    ((401, {"detail": "Invalid key"}), None, PermanentProviderError),
    ((200, {"upload_url": UPLOAD_URL}), None, RetryableProviderError),  # no file_url
    ((200, {"upload_url": "file:///etc/passwd", "file_url": FILE_URL}), None,
     RetryableProviderError),
    ((200, {"upload_url": UPLOAD_URL, "file_url": FILE_URL}), 403, PermanentProviderError),
    ((200, {"upload_url": UPLOAD_URL, "file_url": FILE_URL}), 503, RetryableProviderError)])
def test_upload_failures_are_refusals_or_retryable(
        adapter: Build, fake: FakeProvider, initiate: tuple[int, Any], put: int | None,
        error: type[Exception]) -> None:
    fake.reply(*initiate)
    if put is not None:
        fake.reply(put)
    with pytest.raises(error) as caught:
        adapter("fal").upload(b"\x89PNG...", "a.png", "image/png")
    assert API_KEY not in str(caught.value)
    assert len(fake.requests) == (1 if put is None else 2)


def test_local_images_are_uploaded_not_sent_inline() -> None:
    """Every fal model declares the upload (worker/uploads.py then hosts local images and
    data URIs at fal before the submit names them)."""
    assert plugin("fal").has(Capability.UPLOAD)
    for spec in model_specs("fal").values():
        assert (spec.accepts_data_uri, spec.upload_max_bytes) == (False, 30_000_000), spec.name
