"""Google Veo through the Gemini API (ai.google.dev/gemini-api/docs/video, read 2026-12).

Submit `POST {base}/v1beta/models/{model}:predictLongRunning` with `x-goog-api-key` and
`{"instances": [{prompt, image, lastFrame?}], "parameters": {aspectRatio, durationSeconds,
resolution, negativePrompt?, seed?, personGeneration}}` → a long-running operation
`{"name": "models/…/operations/…"}`; poll `GET {base}/v1beta/{name}` until `done`; the
result is `response.generateVideoResponse.generatedSamples[0].video.uri`, a file URI that is
downloaded with the same key (Capability.KEYED_DOWNLOAD: the key goes to the API's own host
only, never to a host a redirect points at). Images travel inline: `bytesBase64Encoded` +
`mimeType`: the Gemini API takes no image URLs, so the worker fetches an http(s) or s3://
image itself, confined like a video download (public addresses only, size-capped, redirects
checked: genbatch/worker/remote_images.py) and the adapter sends data URIs only. No
callbacks (polling only), no task list, no idempotency key: an ambiguous
submit stays `ambiguous`. Generated videos are kept 2 days ("Limitations").

Docs vs. other sources: the docs' table writes durationSeconds as strings ("4", "6", "8");
the official SDKs send an integer, as we do. Quotas are not published per model; third-party
summaries give ~10 RPM for preview models (video-apis.md §1.3) — our default, settable.
Prices ($/s) are those summaries' figures for 720p/1080p with audio: estimates only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from genbatch.config import ProviderSettings
from genbatch.errors import FieldProblem, PermanentProviderError, RateLimited
from genbatch.models import GenerationRequest, PollResult
from genbatch.providers import registry
from genbatch.providers import veo_wire as wire
from genbatch.providers.adapter import Adapter
from genbatch.providers.base import ModelSpec
from genbatch.providers.plugin import (
    AccountCodes,
    Capability,
    Limits,
    Outputs,
    Prices,
    ProviderPlugin,
)
from genbatch.providers.validation import common_rules, no_flex

VEO_31 = ModelSpec(
    name="veo-3.1-generate-preview",
    wire_model="veo-3.1-generate-preview",
    ratio_field="aspectRatio",
    ratios=frozenset({"16:9", "9:16"}),
    resolutions=frozenset({"720p", "1080p"}),
    durations=frozenset({4, 6, 8}),
    seed_min=0,
    seed_max=4294967295,
    prompt_required=False,  # image-to-video may go without one
    supports_last_image=True,  # lastFrame (interpolation), with image
    supports_expires_after=True,  # kept by us: a client-side deadline, never sent
    image_urls=False,  # inline bytes only: the worker fetches a URL's image (confined)
    default_resolution="720p",
    default_duration=8,
    typical_seconds=90.0,  # "11 s to 6 min"
    extra={"usd_per_s": 0.40, "full_hd_durations": frozenset({8}),
           "inline_max_bytes": wire.IMAGE_MAX_BYTES,
           "rules": lambda spec, request: veo_problems(spec, request)},
)
VEO_31_FAST = replace(VEO_31, name="veo-3.1-fast-generate-preview",
                      wire_model="veo-3.1-fast-generate-preview", typical_seconds=60.0,
                      extra={**VEO_31.extra, "usd_per_s": 0.15})
MODELS = MappingProxyType({s.name: s for s in (VEO_31, VEO_31_FAST)})


class VeoProvider(Adapter):
    """Veo 3.1 (and 3.1 Fast) image-to-video on the Gemini API."""

    name = "veo"
    specs = MODELS
    envelope = wire.ENVELOPE
    auth = wire.key_header

    def __init__(self, settings: ProviderSettings, client: httpx.Client, *,
                 submit_timeout_s: float | None = None) -> None:
        super().__init__(settings, client, submit_timeout_s=submit_timeout_s)
        base = settings.base_url.rstrip("/")
        self._prefix = "" if base.endswith(wire.API_PREFIX) else wire.API_PREFIX

    def build_body(self, model: str, request: GenerationRequest) -> dict[str, Any]:
        spec, request = self.checked(model, request)
        return wire.body(spec, request, wire.inline_image)

    def submit(self, model: str, request: GenerationRequest, *,
               webhook_url: str | None = None) -> str:
        spec, request = self.submittable(model, request)
        body = wire.body(spec, request, wire.inline_image)
        path = f"{self._prefix}/models/{quote(spec.wire_model, safe='')}:predictLongRunning"
        with _account_refusals():
            return self.api.submit(path, body, task_id=lambda answer: answer.get("name"))

    def poll(self, model: str, remote_id: str) -> PollResult:
        with _account_refusals():
            answer = self.api.get(f"{self._prefix}/{quote(remote_id, safe='/')}")
        return wire.parse_operation(answer)

    def download_headers(self, url: str) -> dict[str, str]:
        """The key, for a URL on the API's own host (scheme and port too); else nothing."""
        if _origin(url) != _origin(self.settings.base_url):
            return {}
        return wire.key_header(self.settings)



