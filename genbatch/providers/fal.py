"""fal's queue API (https://docs.fal.ai/model-endpoints/queue; video-apis.md §1.1).

    submit  POST {base}/{model id}[?fal_webhook=<url>]   -> {request_id, status_url,
                                                             response_url, cancel_url, …}
    status  GET  {base}/{owner}/{app}/requests/{id}/status -> {status: IN_QUEUE (202, with
            queue_position) | IN_PROGRESS (202) | COMPLETED (200, `error`/`error_type` when
            the request failed, `metrics.inference_time`)}
    result  GET  {base}/{owner}/{app}/requests/{id}       -> the model's output
            (`{"video": {"url"}}`), or the error it ended with (e.g. 422 `{"detail": […]}`)
    cancel  PUT  {base}/{owner}/{app}/requests/{id}/cancel -> 202 CANCELLATION_REQUESTED, or
            400 ALREADY_COMPLETED (only a request still in the queue can be cancelled)

Status and result URLs use the app id (`fal-ai/kling-video`) without the model's sub-path,
as fal's own clients build them; the submit answer's URLs say the same. Auth:
`Authorization: Key <key>`. Limits: one concurrency limit per account that counts running
requests only; "requests are never rejected due to concurrency limits" (they wait IN_QUEUE),
and no requests-per-minute limit is published, so `queues=True` and a generous submit rate.
Options as headers: a row's `service_tier: flex` is `X-Fal-Queue-Priority: low` ("use low
for background work"; no discount); `execution_expires_after` is
`X-Fal-Request-Timeout` (fal's "common parameters" page and its Python client's
`start_timeout`: a time-to-start deadline, queue wait included; past it fal answers 504 with
`X-Fal-Request-Timeout-Type: user`, read here as `expired`). Conflict: the research notes
(video-apis.md §1.1) name it `X-Fal-Request-Start-Timeout`; fal's own page and client say
`X-Fal-Request-Timeout`, which is what is sent.
Images: URLs as given. A local image (or a data URI) is uploaded to fal's storage first, as
fal's own clients do (`fal_client.upload_file`, `fal.storage.upload`; the JS client's
`transformInput` turns a data URI into an upload too, although endpoints take data URIs):

    POST {rest}/storage/upload/initiate?storage_type=fal-cdn-v3   Authorization: Key <key>
         {"content_type", "file_name"}  -> {"upload_url", "file_url"}
    PUT  {upload_url}  the bytes, Content-Type                 (a signed URL: no key sent)

and `file_url` (fal's CDN) is submitted (Capability.UPLOAD; the worker uploads each content
once per account, worker/uploads.py). Source: fal-ai/fal-js `libs/client/src/storage.ts`
(read 2026-12: REST host `https://rest.fal.ai`, the same flow under 90 MB, multipart above);
fal's Python client now asks a CDN token (`/storage/auth/token`) and POSTs to
`v3.fal.media/files/upload` instead: both end in a CDN URL. The initiate call asks for a
7-day lifetime (`X-Fal-Object-Lifecycle`), longer than genbatch remembers an upload.
{rest} is GENBATCH_FAL_REST_URL; unset, `https://rest.fal.ai` for fal's own queue and the
base URL itself for any other (the simulator serves both).
Reconciliation: fal has no request list and echoes nothing of ours but the webhook URL, so
an ambiguous submit stays ambiguous unless the webhook given to that attempt arrives
(DESIGN.md principles 9 and 10).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from genbatch.config import ProviderSettings
from genbatch.errors import PermanentProviderError, RetryableProviderError
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers import fal_hooks
from genbatch.providers.adapter import Adapter, as_dict, as_float, as_int, as_str
from genbatch.providers.base import ModelSpec
from genbatch.providers.fal_models import MODELS, PRICES
from genbatch.providers.http import Envelope, JsonApi
from genbatch.providers.plugin import (
    AccountCodes,
    Callbacks,
    Capability,
    Limits,
    Outputs,
    ProviderPlugin,
)

_STATUSES = {
    "IN_QUEUE": TaskStatus.QUEUED,
    "IN_PROGRESS": TaskStatus.RUNNING,
    "COMPLETED": TaskStatus.SUCCEEDED,  # unless it carries an error (see _completed)
}
# fal's error types (X-Fal-Error-Type) that end a request unrun or cancelled.
_EXPIRED_TYPES = frozenset({"request_timeout", "startup_timeout"})
_CANCELLED_TYPES = frozenset({"client_cancelled", "request_cancelled"})
BALANCE = "EXHAUSTED_BALANCE"  # 403 "User is locked. Reason: Exhausted balance …"
QUEUE_URL = "https://queue.fal.run"
REST_URL = "https://rest.fal.ai"
UPLOAD_PATH = "/storage/upload/initiate?storage_type=fal-cdn-v3"
UPLOAD_LIFETIME_S = 7 * 24 * 3600  # > worker/uploads.py KEEP_S


def key_auth(settings: ProviderSettings) -> dict[str, str]:
    """fal's scheme: `Authorization: Key <key>`."""
    return {"Authorization": f"Key {settings.require_key().get_secret_value()}"}


