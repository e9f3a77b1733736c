"""Metrics that outlive a batch, read from a real Redis: completions counted where items end,
requests by kind and status, cumulative histograms, series present before the first event."""

from __future__ import annotations

import time

import httpx
import pytest

from genbatch import metrics
from genbatch.config import Settings
from genbatch.models import ItemState
from genbatch.records import Item
from genbatch.store import JobStore, item_id
from genbatch.worker.runtime import CountingTransport, Runtime
from genbatch.worker.steps import finish
from tests.test_metrics import LIMITS, SampleKey, _url, make_batch


def scrape(store: JobStore, accounts: dict[str, list[str]] | None = None
           ) -> dict[SampleKey, float]:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    text = generate_latest(metrics.registry(store, LIMITS, accounts)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_every_counter_has_a_zero_series_per_configured_account(store: JobStore) -> None:
    got = scrape(store, {"novita": ["seedance-v1.5-pro-i2v"]})

    completed = ("genbatch_items_completed_total", (("model", "seedance-v1.5-pro-i2v"),
                                                    ("provider", "novita"), ("state", "failed")))
    assert got[completed] == 0
    for kind in ("submit", "poll", "cancel", "download"):
        for status in ("200", "429"):
            key = ("genbatch_provider_requests_total",
                   (("kind", kind), ("provider", "novita"), ("status", status)))
            assert got[key] == 0
    assert got[("genbatch_provider_429_total", (("kind", "poll"), ("provider", "novita")))] == 0
    assert got[("genbatch_limiter_waits_total", (("kind", "submit"),
                                                 ("provider", "novita")))] == 0
    assert got[("genbatch_download_failures_total", (("provider", "novita"),))] == 0
    assert not any(labels and dict(labels).get("provider") == "byteplus"
                   for name, labels in got if name.endswith("_total"))


def test_completions_are_counted_where_items_end_and_outlive_the_batch(store: JobStore) -> None:
    make_batch(store, "b1", 3)
    rt = Runtime(Settings(redis_url=_url(store)), enqueue=lambda kind, ident: None)
    for seq in (1, 2):
        store.items.transition(item_id("b1", seq), [ItemState.PENDING], ItemState.SUBMITTED,
                               timer="-")
    finish(rt, item_id("b1", 1), [ItemState.SUBMITTED], ItemState.FAILED, "TASK_FAILED", "no")
    finish(rt, item_id("b1", 2), [ItemState.SUBMITTED], ItemState.EXPIRED, "deadline_exceeded",
           "late")
    finish(rt, item_id("b1", 2), [ItemState.SUBMITTED], ItemState.FAILED, "again",
           "not applied: skipped")
    store.batches.deactivate("b1")

    got = scrape(store)

    def completed(state: str) -> float:
        return got[("genbatch_items_completed_total", (
            ("model", "seedance-v1.5-pro-i2v"), ("provider", "novita"), ("state", state)))]

    assert completed("failed") == 1 and completed("expired") == 1
    assert got[("genbatch_active_batches", ())] == 0


def test_counting_transport_reports_kind_and_status_or_no_answer(store: JobStore) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(429 if request.method == "POST" else 200, json={})

    seen: list[tuple[str, int | None]] = []
    transport = CountingTransport(httpx.MockTransport(handler),
                                  lambda kind, status: seen.append((kind, status)))
    with httpx.Client(transport=transport) as client:
        client.post("http://p/tasks")
        client.get("http://p/tasks/1")
        with pytest.raises(httpx.ConnectError):
            client.delete("http://p/tasks/1")
    for kind, status in seen:
        metrics.record_request(store, "novita", kind, status)

    got = scrape(store)

    assert seen == [("submit", 429), ("poll", 200), ("cancel", None)]
    requests = "genbatch_provider_requests_total"
    assert got[(requests, (("kind", "submit"), ("provider", "novita"), ("status", "429")))] == 1
    assert got[(requests, (("kind", "cancel"), ("provider", "novita"), ("status", "error")))] == 1


def test_generation_and_poll_lag_histograms_are_cumulative(store: JobStore) -> None:
    now = time.time()
    item = Item({"batch": "b", "seq": "1", "provider": "byteplus", "model": "m",
                 "submitted_at": repr(now - 12), "poll_due": repr(now - 0.3)})
    metrics.record_generation(store, item, now)
    metrics.record_generation(store, item, now + 100)
    metrics.record_generation(store, Item({**item, "dl_attempts": "1"}), now)  # a re-poll
    metrics.record_poll_lag(store, item, now)

    got = scrape(store)

    labels = (("model", "m"), ("provider", "byteplus"))
    def bucket(name: str, le: str) -> float:
        return got[(f"genbatch_{name}_bucket", (("le", le), *labels))]

    assert bucket("generation_seconds", "10.0") == 0
    assert bucket("generation_seconds", "20.0") == 1
    assert bucket("generation_seconds", "120.0") == 2
    assert bucket("generation_seconds", "+Inf") == 2
    assert got[("genbatch_generation_seconds_count", labels)] == 2
    assert abs(got[("genbatch_generation_seconds_sum", labels)] - 124) < 0.01
    assert bucket("item_poll_lag_seconds", "0.25") == 0
    assert bucket("item_poll_lag_seconds", "0.5") == 1
