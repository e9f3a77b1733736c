"""Contract: the Kling and Veo adapters against the simulator's Kling and Veo protocols.

Each model goes all the way (submit, poll to the end, download the bytes the simulator
recorded — Veo's with the key, on its own host only); Kling's JWT is checked (signature,
expiry), its concurrency refuses with 1303 (SlotFull), its external_task_id finds the task;
Veo's limits answer 429 RESOURCE_EXHAUSTED; injected failures are classified as DESIGN.md
needs; a failed task is a FAILED poll with code and message.
"""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import pytest
from pydantic import SecretStr

from genbatch.config import ProviderSettings
from genbatch.errors import (
    AmbiguousSubmit,
    PermanentProviderError,
    RateLimited,
    RetryableProviderError,
    SlotFull,
)
from genbatch.images import data_uri, sniff_format
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers import make_provider, model_specs, plugin
from genbatch.providers.base import Provider
from genbatch.providers.failures import FailureClass, failure_class
from genbatch.providers.kling_wire import encode_jwt
from genbatch.webhooks.receiver import parse_callback
from tests.contract.test_callbacks import Recorder, recorder  # noqa: F401
from tests.simulator.helpers import KEY, TLS, Sim, wait_until

SECRET = "sim-kling-secret"  # the simulator's default secret_key
CASES = [(p, m) for p in ("kling", "veo") for m in model_specs(p)]


def adapter(sim: Sim, provider: str, key: str = KEY, secret: str = SECRET,
            submit_timeout_s: float | None = None) -> Provider:
    options = (("secret_key", SecretStr(secret)),) if provider == "kling" else ()
    settings = ProviderSettings(name=provider, base_url=f"{sim.url}/{provider}",
                                api_key=SecretStr(key), max_in_flight=10, options=options)
    return make_provider(settings, httpx.Client(timeout=10, verify=TLS),
                         submit_timeout_s=submit_timeout_s)


def request_for(sim: Sim, provider: str, **fields: object) -> GenerationRequest:
    """A request with the simulator's sample image: a URL for Kling, inline for Veo (the
    worker inlines a row's image URL before the adapter sees it: remote_images.py)."""
    request = GenerationRequest(prompt="a cat walks", image=sim.asset(), **fields)
    if provider != "veo":
        return request
    return request.model_copy(update={
        name: inline(ref) for name in ("image", "last_image")
        if (ref := getattr(request, name))})


def inline(url: str) -> str:
    data = httpx.get(url, timeout=10).content
    return data_uri(data, sniff_format(data))


def poll_to_end(provider: Provider, model: str, remote_id: str) -> PollResult:
    result: PollResult = wait_until(lambda: provider.poll(model, remote_id),
                                    lambda r: r.status.terminal)
    return result


@pytest.mark.parametrize(("provider_name", "model"), CASES)
def test_submit_poll_download(sim: Sim, provider_name: str, model: str) -> None:
    provider = adapter(sim, provider_name)
    fields = {"last_image": sim.asset("square.png"), "resolution": "1080p",
              "duration": 10 if provider_name == "kling" else 8}
    remote_id = provider.submit(model, request_for(sim, provider_name, **fields))
    result = poll_to_end(provider, model, remote_id)
    assert result.status is TaskStatus.SUCCEEDED and result.video_url
    with httpx.Client(verify=TLS, follow_redirects=True) as client:
        video = client.get(result.video_url,
                           headers=provider.download_headers(result.video_url))
    assert video.status_code == 200
    task = remote_id.rsplit("/", 1)[-1]
    assert hashlib.sha256(video.content).hexdigest() == sim.stats()["videos"][task]


def test_veo_video_needs_the_key(sim: Sim) -> None:
    provider = adapter(sim, "veo")
    model = "veo-3.1-fast-generate-preview"
    result = poll_to_end(provider, model, provider.submit(model, request_for(sim, "veo")))
    assert result.video_url
    assert sim.get(result.video_url).status_code == 403