def _error(body: Any) -> tuple[str, str] | None:
    code, message = fal_hooks.error_detail(body)
    if not code and not message:
        return None
    if "exhausted balance" in message.lower():
        code = BALANCE
    return code, message


ENVELOPE = Envelope(parse=_error)


def app_path(spec: ModelSpec) -> str:
    """`owner/app` of a model id: where its requests live in the queue."""
    return "/".join(spec.wire_model.split("/")[:2])


class FalProvider(Adapter):
    """fal's queue: Kling 2.1 standard, Kling 2.5 turbo pro and Seedance 1.0 pro i2v."""

    name = "fal"
    specs = MODELS
    envelope = ENVELOPE
    auth = key_auth

    def __init__(self, settings: ProviderSettings, client: httpx.Client, *,
                 submit_timeout_s: float | None = None) -> None:
        super().__init__(settings, client, submit_timeout_s=submit_timeout_s)
        rest = replace(settings, base_url=rest_url(settings))
        self.rest = JsonApi(rest, client, ENVELOPE, auth=key_auth)

    def upload(self, data: bytes, filename: str, content_type: str) -> str:
        """Host one image on fal's CDN (module docstring); its `file_url`. Costs nothing:
        a refusal (4xx) is PermanentProviderError, anything else retryable."""
        lifecycle = json.dumps({"expiration_duration_seconds": UPLOAD_LIFETIME_S})
        answer = self.rest.read_post(UPLOAD_PATH, {"content_type": content_type,
                                                   "file_name": filename},
                                     headers={"X-Fal-Object-Lifecycle": lifecycle})
        upload_url, file_url = as_str(answer.get("upload_url")), as_str(answer.get("file_url"))
        if upload_url is None or file_url is None or not (
                _is_http(upload_url) and _is_http(file_url)):
            raise RetryableProviderError(self.name, "MALFORMED_RESPONSE", "the upload "
                                         "initiate answered without upload_url and file_url")
        try:
            put = self.api.client.put(upload_url, content=data,
                                      headers={"Content-Type": content_type})
        except httpx.HTTPError as exc:
            raise RetryableProviderError(self.name, "UPLOAD_FAILED",
                                         f"the upload PUT failed: {type(exc).__name__}") from None
        if put.is_success:
            return file_url
        status = put.status_code
        cls = PermanentProviderError if 400 <= status < 500 and status not in (408, 429) \
            else RetryableProviderError
        raise cls(self.name, "UPLOAD_FAILED", f"the upload PUT answered HTTP {status}", status)

    def build_body(self, model: str, request: GenerationRequest) -> dict[str, Any]:
        return body(*self.checked(model, request))

    def submit(
        self, model: str, request: GenerationRequest, *, webhook_url: str | None = None
    ) -> str:
        spec, request = self.submittable(model, request)
        path = "/" + spec.wire_model
        if webhook_url:
            path += "?" + urlencode({"fal_webhook": webhook_url})
        return self.api.submit(path, body(spec, request), headers=headers(request),
                               task_id=lambda answer: answer.get("request_id"))

    def poll(self, model: str, remote_id: str) -> PollResult:
        base = self._request_path(model, remote_id)
        status = self.api.get(base + "/status")
        raw = (as_str(status.get("status")) or "").upper()
        found = _STATUSES.get(raw, TaskStatus.UNKNOWN)
        if found is TaskStatus.QUEUED:
            return PollResult(found, raw_status=raw, progress=0.0)
        if found is not TaskStatus.SUCCEEDED:
            return PollResult(found, raw_status=raw)
        return self._completed(base, status)

    def cancel(self, model: str, remote_id: str) -> bool:
        """Only a request still IN_QUEUE can be cancelled (400 ALREADY_COMPLETED else)."""
        return self.api.delete(self._request_path(model, remote_id) + "/cancel", method="PUT")

    def _request_path(self, model: str, remote_id: str) -> str:
        return f"/{app_path(self.spec(model))}/requests/{quote(remote_id, safe='')}"

    def _completed(self, base: str, status: dict[str, Any]) -> PollResult:
        """A COMPLETED request: its error, or its result's video."""
        run_s = as_float(as_dict(status.get("metrics")).get("inference_time"))
        error_type = as_str(status.get("error_type")) or ""
        if status.get("error") or error_type:
            return _failed(error_type, as_str(status.get("error")) or "", "COMPLETED")
        try:
            result = self.api.get(base)
        except PermanentProviderError as exc:  # the request's own failure, e.g. a 422
            if exc.status_code in (401, 403):  # the key's, not the request's
                raise
            return _failed(exc.code, exc.message, "COMPLETED")
        url = fal_hooks.video_url(result)
        if url is None:
            return PollResult(TaskStatus.FAILED, raw_status="COMPLETED",
                              error_code="NO_VIDEO", error_message="the result has no video")
        seed = as_int(result.get("seed"))
        return PollResult(TaskStatus.SUCCEEDED, raw_status="COMPLETED", progress=100.0,
                          video_url=url, video_ttl_s=fal_hooks.URL_TTL_S, seed=seed,
                          run_s=run_s if run_s and run_s > 0 else None)


