"""Kling's wire format: the per-request JWT, the image2video body, the task object, errors.

Sources (read 2026-12; the official pages are app.klingai.com/global/dev/document-api, read
through the mirror docs/shared/video-apis.md §1.2 names, and the Kling "API Specification"
at docs.qingque.cn):

- Auth ("General Information"): every request carries `Authorization: Bearer <JWT>`, an
  HS256 JWT signed with the account's secret key, claims `iss` = access key, `exp` = now +
  1800 s, `nbf` = now - 5 s. We sign a fresh token per request (cheap), so an expired token
  is never sent.
- Envelope: `{"code": 0, "message", "request_id", "data": {...}}`; errors carry the HTTP
  status of Kling's table and a numeric `code`: 1000-1004 authentication (401), 1100-1102
  account (429: 1101 arrears, 1102 resource pack used up or expired), 1103 no permission
  (403), 1200-1203 bad request (400/404), 1300-1304 policy (1301 content, 1302 rate, 1303
  concurrency over the resource pack: "slot full", 1304 IP allow-list), 5000-5002 server.
- Task: `task_status` submitted | processing | succeed | failed, `task_status_msg`,
  `task_info.external_task_id`, `task_result.videos[{id, url, duration}]`, ms timestamps.
  Videos are kept 30 days (spec changelog 2024-10-25).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from genbatch.config import ProviderSettings
from genbatch.errors import ConfigError
from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers.adapter import as_dict, as_float, as_str, first
from genbatch.providers.base import ModelSpec
from genbatch.providers.http import Envelope

TOKEN_TTL_S = 1800  # Kling's example: exp = now + 30 min
NOT_BEFORE_SKEW_S = 5  # and nbf = now - 5 s
VIDEO_TTL_S = 30 * 24 * 3600
SECRET_SETTING = "secret_key"  # noqa: S105 - the setting's name, not a secret

STATUSES = {
    "submitted": TaskStatus.QUEUED,
    "processing": TaskStatus.RUNNING,
    "succeed": TaskStatus.SUCCEEDED,
    "failed": TaskStatus.FAILED,
}
SLOT_FULL = frozenset({"1303"})
# Query Task (List): `GET /v1/videos/image2video?pageNum=1&pageSize=N`, N in [1, 500] ("pageNum
# [1, 1000], pageSize [1, 500], default 30"); `data` is a list of task objects.
LIST_PAGE_MAX = 500
AUTH_CODES = frozenset({"1000", "1001", "1002", "1003", "1004", "1103"})
BALANCE_CODES = frozenset({"1100", "1101", "1102"})
MODES = {"720p": "std", "1080p": "pro"}  # our resolution -> Kling's mode


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def encode_jwt(access_key: str, secret_key: str, now: float | None = None) -> str:
    """The HS256 token Kling asks for: iss = access key, exp = now + 30 min, nbf = now - 5 s."""
    issued = int(time.time() if now is None else now)
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"iss": access_key, "exp": issued + TOKEN_TTL_S, "nbf": issued - NOT_BEFORE_SKEW_S}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))
    signature = hmac.new(secret_key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def jwt_auth(settings: ProviderSettings) -> dict[str, str]:
    """`Authorization: Bearer <JWT>` for the account (access key + secret key)."""
    access = settings.require_key().get_secret_value()
    secret = settings.option(SECRET_SETTING)
    if not secret:
        raise ConfigError(f"no secret key for Kling account {settings.label!r} here: set "
                          "GENBATCH_KLING_SECRET_KEY (Kling signs each request with it)")
    return {"Authorization": f"Bearer {encode_jwt(access, secret)}"}


def _error(body: Any) -> tuple[str, str] | None:
    """`{"code": 1303, "message": "…", "request_id": "…"}`."""
    if isinstance(body, dict) and ("code" in body or "message" in body):
        code = as_str(body.get("code")) or ""
        return ("" if code == "0" else code), as_str(body.get("message")) or ""
    return None


def _in_band(body: Any) -> int | None:
    """A 2xx whose `code` is not 0 is an error; classified by Kling's own table."""
    code = as_str(body.get("code")) if isinstance(body, dict) else None
    if code in (None, "0"):
        return None
    number = int(code) if code.isdigit() else 0
    if 1000 <= number < 1100:
        return 401
    if 1100 <= number < 1200 or number in (1302, 1303):
        return 429
    if 1200 <= number < 1400:
        return 400
    return 500


ENVELOPE = Envelope(parse=_error, in_band_status=_in_band, slot_full=SLOT_FULL)


def image_value(ref: str) -> str:
    """Kling takes an image URL or raw Base64 (its docs: no `data:` prefix)."""
    if ref.lstrip().lower().startswith("data:"):
        return ref.partition(",")[2].strip()
    return ref


def body(spec: ModelSpec, request: GenerationRequest, *, client_ref: str | None,
         callback_url: str | None) -> dict[str, Any]:
    """The `POST /v1/videos/image2video` body."""
    out: dict[str, Any] = {"model_name": spec.wire_model, "image": image_value(request.image)}
    if request.last_image is not None:
        out["image_tail"] = image_value(request.last_image)
    if request.prompt:
        out["prompt"] = request.prompt
    out["mode"] = MODES[request.resolution or spec.default_resolution or "720p"]
    out["duration"] = str(request.duration or spec.default_duration)  # Kling: a string
    if client_ref:
        out["external_task_id"] = client_ref
    if callback_url:
        out["callback_url"] = callback_url
    return out


def parse_task(task: dict[str, Any]) -> PollResult:
    """A Kling task object (a query's `data`, or a callback body) as a PollResult."""
    raw = as_str(task.get("task_status")) or ""
    status = STATUSES.get(raw.lower(), TaskStatus.UNKNOWN)
    video = as_dict(first(as_dict(task.get("task_result")).get("videos")))
    url = as_str(video.get("url")) if status is TaskStatus.SUCCEEDED else None
    failed = status is TaskStatus.FAILED
    message = as_str(task.get("task_status_msg"))
    return PollResult(
        status=status, raw_status=raw,
        progress=100.0 if status is TaskStatus.SUCCEEDED else None,
        video_url=url, video_ttl_s=VIDEO_TTL_S if url else None,
        error_code="failed" if failed else None,
        error_message=(message or "task failed") if failed else None,
        usage_seconds=as_float(video.get("duration")) if url else None,
    )


def parse_callback(payload: dict[str, Any]) -> tuple[str | None, PollResult] | None:
    """A `callback_url` delivery: Kling POSTs the task object itself ("Callback Schema":
    task_id, task_status, task_status_msg, task_info, created_at, updated_at, task_result),
    unsigned. Some relays wrap it in `data`; both are read."""
    task = payload if "task_status" in payload else as_dict(payload.get("data"))
    if "task_status" not in task:
        return None
    return as_str(task.get("task_id")), parse_task(task)
