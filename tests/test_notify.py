"""Webhook out: the signature scheme, the headers, which answers are retried, and the
delivery state kept in the batch hash (real Redis; the receiver is an httpx.MockTransport)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from genbatch import addresses
from genbatch.client import Client
from genbatch.config import Settings
from genbatch.console.views import batch_summary
from genbatch.demo import SAMPLES
from genbatch.errors import GenbatchError
from genbatch.models import BatchStatus
from genbatch.store import JobStore
from genbatch.worker import notify
from genbatch.worker.runtime import Runtime

SECRET = "whsec-test-0123456789"
URL = "https://hooks.example.com/genbatch?token=abc"
DEMO = SAMPLES / "demo.csv"


def independent_signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def public(host: str) -> list[str]:
    """A resolver that finds every host public (no DNS in tests)."""
    return ["93.184.215.14"]


def deliver(rt: Runtime, batch_id: str, transport: httpx.BaseTransport | None = None) -> str:
    return notify.deliver(rt, batch_id, transport, resolver=public)


def make_runtime(store: JobStore, **overrides: object) -> tuple[Runtime, list[tuple[str, str]]]:
    url = store.debug.client.connection_pool.connection_kwargs
    values: dict[str, object] = {
        "redis_url": f"redis://:{url.get('password') or ''}@{url.get('host', '127.0.0.1')}:"
                     f"{url.get('port', 6379)}/{url.get('db', 0)}",
        "notify_secret": SECRET, "time_factor": 1000.0, **overrides}
    sent: list[tuple[str, str]] = []
    rt = Runtime(Settings(**values),  # type: ignore[arg-type]
                 enqueue=lambda kind, ident: sent.append((kind, ident)))
    return rt, sent


def finished_batch(store: JobStore, bid: str = "b1",
                   status: BatchStatus = BatchStatus.COMPLETED,
                   finished_at: float = 1_700_000_000.5, url: str = URL) -> str:
    store.ingest.create(bid, {"notify_url": url, "budget_usd": "12.5"}, created_at=1.0)
    ok, _ = store.batches.cas(bid, [BatchStatus.VALIDATING], status, {
        "finished_at": repr(finished_at), "total": "5", "succeeded": "3", "failed": "1",
        "cancelled": "1", "results_jsonl": "file:///out/b1/results.jsonl",
        "results_csv": "file:///out/b1/results.csv", "errors_jsonl": "file:///out/b1/errors.jsonl",
    })
    assert ok
    return bid


class Receiver:
    """Answers each POST with the next status code; remembers every request."""

    def __init__(self, *codes: int) -> None:
        self.codes = list(codes)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.codes.pop(0) if len(self.codes) > 1 else self.codes[0])

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


# -- wire format ---------------------------------------------------------------------------
def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"e1","type":"batch.completed"}'

    assert notify.sign(SECRET, 1700000000, body) == independent_signature(
        SECRET, "1700000000", body)
    assert notify.sign("other", 1700000000, body) != notify.sign(SECRET, 1700000000, body)
    assert notify.sign(SECRET, 1700000001, body) != notify.sign(SECRET, 1700000000, body)


def test_post_event_sends_the_headers_and_a_verifiable_signature() -> None:
    receiver = Receiver(204)
    body = b'{"id":"evt-1"}'

    with httpx.Client(transport=receiver.transport) as client:
        outcome, what = notify.post_event(client, URL, "evt-1", body, SECRET, 1700000123)

    assert (outcome, what) == (notify.Outcome.DELIVERED, "HTTP 204")
    (req,) = receiver.requests
    assert req.method == "POST" and req.content == body
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-genbatch-event-id"] == "evt-1"
    assert req.headers["x-genbatch-timestamp"] == "1700000123"
    assert req.headers["x-genbatch-signature"] == independent_signature(
        SECRET, req.headers["x-genbatch-timestamp"], req.content)
    assert SECRET not in str(req.headers) and SECRET.encode() not in req.content


@pytest.mark.parametrize(("code", "outcome"), [
    (200, notify.Outcome.DELIVERED), (202, notify.Outcome.DELIVERED),
    (204, notify.Outcome.DELIVERED),
    (408, notify.Outcome.RETRY), (429, notify.Outcome.RETRY), (500, notify.Outcome.RETRY),
    (502, notify.Outcome.RETRY), (503, notify.Outcome.RETRY),
    (301, notify.Outcome.GIVE_UP), (400, notify.Outcome.GIVE_UP),
    (401, notify.Outcome.GIVE_UP), (403, notify.Outcome.GIVE_UP),
    (404, notify.Outcome.GIVE_UP), (410, notify.Outcome.GIVE_UP),
])
def test_classify(code: int, outcome: notify.Outcome) -> None:
    assert notify.classify(code) is outcome


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadTimeout,
                                   httpx.RemoteProtocolError])
def test_connection_errors_are_retried(error: Callable[..., Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        outcome, what = notify.post_event(client, URL, "e", b"{}", SECRET, 1)

    assert outcome is notify.Outcome.RETRY
    assert "hooks.example.com" in what and "token" not in what


def test_backoff_grows_and_is_capped() -> None:
    s = Settings(time_factor=1.0)
    waits = [notify.backoff_s(n, s) for n in range(1, 10)]
    assert 9 <= waits[0] <= 11 and 27 <= waits[1] <= 33
    assert all(b > a for a, b in itertools.pairwise(waits[:6]))
    assert max(waits) <= 3600 * 1.1
    assert notify.backoff_s(1, Settings(time_factor=10.0)) <= 1.1


def test_event_body_has_counts_cost_and_results() -> None:
    batch = {"id": "b9", "status": "cancelled", "finished_at": "1700000000.0", "total": "4",
             "succeeded": "2", "cancelled": "2", "budget_usd": "3.0",
             "spent_micro": "1250000", "spent_est_micro": "1500000",
             "results_jsonl": "s3://x/b9/results.jsonl", "results_csv": "s3://x/b9/results.csv",
             "errors_jsonl": "s3://x/b9/errors.jsonl"}

    event = notify.build_event("e-1", batch)

    assert event["type"] == "batch.cancelled" and event["batch_id"] == "b9"
    assert event["counts"] == {"total": 4, "succeeded": 2, "failed": 0, "expired": 0,
                               "cancelled": 2, "ambiguous": 0, "parent_failed": 0}
    assert event["cost"] == {"spent_usd": 1.25, "estimated_usd": 1.5, "budget_usd": 3.0}
    assert event["results"]["errors_jsonl"] == "s3://x/b9/errors.jsonl"
    assert notify.build_event("e-2", {"id": "b", "status": "completed"})["cost"] is None
    assert event["finished_at"] == "2023-11-14T22:13:20+00:00"


# -- delivery state on real Redis ------------------------------------------------------------
def test_a_5xx_is_retried_later_with_the_same_event_then_delivered(store: JobStore) -> None:
    rt, _ = make_runtime(store)
    bid = finished_batch(store)
    receiver = Receiver(500, 200)

    assert deliver(rt, bid, receiver.transport) == "retry"
    mid = store.batches.get(bid)
    due = store.debug.notify_due(bid)
    assert mid["notify_status"] == "pending" and mid["notify_attempts"] == "1"
    assert mid["notify_error"] == "HTTP 500"
    assert due is not None and due > rt.now()  # backoff, not an immediate resend

    assert deliver(rt, bid, receiver.transport) == "delivered"

    first, second = receiver.requests
    assert first.content == second.content
    assert first.headers["x-genbatch-event-id"] == second.headers["x-genbatch-event-id"]
    for req in receiver.requests:
        assert req.headers["x-genbatch-signature"] == independent_signature(
            SECRET, req.headers["x-genbatch-timestamp"], req.content)
    event = json.loads(second.content)
    assert event["id"] == second.headers["x-genbatch-event-id"]
    assert event["type"] == "batch.completed" and event["counts"]["succeeded"] == 3
    assert event["cost"]["budget_usd"] == 12.5
    done = store.batches.get(bid)
    assert done["notify_status"] == "delivered" and done["notify_attempts"] == "2"
    assert store.debug.notify_due(bid) is None
    assert batch_summary(done)["notify"] == {"status": "delivered", "attempts": 2,
                                             "event_id": event["id"], "error": None}
    # A duplicate message after delivery sends nothing.
    assert deliver(rt, bid, receiver.transport) == "delivered"
    assert len(receiver.requests) == 2


def test_a_4xx_gives_up_at_once(store: JobStore) -> None:
    rt, _ = make_runtime(store)
    bid = finished_batch(store)
    receiver = Receiver(404)

    assert deliver(rt, bid, receiver.transport) == "failed"

    batch = store.batches.get(bid)
    assert batch["notify_error"] == "HTTP 404 (not retried)"
    assert store.debug.notify_due(bid) is None
    assert len(receiver.requests) == 1


def test_gives_up_after_max_attempts(store: JobStore) -> None:
    rt, _ = make_runtime(store, notify_max_attempts=3)
    bid = finished_batch(store)
    receiver = Receiver(503)

    results = [deliver(rt, bid, receiver.transport) for _ in range(3)]

    assert results == ["retry", "retry", "failed"]
    batch = store.batches.get(bid)
    assert batch["notify_error"] == "HTTP 503 after 3 attempts"
    assert batch_summary(batch)["notify"]["status"] == "failed"  # type: ignore[index]
    assert deliver(rt, bid, receiver.transport) == "failed"
    assert len(receiver.requests) == 3


def test_no_secret_sends_nothing_and_says_why(store: JobStore,
                                              caplog: pytest.LogCaptureFixture) -> None:
    rt, _ = make_runtime(store, notify_secret=None)
    bid = finished_batch(store)
    receiver = Receiver(200)

    with caplog.at_level(logging.INFO):
        assert deliver(rt, bid, receiver.transport) == "failed"

    assert receiver.requests == []
    assert "GENBATCH_NOTIFY_SECRET is not set" in store.batches.get(bid)["notify_error"]
    assert "GENBATCH_NOTIFY_SECRET" in caplog.text


def test_the_secret_and_the_url_token_are_never_logged(store: JobStore,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    rt, _ = make_runtime(store)
    bid = finished_batch(store)

    with caplog.at_level(logging.DEBUG):
        deliver(rt, bid, Receiver(500).transport)
        deliver(rt, bid, Receiver(200).transport)

    assert "hooks.example.com" in caplog.text
    assert SECRET not in caplog.text and "token=abc" not in caplog.text
    assert SECRET not in json.dumps(store.batches.get(bid))


def test_a_batch_still_finalizing_waits_and_a_reopened_one_is_dropped(store: JobStore) -> None:
    rt, _ = make_runtime(store)
    store.ingest.create("b2", {"notify_url": URL}, created_at=1.0)
    store.batches.cas("b2", [BatchStatus.VALIDATING], BatchStatus.FINALIZING)
    receiver = Receiver(200)

    assert deliver(rt, "b2", receiver.transport) == "waiting"
    assert store.debug.notify_due("b2") is not None

    store.batches.cas("b2", [BatchStatus.FINALIZING], BatchStatus.IN_PROGRESS)
    assert deliver(rt, "b2", receiver.transport) == "skipped"
    assert store.debug.notify_due("b2") is None
    assert receiver.requests == []


def test_a_batch_that_finishes_again_gets_a_new_event(store: JobStore) -> None:
    rt, _ = make_runtime(store)
    bid = finished_batch(store)
    receiver = Receiver(200)
    deliver(rt, bid, receiver.transport)

    store.batches.reopen(bid)  # `genbatch retry`, then the batch finishes again
    store.batches.cas(bid, [BatchStatus.IN_PROGRESS], BatchStatus.COMPLETED,
                      {"finished_at": "1700000999.0"})
    assert deliver(rt, bid, receiver.transport) == "delivered"

    first, second = (r.headers["x-genbatch-event-id"] for r in receiver.requests)
    assert first != second
    assert store.batches.get(bid)["notify_attempts"] == "1"


def test_scheduler_hook_enqueues_only_due_deliveries_under_a_lease(store: JobStore) -> None:
    rt, sent = make_runtime(store)
    now = rt.now()
    store.debug.set_notify_due({"due": now - 1, "later": now + 3600})

    assert notify.enqueue_due(rt) == 1

    assert sent == [("notify", "due")]
    lease = store.debug.notify_due("due")
    assert lease is not None and lease > now  # re-sent only if this attempt never reports
    assert notify.enqueue_due(rt) == 0


def test_arm_schedules_only_batches_that_asked(store: JobStore) -> None:
    rt, _ = make_runtime(store)

    notify.arm(rt, {"id": "with", "notify_url": URL})
    notify.arm(rt, {"id": "without", "notify_url": ""})

    assert store.debug.notify_ids() == ["with"]
    assert batch_summary({"id": "without", "created_at": "1"})["notify"] is None


def test_the_documented_verification_snippet_accepts_our_events_and_rejects_forgeries() -> None:
    page = (Path(__file__).parents[1] / "docs" / "notifications.md").read_text()
    snippet = page.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, Any] = {}
    exec(snippet, scope)  # noqa: S102 (our own docs page)
    body = json.dumps(notify.build_event("e-7", {"id": "b", "status": "completed"})).encode()
    headers = notify.signed_headers("e-7", SECRET, body, int(time.time()))

    assert scope["verify"](SECRET, headers, body)["id"] == "e-7"
    with pytest.raises(ValueError, match="bad signature"):
        scope["verify"](SECRET, headers, body.replace(b"completed", b"cancelled"))
    with pytest.raises(ValueError, match="bad signature"):
        scope["verify"]("wrong-secret", headers, body)


def test_an_attempt_that_dies_is_resent_after_its_lease_with_the_same_event(
        store: JobStore) -> None:
    rt, sent = make_runtime(store)
    bid = finished_batch(store)

    def dies(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("worker killed mid-request")

    with pytest.raises(RuntimeError):
        deliver(rt, bid, httpx.MockTransport(dies))
    persisted = store.batches.get(bid)["notify_event_id"]
    assert notify.enqueue_due(rt) == 0  # the lease of the dead attempt still holds

    store.debug.set_notify_due({bid: rt.now() - 1})  # ... until it lapses
    assert notify.enqueue_due(rt) == 1 and sent == [("notify", bid)]
    receiver = Receiver(200)
    assert deliver(rt, bid, receiver.transport) == "delivered"
    assert receiver.requests[0].headers["x-genbatch-event-id"] == persisted


def test_resend_delivers_the_same_event_again_after_giving_up(store: JobStore) -> None:
    """`genbatch notify BATCH`: after the retries ran out, the stored event goes out again
    from the first attempt, with its id unchanged."""
    rt, _ = make_runtime(store, notify_max_attempts=2)
    bid = finished_batch(store)
    down = Receiver(503)
    assert [deliver(rt, bid, down.transport) for _ in range(2)] == ["retry", "failed"]
    first_id = down.requests[0].headers["X-Genbatch-Event-Id"]

    assert notify.resend(rt, bid) == first_id
    assert store.debug.notify_due(bid) is not None  # due now for the scheduler
    assert store.batches.get(bid)["notify_status"] == "pending"
    up = Receiver(200)
    assert deliver(rt, bid, up.transport) == "delivered"
    assert up.requests[0].headers["X-Genbatch-Event-Id"] == first_id
    assert up.requests[0].content == down.requests[0].content
    assert store.batches.get(bid)["notify_attempts"] == "1"


def test_resend_refuses_a_batch_without_notify_or_not_finished(store: JobStore) -> None:
    rt, _ = make_runtime(store)
    finished_batch(store, "plain", url="")
    store.ingest.create("running", {"notify_url": URL}, created_at=1.0)
    with pytest.raises(GenbatchError, match="submitted without --notify"):
        notify.resend(rt, "plain")
    with pytest.raises(GenbatchError, match="running is validating: its event is sent when"):
        notify.resend(rt, "running")


# --- where an event may go ----------------------------------------------------------------


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"),
    ("192.168.0.10", "private"), ("172.16.5.4", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("0.0.0.0", "unspecified"),
    ("::ffff:127.0.0.1", "loopback"), ("100.64.0.1", "non-public"), ("224.0.0.1", "multicast"),
    ("93.184.215.14", None), ("2606:4700::1111", None)])
def test_addresses_are_told_apart(address: str, kind: str | None) -> None:
    assert addresses.kind(address) == kind


def test_a_name_that_resolves_inside_is_refused_at_delivery(store: JobStore) -> None:
    rt, _ = make_runtime(store)
    bid = finished_batch(store, url="https://rebinding.example/hook")
    receiver = Receiver(200)

    outcome = notify.deliver(rt, bid, receiver.transport, resolver=lambda host: ["10.0.0.7"])

    assert outcome == "failed" and receiver.requests == []
    assert store.batches.get(bid)["notify_error"] == (
        "host rebinding.example resolves to a private address; GENBATCH_NOTIFY_ALLOW_PRIVATE "
        "is off (not retried)")


def test_a_name_that_does_not_resolve_is_retried(store: JobStore) -> None:
    rt, _ = make_runtime(store)
    bid = finished_batch(store)

    def unresolved(host: str) -> list[str]:
        raise addresses.UnresolvedHost(f"host {host} does not resolve")

    assert notify.deliver(rt, bid, Receiver(200).transport, resolver=unresolved) == "retry"


def test_the_setting_lets_a_receiver_on_loopback_in(store: JobStore) -> None:
    rt, _ = make_runtime(store, notify_allow_private=True)
    bid = finished_batch(store, url="http://127.0.0.1:9/hook")
    receiver = Receiver(200)

    assert notify.deliver(rt, bid, receiver.transport) == "delivered"
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://[::1]/x",
                                 "http://169.254.169.254/latest/meta-data",
                                 "http://localhost:9/x"])
def test_submit_refuses_a_receiver_inside(url: str, tmp_path: Path) -> None:
    client = Client(Settings(storage_url=str(tmp_path), notify_secret="s3cret-signing-key"))
    with pytest.raises(GenbatchError, match=r"refused \(set GENBATCH_NOTIFY_ALLOW_PRIVATE=true"):
        client.estimate(DEMO, notify_url=url)