def rest_url(settings: ProviderSettings) -> str:
    """fal's REST host (uploads): GENBATCH_FAL_REST_URL, else fal's own for fal's queue and
    the base URL for any other (a proxy or the simulator serving both)."""
    configured = settings.option("rest_url")
    if configured:
        return configured.rstrip("/")
    return REST_URL if settings.base_url.rstrip("/") == QUEUE_URL else settings.base_url


def _is_http(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def _failed(code: str, message: str, raw: str) -> PollResult:
    status = (TaskStatus.EXPIRED if code in _EXPIRED_TYPES
              else TaskStatus.CANCELLED if code in _CANCELLED_TYPES else TaskStatus.FAILED)
    return PollResult(status, raw_status=raw, error_code=code or "failed",
                      error_message=message or "the request failed")


def body(spec: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
    """The model's input: fal's field names, durations as strings."""
    out: dict[str, Any] = {"prompt": request.prompt, "image_url": request.image}
    out["duration"] = str(request.duration or spec.default_duration)
    if request.last_image is not None:
        out[str(spec.extra["last_image_field"])] = request.last_image
    if request.ratio is not None:
        out[spec.ratio_field] = dict(spec.extra.get("ratio_wire", {})).get(request.ratio,
                                                                          request.ratio)
    if request.resolution is not None:
        out["resolution"] = request.resolution
    if request.seed is not None and request.seed != -1:
        out["seed"] = request.seed
    if request.camera_fixed is not None:
        out["camera_fixed"] = request.camera_fixed
    return out


def headers(request: GenerationRequest) -> dict[str, str]:
    """The row's options fal takes as headers (common-parameters page)."""
    out: dict[str, str] = {}
    if request.service_tier == "flex":
        out["X-Fal-Queue-Priority"] = "low"
    if request.execution_expires_after is not None:
        out["X-Fal-Request-Timeout"] = str(request.execution_expires_after)
    return out


PLUGIN = ProviderPlugin(
    name="fal",
    summary="fal.ai queue: Kling 2.1 standard, Kling 2.5 turbo pro, Seedance 1.0 pro (i2v)",
    adapter=FalProvider,
    models=MODELS,
    # fal's default concurrency is not published (it grows with credit purchases; the
    # dashboard shows it): 10 is a guess to set per account. No RPM is published.
    limits=Limits(base_url=QUEUE_URL, max_in_flight=10, submit_rpm=600,
                  poll_rpm=1200, queues=True),
    # Output lifetime is not published (X-Fal-Object-Lifecycle-Preference controls it):
    # 7 days assumed; the worker downloads long before.
    outputs=Outputs(video_hosts=("fal.media", "*.fal.media", "*.fal.ai", "*.fal.run"),
                    url_ttl_s=float(fal_hooks.URL_TTL_S)),
    prices=PRICES,
    callbacks=Callbacks(parse=fal_hooks.parse_callback, verify=fal_hooks.verify,
                        secret_setting="jwks_url", verify_unset=True),  # noqa: S106
    account_codes=AccountCodes(balance=frozenset({BALANCE})),
    capabilities=frozenset({Capability.CALLBACKS, Capability.SIGNED_CALLBACKS,
                            Capability.CANCEL, Capability.UPLOAD}),
    settings={"jwks_url": "where fal's webhook signing keys are published (default "
              f"{fal_hooks.JWKS_URL}); point it at the simulator's "
              "/fal/.well-known/jwks.json in tests",
              "rest_url": f"fal's REST API, where local images are uploaded (default {REST_URL}, "
              "or the base URL when that is not fal's queue)"},
)
