"""Webhook out: when a batch with a `notify_url` finishes, POST it a signed event.

The request (the same scheme as Stripe and Standard Webhooks)::

    POST <notify_url>
    Content-Type: application/json
    X-Genbatch-Event-Id: <uuid>            the same on every retry of one event
    X-Genbatch-Timestamp: <unix seconds>   when this attempt was signed
    X-Genbatch-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

The secret is `GENBATCH_NOTIFY_SECRET`. Without one, nothing is sent: the event ends
`failed` with a reason saying so (an unsigned event would be indistinguishable from a forged
one). 2xx = delivered; a connection error, 408, 429 or 5xx is retried with exponential
backoff up to `GENBATCH_NOTIFY_MAX_ATTEMPTS`; any other answer (3xx included: redirects are
not followed) gives up at once.

At least once, never blocking: delivery is its own task (`genbatch.notify`, control queue)
and a retry is never a sleep or a Celery countdown. The event (id and exact body) is written
to the batch hash before the first attempt, so every retry, and a re-send after a worker
crash, carries the same id and bytes. The `gb:notify` zset holds batch id → when the next
attempt is due; an attempt in progress holds a lease there (`GENBATCH_TASK_LEASE_S`), and the
scheduler enqueues whatever falls due, so a lost message or a killed worker costs only a
delay. Batch-hash fields: `notify_event`, `notify_event_id`, `notify_for` (the `finished_at`
the event reports: a retried batch that finishes again gets a new event), `notify_status`
(pending | delivered | failed), `notify_attempts`, `notify_error`, `notify_done_at`.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from genbatch.addresses import Resolver, UnresolvedHost, non_public, resolve
from genbatch.errors import GenbatchError, NotFoundError
from genbatch.models import BATCH_COUNTERS, OPEN_COUNTERS, BatchStatus, NotifyStatus
from genbatch.records import Batch
from genbatch.store import budget

if TYPE_CHECKING:
    from genbatch.config import Settings
    from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)
COUNT_FIELDS = tuple(c for c in BATCH_COUNTERS if c not in OPEN_COUNTERS)
BACKOFF_BASE_S = 10.0  # first retry after 10 s, then x3: about 2 h over 8 attempts
BACKOFF_CAP_S = 3600.0
ENQUEUE_MAX = 100  # due deliveries the scheduler hands out per tick


_POSTING = contextvars.ContextVar("genbatch_notify_posting", default=False)


class _RedactWebhookURL(logging.Filter):
    """httpx logs each request's full URL at INFO; a webhook URL's query may hold a token,
    so while an event is being posted only its scheme, host and path are logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _POSTING.get() and isinstance(record.args, tuple):
            record.args = tuple(a.copy_with(query=None) if isinstance(a, httpx.URL) else a
                                for a in record.args)
        return True


logging.getLogger("httpx").addFilter(_RedactWebhookURL())


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"


# -- the wire format ---------------------------------------------------------------------
def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `f"{timestamp}.{body}"`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(event_id: str, secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "genbatch-webhook/1",
        "X-Genbatch-Event-Id": event_id,
        "X-Genbatch-Timestamp": str(timestamp),
        "X-Genbatch-Signature": sign(secret, timestamp, body),
    }


def build_event(event_id: str, batch: Mapping[str, str]) -> dict[str, Any]:
    """The event for a finished batch: counts, cost, where the output manifests are."""
    cost: dict[str, float] = {}
    if batch.get("spent_micro") or batch.get("spent_est_micro"):
        cost = {"spent_usd": round(budget.usd(batch.get("spent_micro")), 6),
                "estimated_usd": round(budget.usd(batch.get("spent_est_micro")), 6)}
    if batch.get("budget_usd"):
        cost["budget_usd"] = float(batch["budget_usd"])
    status = batch.get("status", "")
    return {
        "id": event_id,
        "type": f"batch.{status}",
        "batch_id": batch.get("id"),
        "status": status,
        "finished_at": _iso(batch.get("finished_at")),
        "counts": {k: int(batch.get(k) or 0) for k in COUNT_FIELDS},
        "cost": cost or None,
        "results": {k: batch.get(k) or None
                    for k in ("results_jsonl", "results_csv", "errors_jsonl")},
    }


