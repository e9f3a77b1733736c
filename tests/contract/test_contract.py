"""Contract: the provider adapters (genbatch/providers) against the simulator
(genbatch/simulator), two implementations written independently from providers.md.

For every provider and model: a valid request goes all the way (submit, poll to a terminal
status, download bytes whose sha256 the simulator recorded); the two validators agree on
every documented value and on the values next to them; and each simulated failure is
classified the way DESIGN.md needs (429 → RateLimited, an unanswered or 5xx or garbled submit
→ AmbiguousSubmit, 5xx or garbled poll → Retryable, refusals → Permanent with the provider's
own code, task failure → a FAILED poll result with code and message).
"""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Any, cast

import httpx
import pytest
from PIL import Image
from pydantic import SecretStr

from genbatch.config import ProviderSettings
from genbatch.errors import (
    AmbiguousSubmit,
    PermanentProviderError,
    RateLimited,
    RetryableProviderError,
)
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers import make_provider, model_specs, names
from genbatch.providers.base import ModelSpec, Provider
from genbatch.simulator import request_fingerprint
from tests.simulator.helpers import KEY, TLS, Sim, wait_until

# Where each provider lives on the simulator: the Novita family by prefix (which also picks
# Novita's or HighwayAPI's rules), the others at the root as on the real hosts. Kling and
# Veo (own auth, own request shapes) have their contract in test_kling_veo.py.
PREFIXES = {"novita": "/novita", "highwayapi": "/highwayapi", "wavespeed": "", "byteplus": ""}
SEEDANCE = tuple(p for p in names() if p in PREFIXES)
CASES = [(provider, model) for provider in SEEDANCE for model in model_specs(provider)]
BP_TASKS = "/api/v3/contents/generations/tasks"


def adapter(
    sim: Sim, provider: str, key: str = KEY, submit_timeout_s: float | None = None
) -> Provider:
    settings = ProviderSettings(
        name=provider,
        base_url=sim.url + PREFIXES[provider],
        api_key=SecretStr(key),
        max_in_flight=10,
    )
    client = httpx.Client(timeout=10, verify=TLS)
    return make_provider(settings, client, submit_timeout_s=submit_timeout_s)


def valid_request(sim: Sim, spec: ModelSpec, **fields: Any) -> GenerationRequest:
    base: dict[str, Any] = {"prompt": "a cat walks across the frame", "image": sim.asset()}
    if spec.resolution_required:
        base["resolution"] = spec.default_resolution
    return GenerationRequest(**{**base, **fields})


def full_request(sim: Sim, spec: ModelSpec) -> GenerationRequest:
    """Every field the spec supports, at the edge of its range."""
    fields: dict[str, Any] = {
        "last_image": sim.asset("square.png"),
        "resolution": max(spec.resolutions, key=lambda r: int(r.removesuffix("p"))),
        "ratio": sorted(spec.ratios)[0],
        "duration": max(spec.durations),
        "seed": spec.seed_max,
        "camera_fixed": True,
    }
    if spec.supports_audio:
        fields["generate_audio"] = False
    if spec.supports_watermark:
        fields["watermark"] = True
    if spec.supports_fps:
        fields["fps"] = 24
    if spec.supports_service_tier:
        fields["service_tier"] = "flex"
    if spec.supports_expires_after:
        fields["execution_expires_after"] = 259200
    return valid_request(sim, spec, **fields)


def wire_model(provider: str, spec: ModelSpec, body: dict[str, Any], resolution: str) -> str:
    """The model as the simulator fingerprints it: path segment or body `model`."""
    if provider == "byteplus":
        return str(body["model"])
    return spec.wire_model.format(resolution=resolution)


def submit_path(provider: str, spec: ModelSpec, resolution: str) -> str:
    if provider == "byteplus":
        return BP_TASKS
    if provider == "wavespeed":
        return "/api/v3/" + spec.wire_model.format(resolution=resolution)
    return f"/v3/async/{spec.wire_model}"


def one_task(sim: Sim, provider_name: str) -> tuple[Provider, str, GenerationRequest, str]:
    """An adapter, its first model, a valid request, and the id of the task it created."""
    provider = adapter(sim, provider_name)
    model = next(iter(provider.models))
    request = valid_request(sim, provider.models[model])
    return provider, model, request, provider.submit(model, request)


def poll_to_end(provider: Provider, model: str, remote_id: str) -> PollResult:
    result: PollResult = wait_until(
        lambda: provider.poll(model, remote_id), lambda r: r.status.terminal
    )
    return result


