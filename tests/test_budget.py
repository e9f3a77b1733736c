"""The budget cap on a real Redis: reservation in DISPATCH, settlement in TRANSITION, the
raise, and dispatchers racing each other (no worker: enqueued tasks are only collected)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from genbatch.config import Settings
from genbatch.console.views import batch_summary, shown_status
from genbatch.demo import SAMPLES
from genbatch.errors import GenbatchError
from genbatch.models import Counter, ItemState
from genbatch.producer.ingest import ingest_manifest
from genbatch.producer.options import BatchOptions
from genbatch.providers import names
from genbatch.storage import open_storage
from genbatch.store import JobStore, budget, item_id
from genbatch.store.budget import set_budget, summary
from genbatch.worker.dispatch import dispatch_provider
from genbatch.worker.runtime import Runtime
from tests.dispatching import dispatch_items

EST = 0.25  # every item's estimate


def make_batch(store: JobStore, bid: str, n: int, budget: float | None,
               est: str = repr(EST)) -> None:
    store.ingest.create(bid, {"priority": "normal",
                              "budget_usd": "" if budget is None else repr(budget)},
                       created_at=1.0)
    store.ingest.add_items(bid, [{"seq": str(s), "state": "pending", "provider": "novita",
                                  "est_cost": est} for s in range(1, n + 1)])
    store.ingest.commit(bid, ["novita"])


def dispatch(store: JobStore, bid: str, n: int = 100) -> list[str]:
    return dispatch_items(store, "novita", bid, 1000, n, 1e12)


def queued(store: JobStore, bid: str) -> bool:
    return bid in store.debug.queued("novita")


def succeed(store: JobStore, iid: str, cost: float) -> None:
    for cur, new in ((ItemState.DISPATCHED, ItemState.SUBMITTING),
                     (ItemState.SUBMITTING, ItemState.SUBMITTED)):
        assert store.items.transition(iid, [cur], new).applied
    assert store.items.transition(iid, [ItemState.SUBMITTED], ItemState.DOWNLOADING,
                                  fields={"cost": repr(cost)}).applied
    assert store.items.transition(iid, [ItemState.DOWNLOADING], ItemState.SUCCEEDED,
                                  timer="-").applied


def money(store: JobStore, bid: str) -> dict[str, object]:
    return summary(store.batches.get(bid))


def test_dispatch_reserves_estimates_and_stops_at_the_budget(store: JobStore) -> None:
    make_batch(store, "b", 10, budget=1.0)  # 4 of 0.25 fit
    ids = dispatch(store, "b")
    assert ids == [item_id("b", s) for s in range(1, 5)]
    batch = store.batches.get("b")
    assert batch["reserved_micro"] == "1000000"
    assert store.items.get(ids[0])["reserved_micro"] == "250000"
    assert batch["budget_exhausted"]
    assert not queued(store, "b")  # off the round-robin: it holds up no other batch
    assert store.debug.pending("novita", "b")[:1] == [item_id("b", 5)]
    assert int(batch["pending"]) == 6
    assert shown_status(batch) == "budget_exhausted"
    assert batch_summary(batch)["budget"] == {
        "budget_usd": 1.0, "spent_usd": 0.0, "spent_estimate_usd": 0.0, "reserved_usd": 1.0,
        "left_usd": 0.0, "exhausted": True}
    assert dispatch(store, "b") == []  # still nothing fits


def test_settlement_releases_reservations_and_counts_spend(store: JobStore) -> None:
    make_batch(store, "b", 6, budget=10.0)
    a, b, c, d, e, f = dispatch(store, "b")
    succeed(store, a, 0.30)  # actual cost from usage: spent 0.30 against estimate 0.25
    store.items.transition(b, [ItemState.DISPATCHED], ItemState.FAILED, timer="-")  # nothing billed
    store.items.transition(c, [ItemState.DISPATCHED], ItemState.SUBMITTING)
    # may be billed
    store.items.transition(c, [ItemState.SUBMITTING], ItemState.AMBIGUOUS, timer="-")
    store.items.transition(d, [ItemState.DISPATCHED], ItemState.SUBMITTING)
    # 429: not created
    store.items.transition(d, [ItemState.SUBMITTING], ItemState.PENDING, queue="front")
    for iid in (e, f):  # the provider finished, the download failed: billed all the same
        store.items.transition(iid, [ItemState.DISPATCHED], ItemState.SUBMITTED)
        store.items.transition(iid, [ItemState.SUBMITTED], ItemState.DOWNLOADING,
                               fields={"cost": "0.2"})
    store.items.transition(e, [ItemState.DOWNLOADING], ItemState.FAILED, timer="-")
    m = money(store, "b")
    assert m["spent_usd"] == pytest.approx(0.30 + 0.25 + 0.2)
    assert m["spent_estimate_usd"] == pytest.approx(0.25 + 0.25 + 0.25)
    assert m["reserved_usd"] == pytest.approx(0.25)  # f, still downloading
    for iid in (a, b, c, d, e):
        assert store.items.get(iid)["reserved_micro"] == "0"
    # A second settlement of the same attempt changes nothing (terminal → terminal is not
    # a move), and a retry clears `cost` before the item is settled back to pending.
    assert not store.items.transition(a, [ItemState.DOWNLOADING], ItemState.SUCCEEDED).applied
    store.items.transition(e, [ItemState.FAILED], ItemState.PENDING, fields={"cost": ""},
                           queue="back")
    assert money(store, "b")["spent_usd"] == pytest.approx(0.75)


def test_raise_continues_and_is_refused_below_spent_plus_reserved(store: JobStore) -> None:
    make_batch(store, "b", 10, budget=1.0)
    first = dispatch(store, "b")
    succeed(store, first[0], 0.5)  # spent 0.5, reserved 0.75
    with pytest.raises(GenbatchError, match=r"at least \$1\.25"):
        set_budget(store, "b", 1.2, names())
    assert store.batches.get("b")["budget_usd"] == "1.0"
    set_budget(store, "b", 2.0, names())
    batch = store.batches.get("b")
    assert "budget_exhausted" not in batch and queued(store, "b")
    assert len(dispatch(store, "b")) == 3  # 0.5 + 0.75 + 3 * 0.25 = 2.0
    assert store.batches.get("b")["budget_exhausted"]


def test_a_stopped_batch_continues_when_failed_items_leave_room(store: JobStore,
                                                                 redis_url: str) -> None:
    """Items that fail unbilled release their reservation; the scheduler's sweep then puts
    the batch back on the round-robin, and only as far as the budget really allows."""
    from genbatch.worker.scheduler import Scheduler

    make_batch(store, "b", 10, budget=1.0)
    first = dispatch(store, "b")
    assert len(first) == 4 and not queued(store, "b")
    sched = Scheduler(Runtime(Settings(redis_url=redis_url), enqueue=lambda kind, i: None))
    sched.sweep()
    assert not queued(store, "b")  # no room yet: stays stopped
    assert store.batches.get("b")["budget_exhausted"]
    for iid in first[:2]:  # two fail before the provider bills anything
        assert store.items.transition(iid, [ItemState.DISPATCHED], ItemState.FAILED,
                                      timer="-").applied
    sched.sweep()
    batch = store.batches.get("b")
    assert queued(store, "b") and "budget_exhausted" not in batch
    assert shown_status(batch) == "in_progress"
    assert len(dispatch(store, "b")) == 2  # room for exactly two more
    assert store.batches.get("b")["budget_exhausted"] and not queued(store, "b")


def test_a_cancelled_or_unbudgeted_batch_is_never_resumed(store: JobStore) -> None:
    make_batch(store, "b", 10, budget=1.0)
    ids = dispatch(store, "b")
    store.items.transition(ids[0], [ItemState.DISPATCHED], ItemState.FAILED, timer="-")
    store.debug.set_batch("b", {"cancel_requested": "1"})
    assert not store.batches.resume_if_room("b", ["novita"])
    make_batch(store, "u", 3, budget=None)
    assert not store.batches.resume_if_room("u", ["novita"])


def test_unbudgeted_batch_reserves_but_never_stops(store: JobStore) -> None:
    make_batch(store, "b", 5, budget=None, est="")  # unpriced too
    ids = dispatch(store, "b")
    assert len(ids) == 5
    assert money(store, "b")["reserved_usd"] == 0.0
    succeed(store, ids[0], 1.5)
    assert money(store, "b")["spent_usd"] == 1.5


def test_a_stopped_batch_does_not_hold_up_the_others(store: JobStore, redis_url: str) -> None:
    make_batch(store, "a", 50, budget=0.5)
    make_batch(store, "z", 50, budget=None)
    sent: list[str] = []
    rt = Runtime(Settings(redis_url=redis_url, novita_max_in_flight=20,
                          novita_submit_rpm=100000), enqueue=lambda kind, i: sent.append(i))
    assert dispatch_provider(rt, "novita") == 20
    assert sum(i.startswith("a:") for i in sent) == 2
    assert sum(i.startswith("z:") for i in sent) == 18


def test_racing_dispatchers_never_pass_the_budget(store: JobStore) -> None:
    n, budget = 400, 30.0  # 120 of 400 fit
    make_batch(store, "b", n, budget=budget)
    dispatched: list[str] = []
    lock = threading.Lock()
    over: list[int] = []
    start = threading.Barrier(3)

    def dispatcher() -> None:
        start.wait()
        while True:
            if not queued(store, "b"):
                return
            ids = dispatch_items(store, "novita", "b", 10**6, 3, 1e12)
            with lock:
                dispatched.extend(ids)

    def settler() -> None:  # items finish (below their estimate) while others dispatch
        start.wait()
        done = 0
        while done < 60:
            with lock:
                todo = dispatched[done:min(done + 5, 60)]
            for iid in todo:
                succeed(store, iid, EST * 0.99)
                done += 1
            b = store.batches.get("b")
            if int(b.get("spent_micro") or 0) + int(b.get("reserved_micro") or 0) > 30_000_000:
                over.append(1)
            if not todo and not queued(store, "b"):
                return

    threads = [threading.Thread(target=dispatcher), threading.Thread(target=dispatcher),
               threading.Thread(target=settler)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batch = store.batches.get("b")
    spent, reserved = int(batch["spent_micro"]), int(batch["reserved_micro"])
    assert not over
    assert spent + reserved <= 30_000_000
    assert len(set(dispatched)) == len(dispatched)
    held = [i for i in dispatched if store.items.get(i)["state"] == "dispatched"]
    assert reserved == 250_000 * len(held)
    assert spent == 60 * round(EST * 0.99 * 1_000_000)
    assert spent + reserved + 250_000 > 30_000_000  # it stopped only when the next did not fit
    assert int(batch["pending"]) == n - len(dispatched)
    assert store.batches.recount("b")[Counter.PENDING] == n - len(dispatched)
    assert batch["budget_exhausted"]


def _manifest(folder: Path, rows: list[dict[str, object]]) -> Path:
    shutil.copytree(SAMPLES / "images", folder / "images", dirs_exist_ok=True)
    path = folder / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _row(i: int, **extra: object) -> dict[str, object]:
    return {"custom_id": f"r{i}", "prompt": "p", "image": "images/sneaker.jpg",
            "resolution": "480p", "duration": 5, **extra}


def test_budget_refuses_rows_without_a_price(store: JobStore, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, [_row(1), _row(2, model="seedance-v1-pro-i2v")])
    kw: dict[str, Any] = {"provider": "highwayapi", "model": "seedance-v1.5-pro-i2v"}
    with pytest.raises(GenbatchError, match="1 rows have none"):
        ingest_manifest(manifest, store=store, storage=open_storage(str(tmp_path / "out")),
                        options=BatchOptions.build(budget_usd=10.0), **kw)
    assert store.batches.recent() == []  # nothing was created
    dry = ingest_manifest(manifest, store=None, storage=None, dry_run=True,
                          options=BatchOptions.build(budget_usd=10.0), **kw)
    assert (dry.fit, dry.unpriced) == (1, 1)


def test_resume_with_budget_raises_it_and_continues(store: JobStore, redis_url: str,
                                                    tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, [_row(i) for i in range(4)])
    kw: dict[str, Any] = {"provider": "highwayapi", "model": "seedance-v1.5-pro-i2v"}
    storage_url = str(tmp_path / "out")
    result = ingest_manifest(manifest, store=store, storage=open_storage(storage_url),
                             options=BatchOptions.build(budget_usd=0.2), **kw)
    bid = str(result.batch_id)
    each = result.est_cost / 4
    assert dispatch_items(store, "highwayapi", bid, 100, 100, 1e12) == [item_id(bid, 1)]
    assert budget.stopped(store.batches.get(bid))
    env = {**os.environ, "GENBATCH_REDIS_URL": redis_url, "GENBATCH_STORAGE_URL": storage_url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "genbatch", *args], env=env,
                              capture_output=True, text=True, timeout=120, check=False,
                              stdin=subprocess.DEVNULL)

    low = cli("submit", str(manifest), "--resume", bid, "--budget", "0.01", *_flags(kw))
    assert low.returncode == 2 and "below what batch" in low.stderr
    bad = tmp_path / "bad.jsonl"  # a manifest resume refuses leaves the budget as it was
    bad.write_text(json.dumps(_row(9, duration=99)) + "\n")
    refused = cli("submit", str(bad), "--resume", bid, "--budget", "5", *_flags(kw))
    assert refused.returncode == 2 and "duration" in refused.stderr
    assert float(store.batches.get(bid)["budget_usd"]) == 0.2
    ok = cli("submit", str(manifest), "--resume", bid, "--budget", f"{each * 4:.6f}",
             *_flags(kw))
    assert ok.returncode == 0, ok.stderr
    batch = store.batches.get(bid)
    assert not budget.stopped(batch) and queued_on(store, "highwayapi", bid)
    assert len(dispatch_items(store, "highwayapi", bid, 100, 100, 1e12)) == 3


def _flags(kw: dict[str, Any]) -> list[str]:
    return ["--provider", kw["provider"], "--model", kw["model"]]


def queued_on(store: JobStore, provider: str, bid: str) -> bool:
    return bid in store.debug.queued(provider)