def test_kling_jwt_signature_and_expiry_are_checked(sim: Sim) -> None:
    with pytest.raises(PermanentProviderError) as bad:
        adapter(sim, "kling", secret="not-the-secret").submit(
            "kling-v2-1", request_for(sim, "kling"))
    assert (bad.value.code, bad.value.status_code) == ("1002", 401)
    expired = encode_jwt(KEY, SECRET, now=time.time() - 3600)
    with httpx.Client(verify=TLS) as client:
        answer = client.get(f"{sim.url}/kling/v1/videos/image2video/x",
                            headers={"Authorization": f"Bearer {expired}"})
        assert (answer.status_code, answer.json()["code"]) == (401, 1004)
        early = encode_jwt(KEY, SECRET, now=time.time() + 3600)
        answer = client.get(f"{sim.url}/kling/v1/videos/image2video/x",
                            headers={"Authorization": f"Bearer {early}"})
        assert (answer.status_code, answer.json()["code"]) == (401, 1003)
        empty = client.get(f"{sim.url}/kling/v1/videos/image2video/x")
        assert (empty.status_code, empty.json()["code"]) == (401, 1001)
    assert sim.stats()["submits"] == 0


def test_kling_over_concurrency_is_slot_full(sim: Sim) -> None:
    sim.profile(concurrency=1, latency_mean_s=60_000)
    provider = adapter(sim, "kling")
    provider.submit("kling-v2-1", request_for(sim, "kling"))
    with pytest.raises(SlotFull) as full:
        provider.submit("kling-v2-1", request_for(sim, "kling"))
    assert (full.value.code, full.value.status_code) == ("1303", 429)
    assert sim.stats()["submits"] == 1


def test_kling_finds_a_task_by_our_attempt_id(sim: Sim) -> None:
    provider = adapter(sim, "kling")
    remote_id = provider.submit("kling-v2-1", request_for(sim, "kling"),  # type: ignore[call-arg]
                                client_ref="gb-item-1")
    assert provider.lookup("kling-v2-1", "gb-item-1") == remote_id
    assert provider.lookup("kling-v2-1", "gb-item-2") is None
    with pytest.raises(PermanentProviderError, match="external_task_id"):
        provider.submit("kling-v2-1", request_for(sim, "kling"),  # type: ignore[call-arg]
                        client_ref="gb-item-1")


def test_kling_lists_the_accounts_newest_tasks_with_their_status(sim: Sim) -> None:
    """Query Task (List): one request, the account's tasks newest first, each as a single
    query reads it (an ended one with its video); another account's tasks are not listed;
    a page size outside [1, 500] is Kling's 1201 bad parameter."""
    sim.profile(latency_mean_s=0.5, latency_sigma=0.0)
    provider = adapter(sim, "kling")
    model = "kling-v2-1"
    ids = [provider.submit(model, request_for(sim, "kling")) for _ in range(3)]
    newest = provider.recent(model, 2)
    assert [task for task, _ in newest] == ids[:0:-1]
    ended = wait_until(lambda: dict(provider.recent(model, 10)),
                       lambda found: all(r.status.terminal for r in found.values()))
    assert set(ended) == set(ids)
    for task, result in ended.items():
        assert result == provider.poll(model, task)  # as a single query reads it
    assert ended[ids[0]].video_url
    assert sim.stats()["lists"] >= 2
    assert adapter(sim, "kling", key="another-key").recent(model, 10) == []
    with httpx.Client(verify=TLS) as client:
        token = encode_jwt(KEY, SECRET)
        answer = client.get(f"{sim.url}/kling/v1/videos/image2video",
                            params={"pageNum": 1, "pageSize": 501},
                            headers={"Authorization": f"Bearer {token}"})
    assert (answer.status_code, answer.json()["code"]) == (400, 1201)