def data_uri(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# --- the happy path ----------------------------------------------------------------------


@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
@pytest.mark.parametrize(("provider_name", "model"), CASES)
def test_submit_poll_download(sim: Sim, provider_name: str, model: str, full: bool) -> None:
    provider = adapter(sim, provider_name)
    spec = provider.models[model]
    request = full_request(sim, spec) if full else valid_request(sim, spec)

    remote_id = provider.submit(model, request)
    result = poll_to_end(provider, model, remote_id)

    assert result.status is TaskStatus.SUCCEEDED, result
    assert result.video_url and result.error_code is None
    video = sim.get(result.video_url)
    assert video.status_code == 200
    stats = sim.stats()
    assert stats["videos"] == {remote_id: hashlib.sha256(video.content).hexdigest()}
    # Exactly one submit, under the fingerprint of exactly the body the adapter builds.
    body = provider.build_body(model, request)
    resolution = request.resolution or spec.default_resolution or ""
    fingerprint = request_fingerprint(
        provider_name, wire_model(provider_name, spec, body, resolution), body
    )
    assert stats["submits_by_fingerprint"] == {fingerprint: 1}
    if request.seed is not None:
        assert result.seed in (None, request.seed)
    # The key travels in the Authorization header of API calls and nowhere else.
    for entry in stats["request_log"]:
        assert KEY not in entry["path"] + entry["query"] + entry["body"]
        api_call = not entry["path"].startswith("/_sim/")
        assert (entry["headers"].get("authorization") == f"Bearer {KEY}") is api_call


# --- the two validators agree ------------------------------------------------------------

CANDIDATES: dict[str, list[Any]] = {
    "resolution": ["360p", "480p", "720p", "1080p", "2k"],
    "ratio": ["21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "9:21", "adaptive", "2:1"],
    "duration": [-1, 1, 2, 3, 4, 5, 6, 10, 12, 13],
    "seed": [-2, -1, 0, 2147483647, 2147483648, 4294967295, 4294967296],
    "fps": [24, 30],
    "service_tier": ["default", "flex", "batch"],
    "execution_expires_after": [3599, 3600, 259200, 259201],
    "generate_audio": [True],
    "watermark": [True],
}


@pytest.mark.parametrize("field", sorted(CANDIDATES))
@pytest.mark.parametrize(("provider_name", "model"), CASES)
def test_validators_agree(sim: Sim, provider_name: str, model: str, field: str) -> None:
    """For each candidate value: the adapter accepts it ⇔ the simulator accepts the body the
    adapter would send with it."""
    provider = adapter(sim, provider_name)
    spec = provider.models[model]
    disagreements = []
    with sim.client() as client:
        for value in CANDIDATES[field]:
            request = valid_request(sim, spec, **{field: value})
            adapter_ok = not provider.validate(model, request)
            # The body as the adapter builds it, with the candidate forced in.
            body = provider.build_body(model, valid_request(sim, spec))
            resolution = request.resolution or spec.default_resolution or ""
            wire_field = spec.ratio_field if field == "ratio" else field
            if not (field == "resolution" and "{resolution}" in spec.wire_model):
                body[wire_field] = value
            response = client.post(
                PREFIXES[provider_name] + submit_path(provider_name, spec, resolution), json=body
            )
            sim_ok = response.status_code == 200
            if response.status_code not in (200, 400, 404):
                raise AssertionError(f"unexpected answer {response.status_code}: {response.text}")
            if adapter_ok != sim_ok:
                disagreements.append((value, adapter_ok, sim_ok, response.text[:200]))
    assert not disagreements, disagreements


# --- failure classification --------------------------------------------------------------


@pytest.mark.parametrize("provider_name", SEEDANCE)
def test_rate_limits_are_rate_limited(sim: Sim, provider_name: str) -> None:
    provider, model, request, remote_id = one_task(sim, provider_name)
    sim.profile(p_429=1)
    with pytest.raises(RateLimited) as submit_error:
        provider.submit(model, request)
    with pytest.raises(RateLimited):
        provider.poll(model, remote_id)
    assert submit_error.value.retry_after is None  # no Retry-After by default
    sim.profile(rpm=1, time_factor=1)  # a real minute: the earlier submit is in the window
    with pytest.raises(RateLimited):
        provider.submit(model, request)
    assert sim.stats()["submits"] == 1


@pytest.mark.parametrize("mode", ["drop", "hang"])
@pytest.mark.parametrize("provider_name", SEEDANCE)
def test_unanswered_submit_is_ambiguous(sim: Sim, provider_name: str, mode: str) -> None:
    provider = adapter(sim, provider_name, submit_timeout_s=0.3)
    model = next(iter(provider.models))
    sim.profile(p_submit_timeout=1, submit_timeout_mode=mode, submit_hang_s=30)
    with pytest.raises(AmbiguousSubmit):
        provider.submit(model, valid_request(sim, provider.models[model]))
    assert sim.stats()["submits"] == 1  # and indeed the task exists


@pytest.mark.parametrize("provider_name", SEEDANCE)
def test_server_errors(sim: Sim, provider_name: str) -> None:
    provider, model, request, remote_id = one_task(sim, provider_name)
    sim.profile(p_5xx=1)
    with pytest.raises(AmbiguousSubmit):
        provider.submit(model, request)
    with pytest.raises(RetryableProviderError) as poll_error:
        provider.poll(model, remote_id)
    assert not isinstance(poll_error.value, RateLimited)
    assert poll_error.value.status_code in (500, 502, 503)


@pytest.mark.parametrize("provider_name", SEEDANCE)
def test_malformed_answers(sim: Sim, provider_name: str) -> None:
    provider, model, request, remote_id = one_task(sim, provider_name)
    sim.profile(p_malformed=1)
    with pytest.raises(AmbiguousSubmit):
        provider.submit(model, request)
    with pytest.raises(RetryableProviderError):
        provider.poll(model, remote_id)


@pytest.mark.parametrize(("provider_name", "model"), CASES)
def test_task_failure_is_a_failed_poll(sim: Sim, provider_name: str, model: str) -> None:
    provider = adapter(sim, provider_name)
    sim.profile(p_task_fail=1)
    remote_id = provider.submit(model, valid_request(sim, provider.models[model]))
    result = poll_to_end(provider, model, remote_id)
    assert result.status is TaskStatus.FAILED
    assert result.error_code and result.error_message and result.video_url is None


EXPECTED_CODES = {
    "novita": ("INVALID_IMAGE_SIZE", "TASK_NOT_FOUND", "INVALID_API_KEY"),
    "highwayapi": ("INVALID_IMAGE_SIZE", "TASK_NOT_FOUND", "INVALID_API_KEY"),
    "wavespeed": ("400", "404", "401"),
    "byteplus": ("InvalidParameter", "ResourceNotFound", "AuthenticationError"),
}


@pytest.mark.parametrize("provider_name", SEEDANCE)
def test_refusals_are_permanent_with_the_providers_code(sim: Sim, provider_name: str) -> None:
    invalid_code, not_found_code, auth_code = EXPECTED_CODES[provider_name]
    provider = adapter(sim, provider_name)
    model = next(iter(provider.models))
    spec = provider.models[model]
    if spec.accepts_data_uri:
        # An image too small for the provider: only the server looks inside images.
        request = valid_request(sim, spec, image=data_uri(200, 200))
        with pytest.raises(PermanentProviderError) as invalid:
            provider.submit(model, request)
    else:
        # Nothing valid to the adapter is invalid to the simulator here: send a raw body.
        api = cast(Any, provider).api
        with pytest.raises(PermanentProviderError) as invalid:
            api.submit("/api/v3/" + spec.wire_model, {"prompt": "p"}, task_id=lambda a: a)
    assert (invalid.value.code, invalid.value.status_code) == (invalid_code, 400)
    assert "image" in invalid.value.message

    with pytest.raises(PermanentProviderError) as missing:
        provider.poll(model, "no-such-task")
    assert (missing.value.code, missing.value.status_code) == (not_found_code, 404)

    sim.profile(api_keys=["the-only-key"])
    with pytest.raises(PermanentProviderError) as auth:
        adapter(sim, provider_name, key="wrong-key").submit(model, valid_request(sim, spec))
    assert auth.value.code == auth_code
    assert sim.stats()["submits"] == 0


@pytest.mark.parametrize("provider_name", ["novita", "highwayapi", "wavespeed"])
def test_no_cancel_call_where_none_is_documented(sim: Sim, provider_name: str) -> None:
    provider, model, _, remote_id = one_task(sim, provider_name)
    assert provider.cancel(model, remote_id) is False
    assert [entry["method"] for entry in sim.stats()["request_log"]] == ["POST"]


def test_byteplus_cancel(sim: Sim) -> None:
    provider = adapter(sim, "byteplus")
    model = "seedance-v1.5-pro-i2v"
    request = valid_request(sim, provider.models[model])
    sim.profile(queue_delay_s=100_000)  # 100 s real: still queued when cancelled
    queued = provider.submit(model, request)
    assert provider.cancel(model, queued) is True
    assert provider.poll(model, queued).status is TaskStatus.CANCELLED
    sim.profile(queue_delay_s=0, latency_mean_s=100_000)  # running at once, for 100 s real
    running = provider.submit(model, request)
    assert provider.cancel(model, running) is False
    assert provider.poll(model, running).status is TaskStatus.RUNNING
    assert sim.stats()["cancels"] == 1


def test_byteplus_expiry(sim: Sim) -> None:
    provider = adapter(sim, "byteplus")
    model = "seedance-v1.5-pro-i2v"
    # Generation would take far longer than the task may live (3600 s: 36 ms real).
    sim.profile(time_factor=100_000, latency_mean_s=10_000_000)
    remote_id = provider.submit(
        model, valid_request(sim, provider.models[model], execution_expires_after=3600)
    )
    result = poll_to_end(provider, model, remote_id)
    assert result.status is TaskStatus.EXPIRED and result.error_code


def test_polls_report_progress_and_eta(sim: Sim) -> None:
    provider = adapter(sim, "novita")
    model = "seedance-v1.5-pro-i2v"
    sim.profile(time_factor=1, queue_delay_s=0, latency_mean_s=60)
    remote_id = provider.submit(model, valid_request(sim, provider.models[model]))
    result = provider.poll(model, remote_id)
    assert result.status is TaskStatus.RUNNING
    assert result.eta_s is not None and 0 < result.eta_s <= 60
    assert result.progress is not None and 0 <= result.progress < 100