@contextmanager
def _account_refusals() -> Iterator[None]:
    """A 429 for a per-day quota or depleted prepaid credits is not a rate to slow down for
    but an account to pause: PermanentProviderError with the code, read through the
    plugin's account codes (DAILY_QUOTA a daily cap, PREPAY_DEPLETED no balance)."""
    try:
        yield
    except RateLimited as exc:
        if exc.code not in (wire.DAILY_QUOTA, wire.PREPAY_DEPLETED):
            raise
        why = ("a per-day quota is used up; the account pauses until it resets (midnight "
               "Pacific time)" if exc.code == wire.DAILY_QUOTA
               else "the prepaid credits are used up; top them up in AI Studio")
        raise PermanentProviderError(exc.provider, exc.code, f"{exc.message} ({why})",
                                     exc.status_code) from None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower().rstrip("."), port


def veo_problems(spec: ModelSpec, request: GenerationRequest) -> list[FieldProblem]:
    """The common rules, then Veo's: 1080p only at 8 s; audio is always on (Veo 3.1); no
    camera_fixed; no flex tier."""
    where = f"{spec.name} on veo"
    problems = common_rules("veo", spec, request.model_copy(
        update={"generate_audio": None, "camera_fixed": None, "service_tier": None}))
    durations = spec.extra["full_hd_durations"]
    duration = request.duration or spec.default_duration
    if request.resolution == "1080p" and duration not in durations:
        problems.append(FieldProblem("duration", f"must be 8 for 1080p on {where}, "
                                     f"got {duration}"))
    if request.generate_audio is False:
        problems.append(FieldProblem("generate_audio", f"{where} always generates audio; "
                                     "leave generate_audio unset"))
    if request.camera_fixed is not None:
        problems.append(FieldProblem("camera_fixed", f"{where} does not take camera_fixed; "
                                     "leave it unset"))
    if request.service_tier is not None:
        problems.append(no_flex("Veo (Gemini API)", "veo", request.service_tier,
                                 registry.with_flex_tier()))
    return problems


def estimate(spec: ModelSpec, request: GenerationRequest) -> float:
    per_second: float = spec.extra["usd_per_s"]
    return round(per_second * (request.duration or spec.default_duration), 4)


PLUGIN = ProviderPlugin(
    name="veo",
    summary="Google Veo 3.1 and 3.1 Fast on the Gemini API (polling; keyed video download)",
    adapter=VeoProvider,
    models=MODELS,
    # Requests per minute (a per-minute 429 RESOURCE_EXHAUSTED cuts the rate; a per-day one
    # pauses the account, veo_wire.py); over the concurrency refused, nothing queues.
    limits=Limits(base_url="https://generativelanguage.googleapis.com", max_in_flight=10,
                  submit_rpm=10, poll_rpm=600, queues=False),
    outputs=Outputs(video_hosts=("generativelanguage.googleapis.com",
                                 "*.googleusercontent.com", "storage.googleapis.com"),
                    url_ttl_s=float(wire.VIDEO_TTL_S)),
    prices=Prices(estimate=estimate),  # no usage reported: the estimate
    account_codes=AccountCodes(auth=wire.AUTH_CODES, balance=wire.BALANCE_CODES,
                               daily_cap=frozenset({wire.DAILY_QUOTA})),
    capabilities=frozenset({Capability.KEYED_DOWNLOAD}),
)
