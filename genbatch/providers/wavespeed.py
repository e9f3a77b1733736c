"""WaveSpeed (docs/wire/wavespeed.md, §4).

Submit `POST {base}/api/v3/{model path}` with a flat body → `{"code": 200, "message",
"data": {"id", "status": "created", …}}`. Poll `GET {base}/api/v3/predictions/{id}/result`
→ the same envelope; task failures also come back as HTTP 200 with `data.status: "failed"`.
A 200 whose top-level `code` is not 200 is an error (see `http.WAVESPEED_ENVELOPE`).
Images: the submit takes URLs only, so a local file or data URI is first sent to the
documented upload (`upload`, §9) and its `data.download_url` is submitted instead.
Webhook: `?webhook=<url>` on the submit URL; the callback POSTs the bare `data` object for
`completed` and `failed` (WS-HOOK), read by `parse_callback`.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, urlencode

from genbatch.errors import PermanentProviderError, RetryableProviderError
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers import listing, pricing, signing
from genbatch.providers.adapter import (
    Adapter,
    as_dict,
    as_str,
    first,
    flat_body,
    wire_resolution,
)
from genbatch.providers.base import ModelSpec, RemoteTask, TaskListing
from genbatch.providers.http import WAVESPEED_ENVELOPE
from genbatch.providers.novita import RATIOS_V1
from genbatch.providers.plugin import Callbacks, Capability, Limits, Outputs, ProviderPlugin

# Predictions and their outputs are deleted after 7 days (WS-PRED); so are uploads (§9).
RETENTION_S = 7 * 24 * 3600
# `POST /api/v3/media/upload/binary` (§9): images up to 20 MB, answer `data.download_url`.
UPLOAD_PATH = "/api/v3/media/upload/binary"
PREDICTIONS_PATH = "/api/v3/predictions"  # POST: the account's prediction history (§9)
UPLOAD_MAX_BYTES = 20 * 1024 * 1024

# §4.2 (SEED-WS15): `aspect_ratio` without adaptive, 480p/720p (WS-SKILL's 1080p conflicts),
# seed up to 2^31-1; no fps, watermark, service_tier or execution_expires_after.
SEEDANCE_V15_PRO = ModelSpec(
    name="seedance-v1.5-pro-i2v",
    wire_model="bytedance/seedance-v1.5-pro/image-to-video",
    ratio_field="aspect_ratio",
    ratios=RATIOS_V1,
    resolutions=frozenset({"480p", "720p"}),
    durations=frozenset(range(4, 13)),
    seed_max=2147483647,
    prompt_required=True,
    supports_audio=True,
    accepts_data_uri=False,
    upload_max_bytes=UPLOAD_MAX_BYTES,
    default_resolution="720p",
    typical_seconds=60.0,
)
# §4.5 (WS-V1): one endpoint per resolution, so the resolution goes in the path, not the
# body; unset means 720p. Allowed durations are not stated: 5|10 as on Novita (a 3P client
# clamps to 5-10). The seed bound is assumed to be the 1.5 pro one.
SEEDANCE_V1_PRO = ModelSpec(
    name="seedance-v1-pro-i2v",
    wire_model="bytedance/seedance-v1-pro-i2v-{resolution}",
    ratio_field="aspect_ratio",
    ratios=RATIOS_V1,
    resolutions=frozenset({"480p", "720p", "1080p"}),
    durations=frozenset({5, 10}),
    seed_max=2147483647,
    prompt_required=False,
    resolution_required=True,
    accepts_data_uri=False,
    upload_max_bytes=UPLOAD_MAX_BYTES,
    default_resolution="720p",
    typical_seconds=60.0,
)
SEEDANCE_V1_LITE = replace(
    SEEDANCE_V1_PRO,
    name="seedance-v1-lite-i2v",
    wire_model="bytedance/seedance-v1-lite-i2v-{resolution}",
    typical_seconds=45.0,
)

MODELS = MappingProxyType(
    {s.name: s for s in (SEEDANCE_V15_PRO, SEEDANCE_V1_PRO, SEEDANCE_V1_LITE)}
)

# `cancelled` and `timeout` per WS-CLI's server enum; `deleted` per SDK-WS.
_STATUSES = {
    "created": TaskStatus.QUEUED,
    "processing": TaskStatus.RUNNING,
    "completed": TaskStatus.SUCCEEDED,
    "failed": TaskStatus.FAILED,
    "cancelled": TaskStatus.CANCELLED,
    "timeout": TaskStatus.EXPIRED,
    "deleted": TaskStatus.FAILED,
}


class WaveSpeedProvider(Adapter):
    """WaveSpeed: Seedance 1.5 pro and the V1 pro / lite per-resolution endpoints."""

    name = "wavespeed"
    specs = MODELS
    envelope = WAVESPEED_ENVELOPE

    def build_body(self, model: str, request: GenerationRequest) -> dict[str, Any]:
        return self._body(*self.checked(model, request))

    def submit(
        self, model: str, request: GenerationRequest, *, webhook_url: str | None = None
    ) -> str:
        spec, request = self.submittable(model, request)
        for ref in (request.image, request.last_image):
            if ref is not None and not ref.startswith(("http://", "https://")):
                raise PermanentProviderError(
                    self.name, "REQUEST_INVALID", "not sent: WaveSpeed takes image URLs only; "
                    "upload the image first (the worker does: genbatch/worker/uploads.py)")
        resolution = wire_resolution(spec, request) or ""
        path = "/api/v3/" + spec.wire_model.format(resolution=resolution)
        if webhook_url:  # WS-HOOK: on the submit URL, not in the body
            path += "?" + urlencode({"webhook": webhook_url})
        return self.api.submit(
            path,
            self._body(spec, request),
            task_id=lambda answer: as_dict(answer.get("data")).get("id"),
        )

    def upload(self, data: bytes, filename: str, content_type: str) -> str:
        """Host one image at WaveSpeed; its URL. Costs nothing, so every failure but a
        refusal (PermanentProviderError, e.g. not an image or over 20 MB) is retryable."""
        answer = self.api.upload(UPLOAD_PATH, filename=filename, data=data,
                                 content_type=content_type)
        url = as_str(as_dict(answer.get("data")).get("download_url"))
        if url is None or not url.startswith(("http://", "https://")):
            raise RetryableProviderError(self.name, "MALFORMED_RESPONSE",
                                         "the upload answered without data.download_url")
        return url

    def list_tasks(self, model: str, request: GenerationRequest, since: float) -> TaskListing:
        """`POST /api/v3/predictions {page, page_size, model}` (§9), newest first."""
        spec, request = self.checked(model, request)
        wire = spec.wire_model.format(resolution=wire_resolution(spec, request) or "")

        def fetch(page: int) -> list[RemoteTask]:
            answer = self.api.read_post(PREDICTIONS_PATH, {
                "page": page, "page_size": listing.PAGE_SIZE, "model": wire})
            items = as_dict(answer.get("data")).get("items")
            return [RemoteTask(str(t.get("id")), str(t.get("model") or ""),
                               listing.timestamp(t.get("created_at")), str(t.get("status")))
                    for t in (items if isinstance(items, list) else []) if isinstance(t, dict)]

        return listing.walk(fetch, since, wire)

    def poll(self, model: str, remote_id: str) -> PollResult:
        answer = self.api.get(f"/api/v3/predictions/{quote(remote_id, safe='')}/result")
        return parse_prediction(as_dict(answer.get("data")))

    @staticmethod
    def _body(spec: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
        body = flat_body(spec, request)
        if "{resolution}" in spec.wire_model:
            body.pop("resolution", None)
        return body


def parse_prediction(data: dict[str, Any]) -> PollResult:
    """A prediction's `data` object as a PollResult; `error` may be a string or an object."""
    raw = as_str(data.get("status")) or ""
    status = _STATUSES.get(raw.lower(), TaskStatus.UNKNOWN)
    outputs = data.get("outputs")
    video_url = as_str(outputs) if isinstance(outputs, str) else as_str(first(outputs))
    code, message = _failure(data, raw)
    failed = status is TaskStatus.FAILED
    return PollResult(
        status=status,
        raw_status=raw,
        progress=100.0 if status is TaskStatus.SUCCEEDED else None,
        video_url=video_url,
        video_ttl_s=RETENTION_S if video_url else None,
        error_code=code if failed or status is TaskStatus.EXPIRED else None,
        error_message=message if failed or status is TaskStatus.EXPIRED else None,
        run_s=_run_seconds(data) if status is TaskStatus.SUCCEEDED else None,
    )