def test_veo_limits_are_rate_limited(sim: Sim) -> None:
    provider = adapter(sim, "veo")
    model = "veo-3.1-generate-preview"
    sim.profile(rpm=1, time_factor=1)
    provider.submit(model, request_for(sim, "veo"))
    with pytest.raises(RateLimited) as limited:
        provider.submit(model, request_for(sim, "veo"))
    assert limited.value.code == "RESOURCE_EXHAUSTED"
    sim.profile(concurrency=1, latency_mean_s=60_000)
    with pytest.raises(RateLimited):
        provider.submit(model, request_for(sim, "veo"))


def test_veo_daily_quota_and_depleted_credits_pause_the_account(sim: Sim) -> None:
    """The simulator's per-day quota and its out-of-balance answer are the Gemini API's 429s;
    genbatch reads them as account refusals (a daily cap, no balance), not a rate."""
    provider = adapter(sim, "veo")
    model = "veo-3.1-generate-preview"
    sim.profile(daily_cap=1, time_factor=1)
    provider.submit(model, request_for(sim, "veo"))
    with pytest.raises(PermanentProviderError) as daily:
        provider.submit(model, request_for(sim, "veo"))
    assert (daily.value.code, failure_class(daily.value)) == ("DAILY_QUOTA",
                                                              FailureClass.BALANCE)
    sim.profile(out_of_balance=True)
    with pytest.raises(PermanentProviderError) as broke:
        provider.submit(model, request_for(sim, "veo"))
    assert (broke.value.code, failure_class(broke.value)) == ("PREPAY_DEPLETED",
                                                              FailureClass.BALANCE)


@pytest.mark.parametrize("provider_name", ["kling", "veo"])
def test_injected_failures(sim: Sim, provider_name: str) -> None:
    provider = adapter(sim, provider_name)
    model = next(iter(provider.models))
    remote_id = provider.submit(model, request_for(sim, provider_name))
    sim.profile(p_5xx=1)
    with pytest.raises(AmbiguousSubmit):
        provider.submit(model, request_for(sim, provider_name))
    with pytest.raises(RetryableProviderError):
        provider.poll(model, remote_id)
    sim.profile(p_429=1)
    with pytest.raises(RateLimited):
        provider.poll(model, remote_id)
    sim.profile(p_submit_timeout=1, submit_timeout_mode="drop")
    with pytest.raises(AmbiguousSubmit):
        provider.submit(model, request_for(sim, provider_name))


@pytest.mark.parametrize("provider_name", ["kling", "veo"])
def test_task_failure_is_a_failed_poll(sim: Sim, provider_name: str) -> None:
    provider = adapter(sim, provider_name)
    model = next(iter(provider.models))
    sim.profile(p_task_fail=1)
    result = poll_to_end(provider, model, provider.submit(model, request_for(sim, provider_name)))
    assert result.status is TaskStatus.FAILED
    assert result.error_code and result.error_message and result.video_url is None


@pytest.mark.parametrize(("provider_name", "code"), [("kling", "1002"),
                                                     ("veo", "API_KEY_INVALID")])
def test_a_wrong_key_is_refused_with_the_providers_code(sim: Sim, provider_name: str,
                                                        code: str) -> None:
    sim.profile(api_keys=["the-only-key"])
    with pytest.raises(PermanentProviderError) as auth:
        adapter(sim, provider_name, key="wrong-key").submit(
            next(iter(model_specs(provider_name))), request_for(sim, provider_name))
    assert auth.value.code == code


def test_kling_calls_back_with_the_task_object_unsigned(
        sim: Sim, recorder: Recorder) -> None:  # noqa: F811 - the fixture

    provider = adapter(sim, "kling")
    remote_id = provider.submit("kling-v2-1", request_for(sim, "kling"),
                                webhook_url=recorder.url)
    [(headers, raw)] = recorder.wait(1)
    parsed = parse_callback("kling", json.loads(raw))
    assert parsed is not None
    task_id, result = parsed
    assert (task_id, result.status) == (remote_id, TaskStatus.SUCCEEDED)
    assert result == provider.poll("kling-v2-1", remote_id)  # the same report a poll gives
    assert not any(h.startswith("webhook-") or h == "x-signature" for h in headers)
    callbacks = plugin("kling").callbacks
    assert callbacks is not None and callbacks.verify is None
