"""Veo's wire format on the Gemini API: the request, the operation, Google's error envelope.

Errors are Google's `{"error": {"code": 400, "message": "…", "status": "INVALID_ARGUMENT",
"details": [{"reason": "API_KEY_INVALID", …}]}}`; we report the reason where given, else the
status. Account refusals, as the Gemini API documents them (ai.google.dev/gemini-api/docs/
troubleshooting and rate-limits, read 2026-12):

- 429 RESOURCE_EXHAUSTED is any exceeded limit (RPM, RPD, tokens, spend); its
  `google.rpc.QuotaFailure` detail names the quota (`quotaId`
  `GenerateRequestsPerMinutePerProjectPerModel…` or `…PerDay…`). Per minute: a rate limit
  (RateLimited). Per day: `DAILY_QUOTA` (our name), the account's daily cap, which resets at
  midnight Pacific time: the account pauses, no item fails.
- 429 RESOURCE_EXHAUSTED "Your prepayment credits are depleted" (prepay billing; the
  billing page: every key of the billing account stops) and a 402: `PREPAY_DEPLETED` (our
  name), no balance.
- 400 FAILED_PRECONDITION on a request: "Gemini API free tier is not available in your
  country. Please enable billing" (the troubleshooting table): no billing, a balance
  failure the same way.

A finished operation carries either `response` or `error` (a google.rpc.Status); a
response whose samples were all filtered (`raiMediaFilteredCount` / `…Reasons`) has no
video and is a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genbatch.config import ProviderSettings
from genbatch.errors import PermanentProviderError
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers.adapter import as_dict, as_str, first
from genbatch.providers.base import ModelSpec
from genbatch.providers.http import Envelope

API_PREFIX = "/v1beta"
VIDEO_TTL_S = 2 * 24 * 3600  # "generated videos are stored on the server for 2 days"
IMAGE_MAX_BYTES = 20 * 1024 * 1024  # an inline request stays under the API's 20 MB
AUTH_CODES = frozenset({"API_KEY_INVALID", "PERMISSION_DENIED", "UNAUTHENTICATED"})
DAILY_QUOTA = "DAILY_QUOTA"  # a per-day quota used up (quotaId …PerDay…)
PREPAY_DEPLETED = "PREPAY_DEPLETED"  # prepaid credits used up (429 or 402)
BALANCE_CODES = frozenset({PREPAY_DEPLETED, "FAILED_PRECONDITION"})
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
# Image-to-video takes only "allow_adult" (the docs' personGeneration row).
PERSON_GENERATION = "allow_adult"
ImageReader = Callable[[str], dict[str, str]]


def key_header(settings: ProviderSettings) -> dict[str, str]:
    """`x-goog-api-key: <key>` (the Gemini API's documented header)."""
    return {"x-goog-api-key": settings.require_key().get_secret_value()}


def _error(body: Any) -> tuple[str, str] | None:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    message = as_str(error.get("message")) or ""
    reason = next((as_str(d.get("reason")) for d in details if d.get("reason")), None)
    code = reason or as_str(error.get("status")) or as_str(error.get("code")) or ""
    if error.get("code") == 402 or "prepayment credits" in message.lower():
        code = PREPAY_DEPLETED
    elif code == "RESOURCE_EXHAUSTED" and any("PerDay" in quota for quota in _quotas(details)):
        code = DAILY_QUOTA
    return code, message


def _quotas(details: list[dict[str, Any]]) -> list[str]:
    """The `quotaId`s of the error's QuotaFailure violations."""
    return [as_str(v.get("quotaId")) or "" for d in details if d.get("@type") == QUOTA_FAILURE
            for v in d.get("violations") or [] if isinstance(v, dict)]


ENVELOPE = Envelope(parse=_error)


def inline_image(ref: str) -> dict[str, str]:
    """`{"bytesBase64Encoded", "mimeType"}` of a data URI. The adapter fetches nothing: an
    http(s) or s3:// image is inlined by the worker first (`ModelSpec.image_urls` False), so
    one reaching here was not, and is refused without a request."""
    if not ref.lstrip().lower().startswith("data:"):
        raise PermanentProviderError(
            "veo", "IMAGE_NOT_INLINE", "the Gemini API takes images inline only; give a data "
            "URI (genbatch's worker fetches a row's image URL and inlines it before the submit)")
    head, _, data = ref.partition(",")
    mime = head.strip()[5:].split(";")[0] or "image/png"
    return {"bytesBase64Encoded": data.strip(), "mimeType": mime}


def body(spec: ModelSpec, request: GenerationRequest, image: ImageReader) -> dict[str, Any]:
    """The predictLongRunning body: one instance, its parameters."""
    instance: dict[str, Any] = {"image": image(request.image)}
    if request.prompt:
        instance["prompt"] = request.prompt
    if request.last_image is not None:
        instance["lastFrame"] = image(request.last_image)
    parameters: dict[str, Any] = {
        "durationSeconds": request.duration or spec.default_duration,
        "resolution": request.resolution or spec.default_resolution,
        "personGeneration": PERSON_GENERATION,
    }
    if request.ratio is not None:
        parameters["aspectRatio"] = request.ratio
    if request.seed is not None:
        parameters["seed"] = request.seed
    return {"instances": [instance], "parameters": parameters}


def parse_operation(operation: dict[str, Any]) -> PollResult:
    """An operation as a PollResult: running until `done`, then its video or its error."""
    if operation.get("done") is not True:
        return PollResult(status=TaskStatus.RUNNING, raw_status="running")
    error = operation.get("error")
    if isinstance(error, dict):
        code = as_str(error.get("status")) or as_str(error.get("code")) or "error"
        return PollResult(status=TaskStatus.FAILED, raw_status="error", error_code=code,
                          error_message=as_str(error.get("message")) or "operation failed")
    result = as_dict(as_dict(operation.get("response")).get("generateVideoResponse"))
    uri = as_str(as_dict(as_dict(first(result.get("generatedSamples"))).get("video")).get("uri"))
    if uri is None:
        reasons = result.get("raiMediaFilteredReasons") or []
        why = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""
        return PollResult(status=TaskStatus.FAILED, raw_status="done", error_code="filtered",
                          error_message=why or "the operation finished without a video")
    return PollResult(status=TaskStatus.SUCCEEDED, raw_status="done", progress=100.0,
                      video_url=uri, video_ttl_s=VIDEO_TTL_S)