def _run_seconds(data: dict[str, Any]) -> float | None:
    """`timings.inference` (ms): how long the generation ran, without the time it queued
    (WaveSpeed queues tasks over the account's concurrency); None when absent or 0."""
    inference = as_dict(data.get("timings")).get("inference")
    if isinstance(inference, bool) or not isinstance(inference, int | float) or inference <= 0:
        return None
    return float(inference) / 1000.0


def _failure(data: dict[str, Any], raw: str) -> tuple[str, str]:
    error = data.get("error")
    if isinstance(error, dict):
        code = as_str(error.get("code")) or as_str(data.get("code"))
        message = as_str(error.get("message")) or ""
    else:
        code, message = as_str(data.get("code")), as_str(error) or ""
    if code == "0":  # WS-ERR: 0 means no error
        code = None
    return code or raw or "failed", message or f"task {raw or 'failed'}"


def parse_callback(body: dict[str, Any]) -> tuple[str | None, PollResult]:
    """A webhook callback (the bare prediction `data` object, or a full envelope around
    one) as (task id, PollResult)."""
    data = as_dict(body.get("data")) if "id" not in body and "data" in body else body
    return as_str(data.get("id")), parse_prediction(data)


# WaveSpeed account levels (docs/wire/wavespeed.md §4.4): concurrency and videos per minute.
TIERS: dict[str, tuple[int, float]] = {
    "bronze": (2, 2.0), "silver": (300, 500.0), "gold": (3000, 3000.0),
    "ultra": (10000, 5000.0),
}
PLUGIN = ProviderPlugin(
    name="wavespeed",
    summary="WaveSpeed AI: Seedance 1.5 pro and the V1 pro / lite per-resolution endpoints",
    adapter=WaveSpeedProvider,
    models=MODELS,
    # Bronze, the level of a new account; over its concurrency tasks wait in its queue.
    limits=Limits(base_url="https://api.wavespeed.ai", max_in_flight=2, submit_rpm=2,
                  poll_rpm=120, queues=True, tiers=TIERS),
    outputs=Outputs(video_hosts=("*.wavespeed.ai",), url_ttl_s=float(RETENTION_S)),
    prices=pricing.WAVESPEED,
    callbacks=Callbacks(parse=parse_callback, verify=signing.verify,
                        secret_setting="webhook_secret"),  # noqa: S106 - a setting's name
    capabilities=frozenset({Capability.CALLBACKS, Capability.SIGNED_CALLBACKS,
                            Capability.UPLOAD, Capability.LIST}),
    settings={"webhook_secret": "WaveSpeed's webhook signing secret (GET /api/v3/webhook/"
              "secret; with or without whsec_): when set, the receiver also verifies each "
              "callback's webhook-signature, its age (5 min) and that its webhook-id is new"},
)
