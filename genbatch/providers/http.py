"""The one place where httpx errors and HTTP answers become `genbatch.errors`.

Every adapter talks to its provider through a `JsonApi`. Submits (POST) and reads (GET,
DELETE) are classified differently, because a submit is the one call that costs money and
has no idempotency key (docs/wire/notes.md §7, docs/design.md principle 3):

    outcome                                     submit (POST)         read (GET / DELETE)
    connect error/timeout, pool timeout         Retryable (not sent)  Retryable
    read/write timeout, dropped connection      AmbiguousSubmit       Retryable
    429                                         RateLimited           RateLimited
    408, 5xx, other non-4xx                     AmbiguousSubmit       Retryable
    other 4xx, 3xx, bad base URL                Permanent             Permanent
    2xx but not a JSON object / no task id      AmbiguousSubmit       Retryable
    2xx with an in-band error code (WaveSpeed)  as if that status     as if that status

Error bodies are parsed with the provider's `Envelope` into `code` + `message`, falling back
to `HTTP_<status>` and a short excerpt of the body. The API key is scrubbed from every message.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from genbatch.config import ProviderSettings
from genbatch.errors import (
    AmbiguousSubmit,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RetryableProviderError,
    SlotFull,
)
from genbatch.version import __version__

ErrorParser = Callable[[Any], "tuple[str, str] | None"]
_EXCERPT_CHARS = 200
# Every request to a provider says who sends it (and nothing meant for the simulator).
USER_AGENT = f"genbatch/{__version__}"
# Raised before a single byte of the request reached the server: nothing can exist remotely.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


def _no_in_band_error(body: Mapping[str, Any]) -> int | None:
    return None


# The headers that authenticate one request of an account (default: `bearer`).
Auth = Callable[[ProviderSettings], Mapping[str, str]]


def bearer(settings: ProviderSettings) -> dict[str, str]:
    """`Authorization: Bearer <key>`; ConfigError when the account has no key here."""
    return {"Authorization": f"Bearer {settings.require_key().get_secret_value()}"}


@dataclass(frozen=True, slots=True)
class Envelope:
    """How one provider shapes its errors.

    `parse` turns a decoded error body into (code, message), or None when it is not this shape.
    `in_band_status` returns an HTTP-like status for a 2xx body that is really an error.
    `slot_full`: error codes meaning "the account's concurrency is used up" (SlotFull).
    """

    parse: ErrorParser
    in_band_status: Callable[[Mapping[str, Any]], int | None] = _no_in_band_error
    slot_full: frozenset[str] = frozenset()


def _nested_error(body: Any) -> tuple[str, str] | None:
    """`{"error": {"code", "message", "param"?}}` (Ark, OpenAI style) or `{"error": "text"}`."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, str) and error:
        return "", error
    if not isinstance(error, dict):
        return None
    code, message = _text(error.get("code")), _text(error.get("message"))
    param = _text(error.get("param"))
    if param and param not in message:
        message = f"{message} (param: {param})" if message else f"param: {param}"
    return (code, message) if code or message else None


def _novita_error(body: Any) -> tuple[str, str] | None:
    """`{"code": 400, "reason": "INVALID_REQUEST_BODY", "message": "…", "metadata": {}}`."""
    if isinstance(body, dict) and (body.get("reason") or body.get("message")):
        return _text(body.get("reason")) or _text(body.get("code")), _text(body.get("message"))
    return _nested_error(body)


def _wavespeed_error(body: Any) -> tuple[str, str] | None:
    """`{"code": <int>, "message": "…", "error_code"?: "…"}`."""
    if isinstance(body, dict) and ("code" in body or "message" in body):
        code = _text(body.get("error_code")) or _text(body.get("code"))
        return code, _text(body.get("message"))
    return _nested_error(body)


def _wavespeed_in_band(body: Mapping[str, Any]) -> int | None:
    """WaveSpeed answers some errors with HTTP 200 and `code != 200` (WS-CLI rejects those)."""
    if "code" not in body:
        return None
    try:
        code = int(body["code"])
    except (TypeError, ValueError):
        return 500
    if code == 200:
        return None
    if 1000 <= code < 2000:  # WS-ERR 1xxx: the request must be fixed
        return 400
    if 5000 <= code < 6000:  # WS-ERR 5xxx: server side, retry later
        return 500
    return code


NOVITA_ENVELOPE = Envelope(parse=_novita_error)  # also HighwayAPI (inferred, docs/wire/ §3)
WAVESPEED_ENVELOPE = Envelope(parse=_wavespeed_error, in_band_status=_wavespeed_in_band)
BYTEPLUS_ENVELOPE = Envelope(parse=_nested_error)


