"""BytePlus ModelArk, the upstream Seedance API (docs/wire/byteplus.md, §5).

Submit `POST {base}/api/v3/contents/generations/tasks` with `{"model": <id>, "content": [text,
first_frame, last_frame?], <top-level parameters>}` → `{"id": "cgt-…"}`.
Poll `GET …/tasks/{id}` → `{status, content: {video_url}, usage: {completion_tokens},
error: {code, message}, seed, …}`. Cancel `DELETE …/tasks/{id}` works on queued tasks only.
Webhook: `callback_url` in the create body; the delivery is read as the task object.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import httpx

from genbatch.config import ProviderSettings
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers import listing, pricing
from genbatch.providers.adapter import Adapter, as_dict, as_int, as_str, flat_body
from genbatch.providers.base import ModelSpec, RemoteTask, TaskListing
from genbatch.providers.http import BYTEPLUS_ENVELOPE
from genbatch.providers.novita import RATIOS_V15
from genbatch.providers.plugin import Callbacks, Capability, Limits, Outputs, ProviderPlugin

API_PREFIX = "/api/v3"
# Conflicting sources give 24 h or 14 days (§5.3, §8 q12); we report the shorter.
VIDEO_URL_TTL_S = 24 * 3600

RESOLUTIONS = frozenset({"480p", "720p", "1080p"})

SEEDANCE_V15_PRO = ModelSpec(
    name="seedance-v1.5-pro-i2v",
    wire_model="seedance-1-5-pro-251215",
    ratio_field="ratio",
    ratios=RATIOS_V15,
    resolutions=RESOLUTIONS,
    durations=frozenset(range(4, 13)),
    seed_max=4294967295,
    prompt_required=True,
    supports_audio=True,  # generate_audio: 1.5 pro only
    supports_watermark=True,
    supports_service_tier=True,
    supports_expires_after=True,
    default_resolution="720p",
    typical_seconds=60.0,
)
# 1.0 models: duration 2-12 (3P-ACE). Their default resolution is not in docs/wire/, so
# estimates assume 1080p and err high; the field is still left out when unset.
SEEDANCE_V1_PRO = ModelSpec(
    name="seedance-v1-pro-i2v",
    wire_model="seedance-1-0-pro-250528",
    ratio_field="ratio",
    ratios=RATIOS_V15,
    resolutions=RESOLUTIONS,
    durations=frozenset(range(2, 13)),
    seed_max=4294967295,
    prompt_required=False,
    supports_watermark=True,
    supports_service_tier=True,
    supports_expires_after=True,
    default_resolution="1080p",
    typical_seconds=60.0,
)
SEEDANCE_V1_LITE = replace(
    SEEDANCE_V1_PRO,
    name="seedance-v1-lite-i2v",
    wire_model="seedance-1-0-lite-i2v-250428",
    typical_seconds=45.0,
)

MODELS = MappingProxyType(
    {s.name: s for s in (SEEDANCE_V15_PRO, SEEDANCE_V1_PRO, SEEDANCE_V1_LITE)}
)

_STATUSES = {
    "queued": TaskStatus.QUEUED,
    "running": TaskStatus.RUNNING,
    "succeeded": TaskStatus.SUCCEEDED,
    "failed": TaskStatus.FAILED,
    "cancelled": TaskStatus.CANCELLED,
    "expired": TaskStatus.EXPIRED,
}


class BytePlusProvider(Adapter):
    """BytePlus ModelArk: Seedance 1.5 pro, 1.0 pro and 1.0 lite image-to-video."""

    name = "byteplus"
    specs = MODELS
    envelope = BYTEPLUS_ENVELOPE

    def __init__(
        self,
        settings: ProviderSettings,
        client: httpx.Client,
        *,
        submit_timeout_s: float | None = None,
    ) -> None:
        super().__init__(settings, client, submit_timeout_s=submit_timeout_s)
        # docs/wire/byteplus.md writes the base URL with /api/v3, our setting without: accept both.
        self._tasks = "/contents/generations/tasks"
        if not settings.base_url.rstrip("/").endswith(API_PREFIX):
            self._tasks = API_PREFIX + self._tasks

    def build_body(self, model: str, request: GenerationRequest) -> dict[str, Any]:
        return content_body(*self.checked(model, request))

    def submit(
        self, model: str, request: GenerationRequest, *, webhook_url: str | None = None
    ) -> str:
        body = content_body(*self.submittable(model, request))
        if webhook_url:  # ModelArk posts the task object on status changes (§9)
            body["callback_url"] = webhook_url
        return self.api.submit(self._tasks, body, task_id=lambda answer: answer.get("id"))

    def poll(self, model: str, remote_id: str) -> PollResult:
        return parse_task(self.api.get(self._task_path(remote_id)))

    def cancel(self, model: str, remote_id: str) -> bool:
        """Cancel a queued task. True once it is cancelled, False when it is past queued.

        DELETE on a finished task deletes its record (and with it the video URL), so the
        task is read first and only a queued one is deleted.
        """
        status = self.poll(model, remote_id).status
        if status is TaskStatus.CANCELLED:
            return True
        if status is not TaskStatus.QUEUED:
            return False
        return self.api.delete(self._task_path(remote_id))

    def list_tasks(self, model: str, request: GenerationRequest, since: float) -> TaskListing:
        """`GET …/tasks?page_num&page_size&filter.model` (§9), newest first."""
        wire = self.checked(model, request)[0].wire_model

        def fetch(page: int) -> list[RemoteTask]:
            answer = self.api.get(self._tasks, params={
                "page_num": str(page), "page_size": str(listing.PAGE_SIZE),
                "filter.model": wire})
            items = answer.get("items")
            return [RemoteTask(str(t.get("id")), str(t.get("model") or ""),
                               listing.timestamp(t.get("created_at")), str(t.get("status")),
                               as_int(t.get("seed")))
                    for t in (items if isinstance(items, list) else []) if isinstance(t, dict)]

        return listing.walk(fetch, since, wire)

    def _task_path(self, remote_id: str) -> str:
        return f"{self._tasks}/{quote(remote_id, safe='')}"


def content_body(spec: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
    """The Ark body: prompt and frames as `content` items, everything else top level."""
    content: list[dict[str, Any]] = []
    if request.prompt:
        content.append({"type": "text", "text": request.prompt})
    content.append(_frame(request.image, "first_frame"))
    if request.last_image is not None:
        content.append(_frame(request.last_image, "last_frame"))
    params = flat_body(spec, request)
    for key in ("prompt", "image", "last_image"):
        params.pop(key, None)
    if request.return_last_frame:  # a chain's parent: its child starts on that frame
        params["return_last_frame"] = True
    return {"model": spec.wire_model, "content": content, **params}


def _frame(url: str, role: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}, "role": role}


def parse_callback(body: dict[str, Any]) -> tuple[str | None, PollResult]:
    """A `callback_url` delivery as (task id, PollResult). No official payload is published
    (§9): it is read as the task object GET returns, or one under `data`, `payload`, `task`
    or `result`."""
    if "status" not in body:
        for wrapper in ("data", "payload", "task", "result"):
            inner = body.get(wrapper)
            if isinstance(inner, dict) and "status" in inner:
                body = inner
                break
    return as_str(body.get("id")), parse_task(body)


def parse_task(body: dict[str, Any]) -> PollResult:
    """A task body as a PollResult; `error` may be an object, a string or null."""
    raw = as_str(body.get("status")) or ""
    status = _STATUSES.get(raw.lower(), TaskStatus.UNKNOWN)
    content = as_dict(body.get("content"))
    video_url = as_str(content.get("video_url"))
    error = body.get("error")
    code, message = (
        (as_str(error.get("code")), as_str(error.get("message")))
        if isinstance(error, dict)
        else (None, as_str(error))
    )
    unsuccessful = status in (TaskStatus.FAILED, TaskStatus.EXPIRED)
    return PollResult(
        status=status,
        raw_status=raw,
        progress=100.0 if status is TaskStatus.SUCCEEDED else None,
        video_url=video_url,
        video_ttl_s=VIDEO_URL_TTL_S if video_url else None,
        error_code=(code or raw) if unsuccessful else code,
        error_message=(message or f"task {raw}") if unsuccessful else message,
        usage_tokens=as_int(as_dict(body.get("usage")).get("completion_tokens")),
        seed=as_int(body.get("seed")),
        last_frame_url=as_str(content.get("last_frame_url")),
    )


PLUGIN = ProviderPlugin(
    name="byteplus",
    summary="BytePlus ModelArk, the upstream Seedance API: 1.5 pro, 1.0 pro and 1.0 lite",
    adapter=BytePlusProvider,
    models=MODELS,
    # Over its concurrency a task waits `queued` at ModelArk.
    limits=Limits(base_url="https://ark.ap-southeast.bytepluses.com", max_in_flight=20,
                  submit_rpm=60, poll_rpm=600, queues=True),
    outputs=Outputs(video_hosts=("*.bytepluses.com", "*.byteplus.com", "*.volces.com"),
                    url_ttl_s=float(VIDEO_URL_TTL_S)),
    prices=pricing.SEEDANCE_TOKENS,
    callbacks=Callbacks(parse=parse_callback),
    capabilities=frozenset({Capability.CALLBACKS, Capability.CANCEL, Capability.LIST,
                            Capability.LAST_FRAME}),
    lists_seeds=True,
)
