"""Metrics and the dashboard, read from a real Redis: what workers count shows on a scrape,
and the pages list real batches."""

from __future__ import annotations

import json
import time
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from starlette.testclient import TestClient

from genbatch import metrics, providers
from genbatch.config import Settings
from genbatch.console.dashboard import create_app
from genbatch.models import BatchStatus, ItemState
from genbatch.records import Item
from genbatch.storage import LocalStorage
from genbatch.store import JobStore, item_id
from genbatch.worker.finalize import write_outputs
from tests.dispatching import dispatch_items

LIMITS = dict.fromkeys(providers.names(), 20)

# A scraped sample: its name and its labels as sorted (label, value) pairs.
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def scrape(store: JobStore, now: float | None = None) -> dict[SampleKey, float]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(metrics.StoreCollector(store, LIMITS, clock=lambda: now or time.time()))
    text = generate_latest(reg).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def make_batch(store: JobStore, bid: str, n: int, provider: str = "novita") -> None:
    store.ingest.create(bid, {"manifest": "/m.csv"}, created_at=time.time() - 100)
    store.ingest.add_items(bid, [{"seq": str(i), "state": "pending", "provider": provider,
                                  "model": "seedance-v1.5-pro-i2v", "custom_id": f"c{i}",
                                  "line": str(i + 1), "est_cost": "0.25"} for i in range(1, n + 1)])
    store.ingest.commit(bid, [provider])


def test_scrape_reads_counts_in_flight_timers_and_queues(store: JobStore) -> None:
    make_batch(store, "b1", 4)
    now = time.time()
    store.items.transition(item_id("b1", 1), [ItemState.PENDING], ItemState.SUBMITTED,
                           timer=now - 7,
                           fields={"submitted_at": now - 50, "deadline": now + 950})
    store.items.transition(item_id("b1", 2), [ItemState.PENDING], ItemState.SUBMITTED,
                           timer=now + 30,
                           fields={"submitted_at": now - 10, "deadline": now + 990})
    store.debug.client.rpush("genbatch.poll", "m1", "m2")
    store.debug.client.rpush("genbatch.submit\x06\x163", "m3")

    got = scrape(store, now)

    assert got[("genbatch_items", (("state", "pending"),))] == 2
    assert got[("genbatch_items", (("state", "in_flight"),))] == 2
    assert got[("genbatch_batch_items", (("batch", "b1"), ("state", "total")))] == 4
    assert got[("genbatch_in_flight", (("provider", "novita"),))] == 2
    assert got[("genbatch_in_flight_limit", (("provider", "wavespeed"),))] == 20
    assert abs(got[("genbatch_poll_lag_seconds", ())] - 7) < 0.01
    assert got[("genbatch_timers_due", ())] == 1
    assert abs(got[("genbatch_oldest_open_item_age_seconds", ())] - 50) < 0.01
    assert abs(got[("genbatch_oldest_open_item_deadline_seconds", ())] - 950) < 0.01
    assert got[("genbatch_queue_length", (("queue", "genbatch.poll"),))] == 2
    assert got[("genbatch_queue_length", (("queue", "genbatch.submit"),))] == 1
    assert got[("genbatch_queue_length", (("queue", "genbatch.download"),))] == 0
    assert got[("genbatch_active_batches", ())] == 1


def test_counters_recorded_by_any_process_add_up(store: JobStore) -> None:
    make_batch(store, "b1", 2)
    other_process = JobStore.from_url(_url(store))
    metrics.record_429(store, "novita", "submit")
    metrics.record_429(other_process, "novita", "submit")
    metrics.record_429(store, "wavespeed", "poll")
    metrics.record_limiter_wait(store, "byteplus")
    metrics.record_download_failure(store, "novita")
    item = Item({"provider": "novita", "batch": "b1", "cost": "0.30", "est_cost": "0.25"})
    metrics.record_success(store, item, 1000)
    metrics.record_success(other_process, item, 500)

    got = scrape(store)

    assert got[("genbatch_provider_429_total", (("kind", "submit"), ("provider", "novita")))] == 2
    assert got[("genbatch_provider_429_total", (("kind", "poll"), ("provider", "wavespeed")))] == 1
    waits = ("genbatch_limiter_waits_total", (("kind", "submit"), ("provider", "byteplus")))
    assert got[waits] == 1
    assert got[("genbatch_download_failures_total", (("provider", "novita"),))] == 1
    assert got[("genbatch_download_bytes_total", (("provider", "novita"),))] == 1500
    assert abs(got[("genbatch_spend_usd_total", (("provider", "novita"),))] - 0.60) < 1e-9
    assert abs(got[("genbatch_spend_estimate_usd_total", (("provider", "novita"),))]
               - 0.50) < 1e-9
    assert metrics.batch_spend(store, ["b1", "nope"]) == {"b1": (0.6, 0.5), "nope": (0.0, 0.0)}


def _addr(store: JobStore) -> str:
    kw = store.debug.client.connection_pool.connection_kwargs
    return f"{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


