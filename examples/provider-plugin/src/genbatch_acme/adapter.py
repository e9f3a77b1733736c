"""Acme Video's API (README "Protocol"), as a genbatch provider.

Submit `POST {base}/v1/videos {model, prompt, image_url, duration, resolution,
aspect_ratio?, seed?, callback_url?}` → `{"id", "state": "waiting"}`. Poll
`GET {base}/v1/videos/{id}` → the job: `state` waiting | rendering | done | error |
cancelled, `progress` (0-100), `video {url, expires_in}`, `error {code, message}`. Cancel
`POST {base}/v1/videos/{id}/cancel` (a waiting job only; else 409 `not_cancellable`).
Errors: `{"error": {"code", "message"}}`; 409 `slot_full` when the account's concurrency
is used up (Acme refuses rather than queues). Callbacks POST the job, signed (`signing.py`).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from genbatch.errors import PermanentProviderError
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers.adapter import Adapter, as_dict, as_int, as_str, progress
from genbatch.providers.base import ModelSpec
from genbatch.providers.http import Envelope
from genbatch.providers.plugin import (
    AccountCodes,
    Callbacks,
    Capability,
    Limits,
    Outputs,
    Prices,
    ProviderPlugin,
)
from genbatch_acme import signing

MOTION_1 = ModelSpec(
    name="acme-motion-1",
    wire_model="motion-1",
    ratio_field="aspect_ratio",
    ratios=frozenset({"16:9", "9:16", "1:1"}),
    resolutions=frozenset({"480p", "720p"}),
    durations=frozenset({5, 10}),
    seed_max=2147483647,
    prompt_required=True,
    default_resolution="720p",
    typical_seconds=30.0,
)
MODELS = MappingProxyType({MOTION_1.name: MOTION_1})
STATES = {
    "waiting": TaskStatus.QUEUED,
    "rendering": TaskStatus.RUNNING,
    "done": TaskStatus.SUCCEEDED,
    "error": TaskStatus.FAILED,
    "cancelled": TaskStatus.CANCELLED,
}


def parse_error(body: Any) -> tuple[str, str] | None:
    """`{"error": {"code": "slot_full", "message": "…"}}` as (code, message)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    return as_str(error.get("code")) or "", as_str(error.get("message")) or ""


ENVELOPE = Envelope(parse=parse_error, slot_full=frozenset({"slot_full"}))


class AcmeProvider(Adapter):
    """Acme Video: one image-to-video model, `acme-motion-1`."""

    name = "acme"
    specs = MODELS
    envelope = ENVELOPE

    def build_body(self, model: str, request: GenerationRequest) -> dict[str, Any]:
        return _body(*self.checked(model, request))

    def submit(self, model: str, request: GenerationRequest, *,
               webhook_url: str | None = None) -> str:
        body = _body(*self.submittable(model, request))
        if webhook_url:
            body["callback_url"] = webhook_url
        return self.api.submit("/v1/videos", body, task_id=lambda answer: answer.get("id"))

    def poll(self, model: str, remote_id: str) -> PollResult:
        return parse_job(self.api.get(f"/v1/videos/{quote(remote_id, safe='')}"))

    def cancel(self, model: str, remote_id: str) -> bool:
        try:
            self.api.read_post(f"/v1/videos/{quote(remote_id, safe='')}/cancel", {})
        except PermanentProviderError as exc:
            if exc.code == "not_cancellable":
                return False
            raise
        return True


def _body(spec: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": spec.wire_model,
        "prompt": request.prompt,
        "image_url": request.image,
        "duration": request.duration or spec.default_duration,
        "resolution": request.resolution or spec.default_resolution,
    }
    if request.ratio is not None:
        body["aspect_ratio"] = request.ratio
    if request.seed is not None:
        body["seed"] = request.seed
    return body


def parse_job(job: dict[str, Any]) -> PollResult:
    """A job (as GET or a callback gives it) as a PollResult."""
    raw = as_str(job.get("state")) or ""
    status = STATES.get(raw, TaskStatus.UNKNOWN)
    video, error = as_dict(job.get("video")), as_dict(job.get("error"))
    failed = status is TaskStatus.FAILED
    return PollResult(
        status=status,
        raw_status=raw,
        progress=progress(job.get("progress")),
        video_url=as_str(video.get("url")),
        video_ttl_s=as_int(video.get("expires_in")),
        error_code=(as_str(error.get("code")) or "error") if failed else None,
        error_message=(as_str(error.get("message")) or "job failed") if failed else None,
        seed=as_int(job.get("seed")),
    )


def parse_callback(body: dict[str, Any]) -> tuple[str | None, PollResult] | None:
    """A callback is the job itself."""
    return as_str(body.get("id")), parse_job(body)


def estimate(spec: ModelSpec, request: GenerationRequest) -> float:
    """USD 0.04 a second of video at 480p, 0.08 at 720p."""
    per_second = 0.08 if (request.resolution or spec.default_resolution) == "720p" else 0.04
    return per_second * (request.duration or spec.default_duration)


PLUGIN = ProviderPlugin(
    name="acme",
    summary="Acme Video (fictional): acme-motion-1 image-to-video",
    adapter=AcmeProvider,
    models=MODELS,
    limits=Limits(base_url="https://api.acme.example", max_in_flight=4, submit_rpm=60,
                  poll_rpm=600, queues=False),
    outputs=Outputs(video_hosts=("cdn.acme.example",), url_ttl_s=3600.0),
    prices=Prices(estimate=estimate),
    callbacks=Callbacks(parse=parse_callback, verify=signing.verify,
                        secret_setting="webhook_secret"),  # noqa: S106 - a setting's name
    account_codes=AccountCodes(auth=frozenset({"unauthorized"}),
                               balance=frozenset({"insufficient_credit"})),
    capabilities=frozenset({Capability.CALLBACKS, Capability.SIGNED_CALLBACKS,
                            Capability.CANCEL}),
    settings={"webhook_secret": "the account's webhook signing secret (GET "
              "/v1/account/webhook-secret): callbacks are verified with it"},
)
