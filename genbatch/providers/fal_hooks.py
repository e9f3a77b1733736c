"""fal's webhooks: the body, and its ED25519 signature checked against fal's JWKS.

Source: https://docs.fal.ai/model-apis/model-endpoints/webhooks ("Verifying your webhook";
the same steps in fal's Python and JavaScript examples there, and in third-party receivers):

    X-Fal-Webhook-Request-Id, X-Fal-Webhook-User-Id, X-Fal-Webhook-Timestamp (Unix s),
    X-Fal-Webhook-Signature (hex ED25519 signature) over
    "{request id}\\n{user id}\\n{timestamp}\\n{hex sha256 of the raw body}"

verified against any key of the public JWKS (`keys[].x`, base64url raw ED25519 keys) at
`https://rest.fal.ai/.well-known/jwks.json` (older copies of the page name
`rest.alpha.fal.ai`; both served the same set when last looked at), cached at most 24 h as
the page asks, and a timestamp at most ±5 min away. The JWKS address is the setting
GENBATCH_FAL_JWKS_URL (the simulator publishes its own key set: tests point it there).
fal signs every delivery, so every delivery is verified (`verify_unset`).

Body: `{request_id, gateway_request_id, status: "OK" | "ERROR", payload, error,
payload_error}`; retried 10 times over 2 hours.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from genbatch.errors import BadSignature
from genbatch.models import PollResult, TaskStatus
from genbatch.providers.adapter import as_dict, as_str

JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
MAX_AGE_S = 300
CACHE_S = 24 * 3600  # "cache the keys for no more than 24 hours"
REFRESH_MIN_S = 60.0  # a signature no cached key verifies fetches the set again, at most this often
FETCH_TIMEOUT_S = 10.0
URL_TTL_S = 7 * 24 * 3600  # assumed (see fal.py: Outputs)


class _Keys:
    """The JWKS of each URL, fetched on first use and refreshed when stale or when a
    signature fails (fal rotates keys). Thread-safe: the receiver verifies in a pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sets: dict[str, tuple[float, list[Ed25519PublicKey]]] = {}

    def get(self, url: str, *, fresh: bool = False) -> list[Ed25519PublicKey]:
        now = time.monotonic()
        with self._lock:
            cached = self._sets.get(url)
        if cached is not None:
            age = now - cached[0]
            if age < CACHE_S and not (fresh and age >= REFRESH_MIN_S):
                return cached[1]
        keys = _fetch(url)
        with self._lock:
            self._sets[url] = (now, keys)
        return keys

    def clear(self) -> None:
        with self._lock:
            self._sets.clear()


KEYS = _Keys()


def _fetch(url: str) -> list[Ed25519PublicKey]:
    try:
        response = httpx.get(url, timeout=FETCH_TIMEOUT_S, follow_redirects=True)
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        # Not the sender's fault: refuse for now; fal retries the delivery.
        raise BadSignature(f"fal's key set could not be read from {url}: {exc}") from None
    keys: list[Ed25519PublicKey] = []
    for jwk in as_dict(body).get("keys") or []:
        x = as_str(as_dict(jwk).get("x"))
        if x is None:
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (ValueError, binascii.Error):
            continue
    if not keys:
        raise BadSignature(f"fal's key set at {url} holds no ED25519 key")
    return keys


def message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """What fal signs."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{request_id}\n{user_id}\n{timestamp}\n{digest}".encode()


def verify(jwks_url: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The delivery's id (request id and timestamp: fal sends no delivery id of its own)
    when its signature verifies under fal's keys and its timestamp is fresh; else
    BadSignature. `jwks_url`: GENBATCH_FAL_JWKS_URL, "" for fal's own."""
    request_id = headers.get("x-fal-webhook-request-id", "")
    user_id = headers.get("x-fal-webhook-user-id", "")
    timestamp = headers.get("x-fal-webhook-timestamp", "")
    signature = headers.get("x-fal-webhook-signature", "")
    if not (request_id and user_id and timestamp and signature):
        raise BadSignature("missing X-Fal-Webhook-Request-Id, -User-Id, -Timestamp or "
                           "-Signature")
    try:
        age = abs(now - int(timestamp))
        raw = bytes.fromhex(signature)
    except ValueError:
        raise BadSignature("X-Fal-Webhook-Timestamp or -Signature is malformed") from None
    if age > MAX_AGE_S:
        raise BadSignature(f"X-Fal-Webhook-Timestamp is {age:.0f} s away, over {MAX_AGE_S} s")
    signed = message(request_id, user_id, timestamp, body)
    url = jwks_url or JWKS_URL
    for fresh in (False, True):
        for key in KEYS.get(url, fresh=fresh):
            try:
                key.verify(raw, signed)
            except InvalidSignature:
                continue
            return f"{request_id}:{timestamp}"
    raise BadSignature("X-Fal-Webhook-Signature does not verify under fal's keys")


def parse_callback(body: dict[str, Any]) -> tuple[str | None, PollResult]:
    """A webhook body as (request id, result)."""
    request_id = as_str(body.get("request_id"))
    status = (as_str(body.get("status")) or "").upper()
    payload = as_dict(body.get("payload"))
    if status == "OK":
        url = video_url(payload)
        if url is not None:
            return request_id, PollResult(TaskStatus.SUCCEEDED, raw_status="OK",
                                          progress=100.0, video_url=url,
                                          video_ttl_s=URL_TTL_S, seed=_seed(payload))
        detail = as_str(body.get("payload_error")) or "the webhook's payload has no video"
        # The result is still at the queue's response URL: only a poll can tell.
        return request_id, PollResult(TaskStatus.UNKNOWN, raw_status="OK",
                                      error_message=detail)
    code, text = error_detail(payload)
    message_ = as_str(body.get("error")) or text or f"fal answered {status or 'nothing'}"
    return request_id, PollResult(TaskStatus.FAILED, raw_status=status or "ERROR",
                                  error_code=code, error_message=message_)


def video_url(result: Mapping[str, Any]) -> str | None:
    """The video of a model's result: `{"video": {"url": …}}`."""
    url = as_str(as_dict(result.get("video")).get("url"))
    return url if url and url.startswith(("http://", "https://")) else None


def _seed(result: Mapping[str, Any]) -> int | None:
    seed = result.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def error_detail(body: Any) -> tuple[str, str]:
    """fal's error bodies: `{"detail": "text"}` or FastAPI's `{"detail": [{"loc", "msg",
    "type"}]}`, sometimes with `error_type`; (code, message)."""
    data = as_dict(body)
    detail = data.get("detail")
    code = as_str(data.get("error_type")) or ""
    if isinstance(detail, list):
        parts = []
        for entry in detail:
            item = as_dict(entry)
            where = ".".join(str(p) for p in item.get("loc") or [] if p != "body")
            parts.append(f"{where}: {as_str(item.get('msg')) or ''}".strip(": "))
            code = code or as_str(item.get("type")) or ""
        return code, "; ".join(p for p in parts if p)
    return code, as_str(detail) or as_str(data.get("error")) or ""
