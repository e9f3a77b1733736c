"""Webhook out on the real set-up: Redis, simulator, worker and scheduler processes, and a
stdlib HTTP receiver on loopback that checks nothing itself but records every delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from genbatch.producer.options import BatchOptions
from genbatch.simulator import SimProfile
from genbatch.store import budget
from genbatch.worker import notify
from genbatch.worker.control import cancel_batch
from genbatch.worker.runtime import Runtime
from genbatch.worker.steps import finalize_batch
from tests.integration.cluster import Cluster, running_cluster
from tests.integration.test_pipeline import mixed_manifest

pytestmark = pytest.mark.integration
SECRET = "integration-webhook-secret"


class Receiver:
    """Answers the first `fail_first` POSTs with 500, then 200; keeps (headers, body)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.deliveries: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    code = 500 if len(receiver.deliveries) < receiver.fail_first else 200
                    receiver.deliveries.append(({k.lower(): v for k, v in self.headers.items()},
                                                body, code))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/genbatch?t=x"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> list[tuple[dict[str, str], bytes, int]]:
        with self.lock:
            return [d for d in self.deliveries if d[2] == 200]


def verify(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """What a receiver does (docs/notifications.md): recompute the HMAC, compare in constant
    time."""
    signed = headers["x-genbatch-timestamp"].encode() + b"." + body
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, headers["x-genbatch-signature"])
    event: dict[str, Any] = json.loads(body)
    assert event["id"] == headers["x-genbatch-event-id"]
    return event


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    profile = SimProfile(time_factor=50.0, latency_mean_s=20.0, latency_sigma=0.3, seed=11)
    with running_cluster(redis_url, tmp_path, profile, notify_secret=SECRET,
                         notify_allow_private="true") as c:  # the receiver is on loopback
        yield c


def test_completed_batch_notifies_through_two_500s_while_other_work_goes_on(
        cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    manifest = mixed_manifest(tmp_path, c.sim_url, 10)
    with Receiver(fail_first=2) as receiver:
        notified = str(c.submit(manifest, provider=None, model=None,
                                options=BatchOptions.build(notify_url=receiver.url)).batch_id)
        other = str(c.submit(manifest, provider=None, model=None).batch_id)

        batch = c.wait_batch(notified)
        c.wait_until(lambda: bool(receiver.accepted()), what="the event to be accepted")
        c.wait_batch(other)
        c.wait_until(lambda: c.store.batches.get(notified).get("notify_status") == "delivered",
                     what="notify_status delivered")

    assert [code for _, _, code in receiver.deliveries] == [500, 500, 200]
    events = [verify(headers, body) for headers, body, _ in receiver.deliveries]
    assert len({e["id"] for e in events}) == 1  # one event, re-sent byte for byte
    assert len({body for _, body, _ in receiver.deliveries}) == 1
    event = events[-1]
    assert event["type"] == "batch.completed" and event["batch_id"] == notified
    assert event["status"] == "completed"
    assert event["counts"] == {k: int(batch[k]) for k in notify.COUNT_FIELDS}
    assert event["counts"]["total"] == 10
    assert event["results"] == {k: batch[k] for k in ("results_jsonl", "results_csv",
                                                      "errors_jsonl")}
    assert event["finished_at"]
    spend = budget.summary(batch)
    assert event["cost"] == {"spent_usd": spend["spent_usd"],
                             "estimated_usd": spend["spent_estimate_usd"]}
    final = c.store.batches.get(notified)
    assert final["notify_attempts"] == "3" and final["notify_event_id"] == event["id"]
    # The other batch, which asked for nothing, ran to the end meanwhile and sent nothing.
    other_batch = c.store.batches.get(other)
    assert other_batch["status"] == "completed"
    assert int(other_batch["succeeded"]) + int(other_batch["failed"]) == 10
    assert "notify_status" not in other_batch
    assert len(c.store.debug.notify_ids()) == 0


def test_cancelled_batch_notifies_batch_cancelled(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    mixed_manifest(tmp_path, c.sim_url, 1)  # copies the sample images
    rows = [json.dumps({"custom_id": f"c{i}", "provider": "novita", "prompt": "p",
                        "image": "images/sneaker.jpg"}) for i in range(60)]
    manifest = tmp_path / "cancel.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    rt: Runtime

    def enqueue(kind: str, ident: str) -> None:  # what a worker would do with the message
        if kind == "finalize":
            finalize_batch(rt, ident)
        elif kind == "notify":
            notify.deliver(rt, ident)

    rt = Runtime(c.settings, enqueue=enqueue)
    with Receiver() as receiver:
        batch_id = str(c.submit(manifest, provider=None, model="seedance-v1.5-pro-i2v",
                                options=BatchOptions.build(notify_url=receiver.url)).batch_id)
        c.wait_until(lambda: int(c.store.batches.get(batch_id)["succeeded"]) >= 1,
                     what="a first result")
        cancel_batch(rt, batch_id)
        c.wait_until(lambda: bool(receiver.accepted()), what="the cancelled event")

    (headers, body, _), = receiver.accepted()
    event = verify(headers, body)
    batch = c.store.batches.get(batch_id)
    assert event["type"] == "batch.cancelled" and batch["status"] == "cancelled"
    assert event["counts"]["cancelled"] == int(batch["cancelled"]) > 0
    assert sum(event["counts"][k] for k in notify.COUNT_FIELDS[1:]) == 60
    assert batch["notify_status"] == "delivered"
