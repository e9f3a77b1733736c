"""Contract: the fal and Runway adapters against the simulator's fal and Runway protocols
(written apart from each other: genbatch/providers/{fal,runway}.py and
genbatch/simulator/{fal,runway}.py).

For every model: a valid request goes all the way (submit, poll to the end, download the
video the simulator recorded); the two validators agree; each failure is classified as
DESIGN.md needs; and each provider's own limit semantics hold: fal counts running requests
only and never refuses over concurrency, Runway holds extra tasks THROTTLED and answers its
daily cap with a 429 that pauses the account; fal's webhooks verify under the key set the
simulator publishes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from genbatch.config import ProviderSettings
from genbatch.errors import (
    AmbiguousSubmit,
    BadSignature,
    PermanentProviderError,
    RateLimited,
    RetryableProviderError,
)
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers import fal_hooks, make_provider, model_specs, validate_request
from genbatch.providers.base import ModelSpec, Provider
from genbatch.providers.failures import FailureClass, failure_class
from genbatch.simulator import request_fingerprint
from tests.contract.test_callbacks import Recorder, recorder  # noqa: F401
from tests.contract.test_contract import data_uri
from tests.simulator.helpers import KEY, TLS, Sim, wait_until

CASES = [(p, m) for p in ("fal", "runway") for m in model_specs(p)]
GEN4 = "gen4_turbo"
KLING = "kling-v2.1-std-i2v"


def adapter(sim: Sim, provider: str, key: str = KEY,
            submit_timeout_s: float | None = None) -> Provider:
    settings = ProviderSettings(name=provider, base_url=f"{sim.url}/{provider}",
                                api_key=SecretStr(key), max_in_flight=10)
    return make_provider(settings, httpx.Client(timeout=10, verify=TLS),
                         submit_timeout_s=submit_timeout_s)


def request(sim: Sim, **fields: Any) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a cat walks across the frame",
                                "image": sim.asset(), **fields})


def full(sim: Sim, spec: ModelSpec) -> dict[str, Any]:
    """Every field the model takes, at the edge of its range."""
    fields: dict[str, Any] = {"duration": max(spec.durations)}
    if spec.supports_last_image:
        fields["last_image"] = sim.asset("square.png")
    if spec.ratios:
        fields["ratio"] = sorted(spec.ratios)[0]
    if spec.resolutions:
        fields["resolution"] = max(spec.resolutions, key=lambda r: int(r.removesuffix("p")))
    if "seed" not in spec.extra.get("not_taken", ()):
        fields["seed"] = spec.seed_max
    if spec.supports_service_tier:
        fields["service_tier"] = "flex"
    if spec.supports_expires_after:
        fields["execution_expires_after"] = 259200
    return fields


def poll_to_end(provider: Provider, model: str, remote_id: str) -> PollResult:
    result: PollResult = wait_until(lambda: provider.poll(model, remote_id),
                                    lambda r: r.status.terminal)
    return result


@pytest.mark.parametrize("whole", [False, True], ids=["minimal", "full"])
@pytest.mark.parametrize(("provider_name", "model"), CASES)
def test_submit_poll_download(sim: Sim, provider_name: str, model: str, whole: bool) -> None:
    provider = adapter(sim, provider_name)
    spec = provider.models[model]
    req = request(sim, **(full(sim, spec) if whole else {}))
    assert validate_request(provider_name, model, req) == []

    remote_id = provider.submit(model, req)
    result = poll_to_end(provider, model, remote_id)

    assert result.status is TaskStatus.SUCCEEDED, result
    video = sim.get(result.video_url or "")
    assert video.status_code == 200
    stats = sim.stats()
    assert stats["videos"] == {remote_id: hashlib.sha256(video.content).hexdigest()}
    body = provider.build_body(model, req)
    wire = spec.wire_model if provider_name == "fal" else str(body["model"])
    assert stats["submits_by_fingerprint"] == {
        request_fingerprint(provider_name, wire, body): 1}
    scheme = "Key" if provider_name == "fal" else "Bearer"
    for entry in stats["request_log"]:
        assert KEY not in entry["path"] + entry["query"] + entry["body"]
        if not entry["path"].startswith("/_sim/"):
            assert entry["headers"]["authorization"] == f"{scheme} {KEY}"


# Per field: candidates the adapter accepts must be accepted by the simulator, and wire
# values the adapter refuses (as the adapter would spell them) must be refused by it.
REFUSED_ON_THE_WIRE: dict[str, list[tuple[str, Any]]] = {
    "fal-ai/kling-video/v2.1/standard/image-to-video": [
        ("duration", "7"), ("prompt", "x" * 2501), ("aspect_ratio", "16:9"), ("seed", 3)],
    "fal-ai/kling-video/v2.5-turbo/pro/image-to-video": [("duration", "6")],
    "fal-ai/bytedance/seedance/v1/pro/image-to-video": [
        ("duration", "13"), ("resolution", "2k"), ("aspect_ratio", "2:1"),
        ("seed", 2147483648)],
    "gen4_turbo": [("duration", 11), ("ratio", "1280:768"), ("promptText", "x" * 1001),
                   ("seed", 4294967296)],
}
CANDIDATES: dict[str, list[Any]] = {
    "duration": [1, 2, 5, 6, 7, 10, 11, 12, 13],
    "ratio": ["21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "adaptive", "2:1", "960:960"],
    "resolution": ["480p", "720p", "1080p", "2k"],
    "seed": [-1, 0, 2147483647, 2147483648, 4294967295],
}


def _post(sim: Sim, provider_name: str, spec: ModelSpec, body: dict[str, Any]) -> int:
    if provider_name == "fal":
        with sim.client(prefix="/fal") as client:
            client.headers["authorization"] = f"Key {KEY}"
            return client.post("/" + spec.wire_model, json=body).status_code
    with sim.client(prefix="/runway") as client:
        client.headers["x-runway-version"] = "2024-11-06"
        return client.post("/v1/image_to_video", json=body).status_code


@pytest.mark.parametrize(("provider_name", "model"), CASES)
def test_validators_agree(sim: Sim, provider_name: str, model: str) -> None:
    provider = adapter(sim, provider_name)
    spec = provider.models[model]
    wrong = []
    for field, values in CANDIDATES.items():
        for value in values:
            req = request(sim, **{field: value})
            if not validate_request(provider_name, model, req):
                status = _post(sim, provider_name, spec, provider.build_body(model, req))
                if status != 200:
                    wrong.append((field, value, status))
    base = provider.build_body(model, request(sim))
    for wire_field, value in REFUSED_ON_THE_WIRE[spec.wire_model]:
        status = _post(sim, provider_name, spec, {**base, wire_field: value})
        if status not in (400, 422):
            wrong.append((wire_field, value, status))
    assert not wrong


@pytest.mark.parametrize("provider_name", ["fal", "runway"])
def test_unanswered_submits_are_ambiguous(sim: Sim, provider_name: str) -> None:
    provider = adapter(sim, provider_name, submit_timeout_s=0.3)
    model = next(iter(provider.models))
    for mode in ("drop", "hang", "error"):
        sim.profile(p_submit_timeout=1, submit_timeout_mode=mode, submit_hang_s=30)
        with pytest.raises(AmbiguousSubmit):
            provider.submit(model, request(sim))
    assert sim.stats()["submits"] == 3


@pytest.mark.parametrize("provider_name", ["fal", "runway"])
def test_server_errors_and_garbled_answers(sim: Sim, provider_name: str) -> None:
    provider = adapter(sim, provider_name)
    model = next(iter(provider.models))
    remote_id = provider.submit(model, request(sim))
    for knob in ("p_5xx", "p_malformed"):
        sim.profile(**{knob: 1})
        with pytest.raises(AmbiguousSubmit):
            provider.submit(model, request(sim))
        with pytest.raises(RetryableProviderError) as poll_error:
            provider.poll(model, remote_id)
        assert not isinstance(poll_error.value, RateLimited)


def test_fal_storage_upload_hosts_the_bytes_a_submit_then_names(sim: Sim) -> None:
    """fal's upload (initiate with the key, PUT the bytes to the answer's upload_url): the
    file_url serves exactly those bytes, and a submit naming it succeeds."""
    provider = adapter(sim, "fal")
    image = httpx.get(sim.asset(), timeout=10, verify=TLS).content
    url = provider.upload(image, "landscape.png", "image/png")
    assert httpx.get(url, timeout=10, verify=TLS).content == image
    assert sim.stats()["uploads"] == 1
    remote_id = provider.submit(KLING, request(sim, image=url))
    assert poll_to_end(provider, KLING, remote_id).status is TaskStatus.SUCCEEDED
    sim.profile(api_keys=[KEY])
    with pytest.raises(PermanentProviderError) as bad_key:
        adapter(sim, "fal", key="not-a-key").upload(image, "landscape.png", "image/png")
    assert failure_class(bad_key.value) is FailureClass.AUTH


def test_fal_429_is_rate_limited(sim: Sim) -> None:
    provider = adapter(sim, "fal")
    sim.profile(p_429=1)
    with pytest.raises(RateLimited):
        provider.submit(KLING, request(sim))


@pytest.mark.parametrize(("provider_name", "model"), CASES)
def test_task_failure_is_a_failed_poll(sim: Sim, provider_name: str, model: str) -> None:
    provider = adapter(sim, provider_name)
    sim.profile(p_task_fail=1)
    result = poll_to_end(provider, model, provider.submit(model, request(sim)))
    assert result.status is TaskStatus.FAILED
    assert result.error_code and result.error_message and result.video_url is None


@pytest.mark.parametrize(("provider_name", "codes"), [
    ("fal", ("value_error", "HTTP_404", "HTTP_401")),
    ("runway", ("HTTP_400", "HTTP_404", "HTTP_401")),
])
def test_refusals_are_permanent(sim: Sim, provider_name: str, codes: tuple[str, ...]) -> None:
    invalid_code, not_found_code, auth_code = codes
    provider = adapter(sim, provider_name)
    model = next(iter(provider.models))
    with pytest.raises(PermanentProviderError) as invalid:  # too small: only the server sees
        provider.submit(model, request(sim, image=data_uri(200, 200)))
    assert invalid.value.code == invalid_code and "image" in invalid.value.message
    with pytest.raises(PermanentProviderError) as missing:
        provider.poll(model, "00000000-0000-4000-8000-000000000000")
    assert missing.value.code == not_found_code
    sim.profile(api_keys=["the-only-key"])
    with pytest.raises(PermanentProviderError) as auth:
        adapter(sim, provider_name, key="wrong-key").submit(model, request(sim))
    assert auth.value.code == auth_code and failure_class(auth.value) is FailureClass.AUTH
    sim.profile(out_of_balance=True)
    with pytest.raises(PermanentProviderError) as broke:
        provider.submit(model, request(sim))
    assert failure_class(broke.value) is FailureClass.BALANCE
    assert sim.stats()["submits"] == 0


def test_fal_concurrency_counts_running_requests_only(sim: Sim) -> None:
    provider = adapter(sim, "fal")
    sim.profile(concurrency=1, latency_mean_s=200)  # 0.2 s real each
    ids = [provider.submit(KLING, request(sim)) for _ in range(3)]  # none refused
    raw = [provider.poll(KLING, i).raw_status for i in ids]
    assert raw.count("IN_QUEUE") >= 2 and "COMPLETED" not in raw
    assert all(poll_to_end(provider, KLING, i).status is TaskStatus.SUCCEEDED for i in ids)
    stats = sim.stats()
    assert stats["max_running"]["fal"][KEY] == 1 and stats["submits"] == 3


def test_fal_start_timeout_expires_a_request_still_queued(sim: Sim) -> None:
    provider = adapter(sim, "fal")
    sim.profile(time_factor=100_000, queue_delay_s=10_000_000)
    remote_id = provider.submit(KLING, request(sim, execution_expires_after=3600))
    result = poll_to_end(provider, KLING, remote_id)
    assert (result.status, result.error_code) == (TaskStatus.EXPIRED, "request_timeout")
    log = [e for e in sim.stats()["request_log"] if e["method"] == "POST"]
    assert log[0]["headers"]["x-fal-request-timeout"] == "3600"


def test_fal_cancel_only_while_queued(sim: Sim) -> None:
    provider = adapter(sim, "fal")
    sim.profile(queue_delay_s=100_000)
    queued = provider.submit(KLING, request(sim))
    assert provider.cancel(KLING, queued) is True
    assert poll_to_end(provider, KLING, queued).status is TaskStatus.CANCELLED
    sim.profile(queue_delay_s=0, latency_mean_s=100_000)
    running = wait_until(lambda: provider.submit(KLING, request(sim)), bool)
    wait_until(lambda: provider.poll(KLING, running).status, lambda s: s is TaskStatus.RUNNING)
    assert provider.cancel(KLING, running) is False


def test_runway_throttles_over_concurrency_and_pauses_at_the_daily_cap(sim: Sim) -> None:
    provider = adapter(sim, "runway")
    sim.profile(concurrency=1, latency_mean_s=300, daily_cap=3)
    first, second = (provider.submit(GEN4, request(sim)) for _ in range(2))
    throttled = provider.poll(GEN4, second)
    assert (throttled.status, throttled.raw_status) == (TaskStatus.QUEUED, "THROTTLED")
    provider.submit(GEN4, request(sim))
    with pytest.raises(PermanentProviderError) as capped:
        provider.submit(GEN4, request(sim))
    assert capped.value.code == "DAILY_GENERATION_LIMIT"
    assert failure_class(capped.value) is FailureClass.BALANCE  # the account pauses
    for task in (first, second):
        assert poll_to_end(provider, GEN4, task).status is TaskStatus.SUCCEEDED
    assert sim.stats()["max_running"]["runway"][KEY] == 1


def test_runway_cancel_and_version_header(sim: Sim) -> None:
    provider = adapter(sim, "runway")
    sim.profile(queue_delay_s=100_000)
    queued = provider.submit(GEN4, request(sim))
    assert provider.cancel(GEN4, queued) is True
    assert provider.poll(GEN4, queued).status is TaskStatus.CANCELLED
    sim.profile(queue_delay_s=0, latency_mean_s=100_000)
    running = provider.submit(GEN4, request(sim))
    wait_until(lambda: provider.poll(GEN4, running).status, lambda s: s is TaskStatus.RUNNING)
    assert provider.cancel(GEN4, running) is False  # a running generation finishes
    with sim.client(prefix="/runway") as client:
        answer = client.post("/v1/image_to_video", json={"model": GEN4})
    assert answer.status_code == 400 and "X-Runway-Version" in answer.json()["error"]


def test_fal_webhooks_verify_under_the_published_keys(
        sim: Sim, recorder: Recorder) -> None:  # noqa: F811
    provider = adapter(sim, "fal")
    fal_hooks.KEYS.clear()
    remote_id = provider.submit(KLING, request(sim), webhook_url=recorder.url)
    ((headers, body),) = recorder.wait(1)
    jwks_url = f"{sim.url}/fal/.well-known/jwks.json"
    now = float(headers["x-fal-webhook-timestamp"])
    assert fal_hooks.verify(jwks_url, headers, body, now).startswith(remote_id)
    task_id, result = fal_hooks.parse_callback(json.loads(body))
    polled = provider.poll(KLING, remote_id)
    assert (task_id, result.status, result.video_url) == \
        (remote_id, polled.status, polled.video_url)
    with pytest.raises(BadSignature):
        fal_hooks.verify(jwks_url, headers, body + b" ", now)
    fal_hooks.KEYS.clear()