def classify(status_code: int) -> Outcome:
    """2xx delivered; 408, 429 and 5xx are worth retrying; anything else is final."""
    if 200 <= status_code < 300:
        return Outcome.DELIVERED
    if status_code in (408, 429) or status_code >= 500:
        return Outcome.RETRY
    return Outcome.GIVE_UP


def backoff_s(attempt: int, settings: Settings, rng: random.Random | None = None) -> float:
    """Wait after failed attempt `attempt` (from 1): 10 s x 3^(n-1), at most 1 h, ±10 %."""
    base = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 3.0 ** max(attempt - 1, 0))
    return base * (rng or random).uniform(0.9, 1.1) / settings.time_factor


def post_event(client: httpx.Client, url: str, event_id: str, body: bytes,
               secret: str, timestamp: int) -> tuple[Outcome, str]:
    """One attempt: (outcome, what happened in a few words for `notify_error`)."""
    token = _POSTING.set(True)
    try:
        response = client.post(url, content=body,
                               headers=signed_headers(event_id, secret, body, timestamp))
    except httpx.TransportError as exc:
        return Outcome.RETRY, f"{type(exc).__name__}: no answer from {_host(url)}"
    finally:
        _POSTING.reset(token)
    outcome = classify(response.status_code)
    return outcome, f"HTTP {response.status_code}"


# -- scheduling --------------------------------------------------------------------------
def arm(rt: Runtime, batch: Mapping[str, str]) -> None:
    """Called while finalizing: if the batch wants a notification, make sure one is sent
    even if this worker dies before enqueueing it (the scheduler sends it after a lease)."""
    if batch.get("notify_url"):
        _schedule(rt, batch["id"], rt.now() + rt.settings.task_lease_s)


def enqueue_due(rt: Runtime) -> int:
    """Scheduler hook: hand every due delivery to a worker, each under a fresh lease."""
    now = rt.now()
    due = rt.store.outbox.claim_due(now, now + rt.settings.task_lease_s, ENQUEUE_MAX)
    for bid in due:
        rt.enqueue("notify", bid)
    return len(due)


def resend(rt: Runtime, batch_id: str) -> str:
    """`genbatch notify BATCH`: deliver a finished batch's event again, from the first
    attempt (after a receiver outage longer than the retries). The event keeps its id, so a
    receiver that did get it can drop the repeat. Returns the event id ("" when no event
    was made yet: the first attempt makes it)."""
    batch = rt.store.batches.get(batch_id)
    if not batch.notify_url:
        raise GenbatchError(f"batch {batch_id} was submitted without --notify")
    if not batch.finished:
        raise GenbatchError(f"batch {batch_id} is {batch.get('status')}: its event is sent "
                            "when it finishes")
    rt.store.batches.set_fields(batch_id, {"notify_status": NotifyStatus.PENDING,
                                           "notify_attempts": "0", "notify_error": "",
                                           "notify_done_at": ""})
    _schedule(rt, batch_id, rt.now())
    return batch.get("notify_event_id") or ""


def _schedule(rt: Runtime, batch_id: str, due: float) -> None:
    rt.store.outbox.schedule(batch_id, due)


def _unschedule(rt: Runtime, batch_id: str) -> None:
    rt.store.outbox.unschedule(batch_id)


