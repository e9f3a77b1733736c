"""Runway's API (https://docs.dev.runwayml.com; video-apis.md §1.4).

    submit  POST /v1/image_to_video {model, promptImage, promptText?, ratio, duration, seed?}
            -> {"id"}
    poll    GET  /v1/tasks/{id} -> {id, status, createdAt, progress?, output?: [url],
            failure?, failureCode?}; status PENDING | THROTTLED | RUNNING | SUCCEEDED |
            FAILED | CANCELLED
    cancel  DELETE /v1/tasks/{id} (cancels a task not finished; deletes one that is): sent
            only for a task still PENDING or THROTTLED (see `cancel`)

Every request carries `Authorization: Bearer <key>` and `X-Runway-Version: 2024-11-06`.
Errors are `{"error": "…"}` (400s add `issues`). Limits are the organisation's, per model
(usage/tiers): over the concurrency limit a task waits THROTTLED, "stored on our servers"
and started in about the order submitted, so `queues=True` (THROTTLED reads as queued);
"no maximum requests-per-minute limit"; a daily generation cap per model answers the
task creation 429, which here is the account's daily cap (`AccountCodes.daily_cap`: the
account pauses, no item fails). No webhooks are documented: polling only; no task list, so
an ambiguous submit stays ambiguous. No flex tier: `service_tier` is refused naming the
providers that have one. Output URLs "expire within 24-48 hours" (24 h kept).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from genbatch.config import ProviderSettings
from genbatch.errors import PermanentProviderError, RateLimited
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers.adapter import Adapter, as_dict, as_float, as_str, first
from genbatch.providers.base import ModelSpec
from genbatch.providers.http import Envelope, bearer
from genbatch.providers.plugin import (
    AccountCodes,
    Capability,
    Limits,
    Outputs,
    Prices,
    ProviderPlugin,
)

API_VERSION = "2024-11-06"
URL_TTL_S = 24 * 3600
DAILY_CAP = "DAILY_GENERATION_LIMIT"  # our name for the creation 429 (Runway sends none)
NO_CREDITS = "INSUFFICIENT_CREDITS"
DATA_URI_MAX_CHARS = 5 * 1024 * 1024  # "up to 5MB" (runwayml SDK's prompt_image, inputs)
CREDITS_PER_S = 5  # gen4_turbo; a credit is $0.01

# gen4_turbo output sizes (API reference, image_to_video); a genbatch ratio names one.
GEN4_RATIOS = {"16:9": "1280:720", "9:16": "720:1280", "4:3": "1104:832",
               "3:4": "832:1104", "1:1": "960:960", "21:9": "1584:672"}
# gen4_turbo: promptText up to 1000 characters and optional; duration 2..10 s (the API
# reference; ComfyUI's node and older copies offer only 5 and 10, a subset); seed
# 0..4294967295; no end frame, resolution, audio or fps. 5 credits/s at $0.01.
GEN4_TURBO = ModelSpec(
    name="gen4_turbo",
    wire_model="gen4_turbo",
    ratio_field="ratio",
    ratios=frozenset(GEN4_RATIOS) | frozenset(GEN4_RATIOS.values()),
    resolutions=frozenset({"720p"}),
    durations=frozenset(range(2, 11)),
    seed_min=0,
    seed_max=4294967295,
    prompt_required=False,
    prompt_max_chars=1000,
    supports_last_image=False,
    default_resolution="720p",
    default_duration=5,
    typical_seconds=45.0,
    extra={"usd_per_s": 0.05, "default_ratio": "1280:720", "ratio_wire": GEN4_RATIOS,
           "not_taken": ("camera_fixed",), "data_uri_max_chars": DATA_URI_MAX_CHARS},
)
MODELS = MappingProxyType({GEN4_TURBO.name: GEN4_TURBO})

_STATUSES = {
    "PENDING": TaskStatus.QUEUED,
    "THROTTLED": TaskStatus.QUEUED,  # over the concurrency limit: waits at Runway
    "RUNNING": TaskStatus.RUNNING,
    "PROCESSING": TaskStatus.RUNNING,  # named in an older copy of the task schema
    "SUCCEEDED": TaskStatus.SUCCEEDED,
    "FAILED": TaskStatus.FAILED,
    "CANCELLED": TaskStatus.CANCELLED,
}


def runway_auth(settings: ProviderSettings) -> dict[str, str]:
    """Bearer, and the API version every request must name."""
    return {**bearer(settings), "X-Runway-Version": API_VERSION}


def _error(body: Any) -> tuple[str, str] | None:
    """`{"error": "…", "issues"?: [{"path", "message"}]}`."""
    if not isinstance(body, dict) or not body.get("error"):
        return None
    message = str(body.get("error"))
    issues = [f"{'.'.join(map(str, as_dict(i).get('path') or []))}: {as_dict(i).get('message')}"
              for i in body.get("issues") or [] if isinstance(i, dict)]
    if issues:
        message += " (" + "; ".join(issues) + ")"
    code = NO_CREDITS if "credits" in message.lower() else ""
    return code, message


ENVELOPE = Envelope(parse=_error)


class RunwayProvider(Adapter):
    """Runway: gen4_turbo image to video."""

    name = "runway"
    specs = MODELS
    envelope = ENVELOPE
    auth = runway_auth

    def build_body(self, model: str, request: GenerationRequest) -> dict[str, Any]:
        return body(*self.checked(model, request))

    def submit(
        self, model: str, request: GenerationRequest, *, webhook_url: str | None = None
    ) -> str:
        spec, request = self.submittable(model, request)
        try:
            return self.api.submit("/v1/image_to_video", body(spec, request),
                                   task_id=lambda answer: answer.get("id"))
        except RateLimited as exc:  # no RPM limit exists: a 429 is the daily cap
            raise PermanentProviderError(
                self.name, DAILY_CAP, f"daily generation limit of {spec.wire_model} reached "
                f"({exc.message}); the account pauses until it resets", exc.status_code,
            ) from None

    def poll(self, model: str, remote_id: str) -> PollResult:
        return parse_task(self.api.get(f"/v1/tasks/{quote(remote_id, safe='')}"))

    def cancel(self, model: str, remote_id: str) -> bool:
        """Cancel a task still waiting (PENDING or THROTTLED). Runway's DELETE would also
        stop a running one, but genbatch lets a running generation finish (it is paid for),
        so the task is read first; one that starts in between is cancelled all the same."""
        path = f"/v1/tasks/{quote(remote_id, safe='')}"
        if self.poll(model, remote_id).status is not TaskStatus.QUEUED:
            return False
        return self.api.delete(path)


def parse_task(task: dict[str, Any]) -> PollResult:
    raw = (as_str(task.get("status")) or "").upper()
    status = _STATUSES.get(raw, TaskStatus.UNKNOWN)
    progress = as_float(task.get("progress"))
    if status is TaskStatus.SUCCEEDED:
        url = as_str(first(task.get("output")))
        # `cost.credits` (runwayml 5.x): the credits charged, kept as the seconds they pay for
        credits = as_float(as_dict(task.get("cost")).get("credits"))
        return PollResult(status, raw_status=raw, progress=100.0, video_url=url,
                          video_ttl_s=URL_TTL_S if url else None,
                          usage_seconds=None if credits is None else credits / CREDITS_PER_S)
    if status is TaskStatus.FAILED:
        return PollResult(status, raw_status=raw,
                          error_code=as_str(task.get("failureCode")) or "FAILED",
                          error_message=as_str(task.get("failure")) or "the task failed")
    return PollResult(status, raw_status=raw,
                      progress=None if progress is None else min(100.0, progress * 100))


def body(spec: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
    ratios = dict(spec.extra["ratio_wire"])
    ratio = ratios.get(request.ratio or "", request.ratio) or spec.extra["default_ratio"]
    out: dict[str, Any] = {"model": spec.wire_model, "promptImage": request.image,
                           "ratio": ratio, "duration": request.duration or spec.default_duration}
    if request.prompt:
        out["promptText"] = request.prompt
    if request.seed is not None:
        out["seed"] = request.seed
    return out


def estimate(spec: ModelSpec, request: GenerationRequest) -> float | None:
    return float(spec.extra["usd_per_s"]) * (request.duration or spec.default_duration)


def charged(spec: ModelSpec, request: GenerationRequest, result: PollResult) -> float | None:
    """What the task cost by its reported credits (None: not reported, the estimate)."""
    seconds = result.usage_seconds
    return None if seconds is None else float(spec.extra["usd_per_s"]) * seconds


PLUGIN = ProviderPlugin(
    name="runway",
    summary="Runway API: gen4_turbo image to video",
    adapter=RunwayProvider,
    models=MODELS,
    # Tier 1 of usage/tiers (per organisation and model; GET /v1/organization shows an
    # account's own). No RPM limit exists: the submit rate only spaces our own calls.
    limits=Limits(base_url="https://api.dev.runwayml.com", max_in_flight=1, submit_rpm=600,
                  poll_rpm=600, queues=True),
    outputs=Outputs(video_hosts=("*.cloudfront.net", "*.runwayml.com"),
                    url_ttl_s=float(URL_TTL_S)),
    prices=Prices(estimate, charged),
    account_codes=AccountCodes(balance=frozenset({NO_CREDITS}),
                               daily_cap=frozenset({DAILY_CAP})),
    capabilities=frozenset({Capability.CANCEL}),
)