def test_dashboard_pages_api_metrics_and_result_links(store: JobStore, tmp_path: Path) -> None:
    make_batch(store, "b-open", 3)
    make_batch(store, "b-done", 2)
    now = time.time()
    for seq in (1, 2):
        store.items.transition(item_id("b-done", seq), [ItemState.PENDING], ItemState.SUCCEEDED,
                               timer="-",
                               fields={"finished_at": now})
    storage = LocalStorage(tmp_path / "out")
    files = write_outputs(storage, "b-done", store.items.of_batch("b-done", 2))
    store.batches.cas("b-done", [BatchStatus.IN_PROGRESS], BatchStatus.COMPLETED, {
        "results_jsonl": files.results_jsonl, "results_csv": files.results_csv,
        "errors_jsonl": files.errors_jsonl})
    metrics.record_success(store, Item({"provider": "novita", "batch": "b-done", "cost": "0.5",
                                        "est_cost": "0.25"}), 10)
    app = create_app(Settings(redis_url=_url(store)), store=store, storage=storage)

    with TestClient(app) as client:
        batches = client.get("/api/batches").json()
        page = client.get("/")
        metrics_text = client.get("/metrics")
        results = client.get("/results/b-done/results.jsonl")
        missing = client.get("/results/b-open/results.jsonl")
        refused = client.get("/results/b-done/..%2Fsecret")

    by_id = {b["id"]: b for b in batches}
    assert by_id["b-done"]["status"] == "completed"
    assert by_id["b-done"]["progress"] == 1.0 and by_id["b-done"]["eta_s"] == 0.0
    assert by_id["b-done"]["spend_usd"] == 0.5
    assert by_id["b-done"]["results"]["results.jsonl"] == "/results/b-done/results.jsonl"
    assert by_id["b-open"]["pending"] == 3 and by_id["b-open"]["eta_s"] is None
    assert by_id["b-open"]["results"] == {}
    assert page.status_code == 200 and "b-open" in page.text and "b-done" in page.text
    assert 'href="/results/b-done/results.csv"' in page.text
    assert "genbatch_items{" in metrics_text.text
    assert [json.loads(line)["custom_id"] for line in results.text.splitlines()] == ["c1", "c2"]
    assert missing.status_code == 404
    assert refused.status_code == 404


def _url(store: JobStore) -> str:
    password = store.debug.client.connection_pool.connection_kwargs.get("password") or ""
    return f"redis://:{password}@{_addr(store)}"


def test_dispatch_held_back_by_a_cooldown_counts_a_limiter_wait(store: JobStore) -> None:
    from genbatch.worker.runtime import Runtime
    from genbatch.worker.scheduler import Scheduler

    make_batch(store, "b1", 3)
    store.queues.set_cooldown("novita", 30)
    sent: list[tuple[str, str]] = []
    scheduler = Scheduler(Runtime(Settings(redis_url=_url(store)),
                                  enqueue=lambda kind, ident: sent.append((kind, ident))))

    assert scheduler.dispatch() == 0

    assert sent == []
    assert scrape(store)[("genbatch_limiter_waits_total",
                          (("kind", "submit"), ("provider", "novita")))] == 1


def test_polls_held_back_by_the_poll_budget_count_a_limiter_wait(store: JobStore) -> None:
    from genbatch.worker.runtime import Runtime
    from genbatch.worker.scheduler import Scheduler

    make_batch(store, "b1", 5)
    for i in range(1, 6):
        store.debug.set_item(item_id("b1", i), {"state": "submitted"})
        store.items.set_timer(item_id("b1", i), 1.0)
    sent: list[tuple[str, str]] = []
    scheduler = Scheduler(Runtime(Settings(redis_url=_url(store), novita_poll_rpm=1),
                                  enqueue=lambda kind, ident: sent.append((kind, ident))))

    fired, _ = scheduler.fire_timers()

    assert fired == len(sent) == 1  # one poll granted now, four stay due
    assert scrape(store)[("genbatch_limiter_waits_total",
                          (("kind", "poll"), ("provider", "novita")))] == 1


def test_spend_against_budget_per_active_batch(store: JobStore) -> None:
    """Reserved at dispatch, spent when an attempt ends, budget and exhaustion: as the
    budget Lua moves them, one gauge each per active batch."""
    make_batch(store, "b1", 3)
    make_batch(store, "b2", 1)  # no budget: no budget gauges for it
    store.batches.set_fields("b1", {"budget_usd": "0.6"})  # two estimates of 0.25 fit
    got_ids = dispatch_items(store, "novita", None, 10, 10, 1e12)
    assert [i for i in got_ids if i.startswith("b1:")] == [item_id("b1", 1), item_id("b1", 2)]
    first = item_id("b1", 1)
    store.items.transition(first, [ItemState.DISPATCHED], ItemState.SUBMITTED,
                           fields={"cost": "0.3"})
    store.items.transition(first, [ItemState.SUBMITTED], ItemState.DOWNLOADING)
    store.items.transition(first, [ItemState.DOWNLOADING], ItemState.SUCCEEDED)

    got = scrape(store)

    def gauge(name: str, bid: str = "b1") -> float:
        return got[(f"genbatch_batch_{name}", (("batch", bid),))]

    assert gauge("spent_usd") == 0.3 and gauge("spent_estimate_usd") == 0.25
    assert gauge("reserved_usd") == 0.25  # the second item, still in flight
    assert gauge("budget_usd") == 0.6 and gauge("budget_exhausted") == 1  # the third waits
    assert gauge("spent_usd", "b2") == 0.0
    assert ("genbatch_batch_budget_usd", (("batch", "b2"),)) not in got