# -- delivery ----------------------------------------------------------------------------
def deliver(rt: Runtime, batch_id: str, transport: httpx.BaseTransport | None = None,
            resolver: Resolver = resolve) -> str:
    """One delivery attempt of the batch's event; returns what happened."""
    try:
        batch = rt.store.batches.get(batch_id)
    except NotFoundError:
        _unschedule(rt, batch_id)
        return "skipped"
    url = batch.notify_url
    if url and batch.status is BatchStatus.FINALIZING:  # a finalize runs (or will be redone)
        _schedule(rt, batch_id, rt.now() + rt.settings.task_lease_s)
        return "waiting"
    if not url or not batch.finished:  # nothing asked, or reopened by a retry
        _unschedule(rt, batch_id)
        return "skipped"
    event_id, body = _persisted_event(rt, batch)
    batch = rt.store.batches.get(batch_id)
    if batch.get("notify_status") in (NotifyStatus.DELIVERED, NotifyStatus.FAILED):
        _unschedule(rt, batch_id)
        return str(batch["notify_status"])
    secret = rt.settings.notify_secret
    if secret is None or not secret.get_secret_value():
        return _record(rt, batch_id, NotifyStatus.FAILED, "GENBATCH_NOTIFY_SECRET is not set "
                       "on the worker: the event was not sent (events are always signed)")
    if urlsplit(url).scheme not in ("http", "https"):
        return _record(rt, batch_id, NotifyStatus.FAILED, "notify_url is not an http(s) URL")
    _schedule(rt, batch_id, rt.now() + rt.settings.task_lease_s)  # the lease of this attempt
    attempts = rt.store.outbox.count_attempt(batch_id)
    refused = None if rt.settings.notify_allow_private else _refused(url, resolver)
    if refused is not None:
        outcome, what = refused
    else:
        timeout = httpx.Timeout(rt.settings.request_timeout_s,
                                connect=rt.settings.connect_timeout_s)
        with httpx.Client(timeout=timeout, follow_redirects=False, transport=transport) as client:
            outcome, what = post_event(client, url, event_id, body,
                                       secret.get_secret_value(), int(time.time()))
    log.info("notify %s: event %s attempt %d to %s: %s", batch_id, event_id, attempts,
             _host(url), what)
    if outcome is Outcome.DELIVERED:
        return _record(rt, batch_id, NotifyStatus.DELIVERED, "")
    if outcome is Outcome.GIVE_UP:
        return _record(rt, batch_id, NotifyStatus.FAILED, f"{what} (not retried)")
    if attempts >= rt.settings.notify_max_attempts:
        return _record(rt, batch_id, NotifyStatus.FAILED, f"{what} after {attempts} attempts")
    rt.store.batches.set_fields(batch_id, {"notify_error": what})
    _schedule(rt, batch_id, rt.now() + backoff_s(attempts, rt.settings))
    return "retry"


def _refused(url: str, resolver: Resolver) -> tuple[Outcome, str] | None:
    """The outcome of a URL that may not be called now: its host resolves to a non-public
    address (given up: GENBATCH_NOTIFY_ALLOW_PRIVATE is off), or does not resolve (retried).
    Checked again at every attempt, after DNS, since a name can change what it points to."""
    try:
        why = non_public(url, resolver)
    except UnresolvedHost as exc:
        return Outcome.RETRY, str(exc)
    if why is None:
        return None
    return Outcome.GIVE_UP, f"{why}; GENBATCH_NOTIFY_ALLOW_PRIVATE is off"


def _persisted_event(rt: Runtime, batch: Batch) -> tuple[str, bytes]:
    """The event of this finish: the stored one, or a new one stored before it is sent."""

    def build() -> tuple[str, str]:
        event_id = str(uuid.uuid4())
        return event_id, json.dumps(build_event(event_id, batch), separators=(",", ":"))

    return rt.store.outbox.persisted_event(batch["id"], batch.get("finished_at", ""), build)


def _record(rt: Runtime, batch_id: str, status: NotifyStatus, error: str) -> str:
    rt.store.batches.set_fields(batch_id, {"notify_status": status, "notify_error": error,
                                           "notify_done_at": repr(rt.now())})
    _unschedule(rt, batch_id)
    if status is NotifyStatus.FAILED:
        log.warning("notify %s failed: %s", batch_id, error)
    return status


def delivery_summary(batch: Mapping[str, str]) -> dict[str, object] | None:
    """What `status --json` shows about the notification (None when none was asked)."""
    if not batch.get("notify_url"):
        return None
    return {"status": batch.get("notify_status") or NotifyStatus.PENDING,
            "attempts": int(batch.get("notify_attempts") or 0),
            "event_id": batch.get("notify_event_id") or None,
            "error": batch.get("notify_error") or None}


def _iso(ts: str | None) -> str | None:
    return datetime.fromtimestamp(float(ts), UTC).isoformat() if ts else None


def _host(url: str) -> str:
    """Only the host goes to logs: a webhook URL's path or query may hold a token."""
    return urlsplit(url).hostname or "?"