class JsonApi:
    """JSON over HTTP to one provider account, with every failure translated."""

    def __init__(
        self,
        settings: ProviderSettings,
        client: httpx.Client,
        envelope: Envelope,
        *,
        submit_timeout_s: float | None = None,
        auth: Auth | None = None,
    ) -> None:
        self.settings = settings
        self.provider = settings.name
        self.client = client
        self.envelope = envelope
        self.submit_timeout_s = submit_timeout_s
        self.auth = auth or bearer

    def submit(
        self, path: str, body: Mapping[str, Any], task_id: Callable[[dict[str, Any]], Any],
        *, headers: Mapping[str, str] | None = None,
    ) -> str:
        """POST a task; return the id that `task_id` finds in the answer. `headers`: the
        provider's per-request options that travel as headers (fal's queue priority)."""
        timeout: httpx.Timeout | None = None
        if self.submit_timeout_s is not None:
            t = self.client.timeout
            timeout = httpx.Timeout(
                connect=t.connect, read=self.submit_timeout_s, write=t.write, pool=t.pool
            )
        response = self._send("POST", path, submit=True, json=dict(body), timeout=timeout,
                              extra_headers=headers)
        answer = self._json_object(response, submit=True)
        remote_id = task_id(answer)
        if isinstance(remote_id, int) and not isinstance(remote_id, bool):
            remote_id = str(remote_id)
        if not isinstance(remote_id, str) or not remote_id.strip():
            raise self._error(
                AmbiguousSubmit,
                "MISSING_TASK_ID",
                f"submit answered {response.status_code} without a task id: "
                f"{_excerpt(response.text)}",
                response.status_code,
            )
        return remote_id.strip()

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET a JSON object."""
        response = self._send("GET", path, submit=False, params=params)
        return self._json_object(response, submit=False)

    def upload(self, path: str, *, filename: str, data: bytes,
               content_type: str) -> dict[str, Any]:
        """POST one file as multipart/form-data field `file`; the JSON answer. Classified as
        a read: an upload creates nothing that costs money."""
        files = {"file": (filename, data, content_type)}
        response = self._send("POST", path, submit=False, files=files)
        return self._json_object(response, submit=False)

    def read_post(self, path: str, body: Mapping[str, Any], *,
                  headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """POST that creates nothing that costs money (a list query, an upload ticket):
        classified like a GET."""
        response = self._send("POST", path, submit=False, json=body, extra_headers=headers)
        return self._json_object(response, submit=False)

    def delete(self, path: str, *, method: str = "DELETE") -> bool:
        """DELETE (or `method`, e.g. fal's PUT .../cancel); True on 2xx, False on a 4xx
        refusal (e.g. the task is past cancelling)."""
        response = self._send(method, path, submit=False)
        if response.is_success:
            return True
        status = response.status_code
        if 400 <= status < 500 and status not in (401, 403, 408, 429):
            return False
        raise self._status_error(response, submit=False)

    # -- internals --------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, submit: bool,
              extra_headers: Mapping[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        headers = {
            **(extra_headers or {}),
            **self.auth(self.settings),
            "Content-Type": "application/json",  # Novita requires it on GET too (NOV-TR)
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if "files" in kwargs:  # httpx writes the multipart boundary itself
            del headers["Content-Type"]
        if kwargs.get("timeout") is None:
            kwargs.pop("timeout", None)
        try:
            return self.client.request(
                method, self.settings.base_url + path, headers=headers, **kwargs
            )
        except httpx.InvalidURL as exc:
            raise self._error(PermanentProviderError, "INVALID_URL", str(exc)) from None
        except httpx.RequestError as exc:
            raise self._transport_error(exc, submit=submit) from None

    def _transport_error(self, exc: httpx.RequestError, *, submit: bool) -> ProviderError:
        code = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).upper()
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.UnsupportedProtocol):
            return self._error(PermanentProviderError, code, f"bad base URL: {detail}")
        if not submit:
            return self._error(RetryableProviderError, code, detail)
        if isinstance(exc, _NOT_SENT):
            return self._error(RetryableProviderError, code, f"request not sent: {detail}")
        return self._error(AmbiguousSubmit, code, f"the task may have been created: {detail}")

    def _json_object(self, response: httpx.Response, *, submit: bool) -> dict[str, Any]:
        if not response.is_success:
            raise self._status_error(response, submit=submit)
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            cls = AmbiguousSubmit if submit else RetryableProviderError
            raise self._error(
                cls,
                "MALFORMED_RESPONSE",
                f"expected a JSON object, got: {_excerpt(response.text)}",
                response.status_code,
            )
        in_band = self.envelope.in_band_status(body)
        if in_band is not None:
            raise self._classify(in_band, response, body, submit=submit)
        return body

    def _status_error(self, response: httpx.Response, *, submit: bool) -> ProviderError:
        try:
            body: Any = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        return self._classify(response.status_code, response, body, submit=submit)

    def _classify(
        self, status: int, response: httpx.Response, body: Any, *, submit: bool
    ) -> ProviderError:
        parsed = self.envelope.parse(body) if body is not None else None
        code, message = parsed or ("", "")
        code = code or f"HTTP_{status}"
        message = message or _excerpt(response.text) or response.reason_phrase or "no detail"
        http_status = response.status_code
        if code in self.envelope.slot_full:
            return self._error(SlotFull, code, message, http_status)
        if status == 429:
            return RateLimited(
                self.provider,
                self._redact(code),
                self._redact(message),
                http_status,
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        if 300 <= status < 500 and status != 408:
            return self._error(PermanentProviderError, code, message, http_status)
        cls = AmbiguousSubmit if submit else RetryableProviderError
        return self._error(cls, code, message, http_status)

    def _error(
        self, cls: type[ProviderError], code: str, message: str, status: int | None = None
    ) -> ProviderError:
        return cls(self.provider, self._redact(code), self._redact(message), status)

    def _redact(self, text: str) -> str:
        """`text` without the account's key or any other secret setting of its provider."""
        secrets = [value.get_secret_value() for _, value in self.settings.options]
        if self.settings.api_key is not None:
            secrets.append(self.settings.api_key.get_secret_value())
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def _text(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value).strip()


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT_CHARS else flat[: _EXCERPT_CHARS - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
