"""Novita's `/v3/async` protocol (docs/wire/novita.md); HighwayAPI speaks it too (§3).

Submit `POST {base}/v3/async/{slug}` with a flat body → `{"task_id": "…"}`.
Poll `GET {base}/v3/async/task-result?task_id=…` → `{"task": {status, reason, eta,
progress_percent}, "videos": [{video_url, video_url_ttl}], "extra": {"seed": "…"}}`.
Numbers may arrive as strings and any key may be missing. No cancel call is documented.

Webhook: `"extra": {"webhook": {"url": …}}` in the submit body (NOV-SKILL; whether each
Seedance endpoint honours it is not stated on its page). The callback body is
`{"event_type": "ASYNC_TASK_RESULT", "payload": <the task-result body>}`; other event types
are to be ignored; Novita retries up to 5 times with a 5 s timeout (docs/wire/notes.md §9).
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from genbatch.errors import RetryableProviderError
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers import pricing
from genbatch.providers.adapter import (
    Adapter,
    as_dict,
    as_float,
    as_int,
    as_str,
    first,
    flat_body,
    progress,
)
from genbatch.providers.base import ModelSpec
from genbatch.providers.http import NOVITA_ENVELOPE
from genbatch.providers.plugin import Callbacks, Capability, Limits, Outputs, ProviderPlugin

CALLBACK_EVENT = "ASYNC_TASK_RESULT"
RATIOS_V1 = frozenset({"21:9", "16:9", "4:3", "1:1", "3:4", "9:16"})
RATIOS_V15 = RATIOS_V1 | {"adaptive"}

# §2.2 (SEED-NOV15). Prompt "recommended" ≤ 500 chars is a soft limit, so not enforced.
SEEDANCE_V15_PRO = ModelSpec(
    name="seedance-v1.5-pro-i2v",
    wire_model="seedance-v1.5-pro-i2v",
    ratio_field="ratio",
    ratios=RATIOS_V15,
    resolutions=frozenset({"480p", "720p"}),
    durations=frozenset(range(4, 13)),
    seed_max=4294967295,
    prompt_required=True,
    supports_audio=True,
    supports_watermark=True,
    supports_fps=True,
    supports_service_tier=True,
    supports_expires_after=True,
    default_resolution="720p",
    typical_seconds=60.0,
)
# §2.3 (SEED-NOV1P). `resolution` is required with no default: when the request leaves it
# unset we send `default_resolution`. The live page's extra `9:21` ratio is not in the seed.
SEEDANCE_V1_PRO = ModelSpec(
    name="seedance-v1-pro-i2v",
    wire_model="seedance-v1-pro-i2v",
    ratio_field="aspect_ratio",
    ratios=RATIOS_V1,
    resolutions=frozenset({"480p", "720p", "1080p"}),
    durations=frozenset({5, 10}),
    seed_max=2147483647,
    prompt_required=False,
    prompt_max_chars=2000,
    resolution_required=True,
    default_resolution="720p",
    typical_seconds=60.0,
)
# §2.4 (SEED-NOV1L): as V1 pro. The doc gives no seed bound; V1 pro's is assumed.
SEEDANCE_V1_LITE = replace(
    SEEDANCE_V1_PRO,
    name="seedance-v1-lite-i2v",
    wire_model="seedance-v1-lite-i2v",
    typical_seconds=45.0,
)

MODELS = MappingProxyType(
    {s.name: s for s in (SEEDANCE_V15_PRO, SEEDANCE_V1_PRO, SEEDANCE_V1_LITE)}
)

# TASK_STATUS_RUNNING and TASK_STATUS_CANCELED appear only in 3P fixtures (§8 q2).
# Anything else (TASK_STATUS_UNKNOWN included) stays UNKNOWN, which is non-terminal.
_STATUSES = {
    "TASK_STATUS_QUEUED": TaskStatus.QUEUED,
    "TASK_STATUS_PROCESSING": TaskStatus.RUNNING,
    "TASK_STATUS_RUNNING": TaskStatus.RUNNING,
    "TASK_STATUS_SUCCEED": TaskStatus.SUCCEEDED,
    "TASK_STATUS_FAILED": TaskStatus.FAILED,
    "TASK_STATUS_CANCELED": TaskStatus.CANCELLED,
}


class NovitaProvider(Adapter):
    """Novita: Seedance 1.5 pro, V1 pro and V1 lite image-to-video."""

    name = "novita"
    specs = MODELS
    envelope = NOVITA_ENVELOPE

    def build_body(self, model: str, request: GenerationRequest) -> dict[str, Any]:
        return flat_body(*self.checked(model, request))

    def submit(
        self, model: str, request: GenerationRequest, *, webhook_url: str | None = None
    ) -> str:
        spec, request = self.submittable(model, request)
        body = flat_body(spec, request)
        if webhook_url:
            body["extra"] = {"webhook": {"url": webhook_url}}
        return self.api.submit(
            f"/v3/async/{quote(spec.wire_model, safe='')}",
            body,
            task_id=lambda answer: answer.get("task_id"),
        )

    def poll(self, model: str, remote_id: str) -> PollResult:
        try:
            body = self.api.get("/v3/async/task-result", {"task_id": remote_id})
        except RetryableProviderError as exc:
            # NOV-ERR lists TASK_FAILED as an HTTP 500; a 3P client treats it as final (§8 q2).
            if exc.code != "TASK_FAILED":
                raise
            return PollResult(
                TaskStatus.FAILED,
                raw_status="TASK_FAILED",
                error_code="TASK_FAILED",
                error_message=exc.message,
            )
        return parse_task_result(body)


def parse_task_result(body: dict[str, Any]) -> PollResult:
    """A task-result body as a PollResult; tolerant of strings-for-numbers and missing keys."""
    task = as_dict(body.get("task"))
    raw = as_str(task.get("status")) or ""
    status = _STATUSES.get(raw.upper(), TaskStatus.UNKNOWN)
    video = as_dict(first(body.get("videos")))
    eta = as_float(task.get("eta"))
    failed = status is TaskStatus.FAILED
    return PollResult(
        status=status,
        raw_status=raw,
        progress=progress(task.get("progress_percent")),
        eta_s=eta if eta is not None and eta > 0 else None,  # 0 means "no estimate"
        video_url=as_str(video.get("video_url")),
        video_ttl_s=as_int(video.get("video_url_ttl")),
        error_code=raw if failed else None,
        error_message=(as_str(task.get("reason")) or "task failed") if failed else None,
        seed=as_int(as_dict(body.get("extra")).get("seed")),
    )


def parse_callback(body: dict[str, Any]) -> tuple[str | None, PollResult] | None:
    """A webhook callback as (task id, PollResult); None for an event other than
    ASYNC_TASK_RESULT (acknowledge it and do nothing). The task-result body is its
    `payload`; a bare one, or one under `data`, is read as well."""
    event = body.get("event_type")
    if event is not None and event != CALLBACK_EVENT:
        return None
    for wrapper in ("payload", "data"):
        inner = body.get(wrapper)
        if "task" not in body and isinstance(inner, dict) and "task" in inner:
            body = inner
    return as_str(as_dict(body.get("task")).get("task_id")), parse_task_result(body)


# Novita's outputs are presigned URLs of its faas-output S3 buckets (NOV-TR).
VIDEO_HOSTS = ("faas-output-*.s3.amazonaws.com", "faas-output-*.s3.*.amazonaws.com")
PLUGIN = ProviderPlugin(
    name="novita",
    summary="Novita AI: Seedance 1.5 pro, V1 pro and V1 lite image-to-video",
    adapter=NovitaProvider,
    models=MODELS,
    limits=Limits(base_url="https://api.novita.ai", max_in_flight=20, submit_rpm=20,
                  poll_rpm=600),
    outputs=Outputs(video_hosts=(*VIDEO_HOSTS, "*.novita.ai")),
    prices=pricing.SEEDANCE_TOKENS,
    callbacks=Callbacks(parse=parse_callback),
    capabilities=frozenset({Capability.CALLBACKS}),
)
