"""Job store: compare-and-set transitions keep counters equal to a recount."""

from __future__ import annotations

import pickle
import threading

import pytest

from genbatch.errors import NotFoundError, StoreError, StoreUnavailable
from genbatch.models import ItemState
from genbatch.store import COUNTERS, JobStore, item_id
from tests.dispatching import claimed, dispatch_items


def make_batch(store: JobStore, bid: str, n: int, provider: str = "novita") -> None:
    store.ingest.create(bid, {"provider": provider, "model": "m"}, created_at=1.0)
    store.ingest.add_items(
        bid,
        [{"seq": str(i), "state": "pending", "provider": provider, "line": str(i + 1)}
         for i in range(1, n + 1)],
    )
    store.ingest.commit(bid, [provider])


def test_dispatch_respects_in_flight_limit_and_moves_counters(store: JobStore) -> None:
    make_batch(store, "b1", 10)
    got = dispatch_items(store, "novita", "b1", limit=4, max_n=100, lease_until=99.0)
    assert got == [item_id("b1", i) for i in range(1, 5)]
    assert store.queues.in_flight("novita") == 4
    assert dispatch_items(store, "novita", "b1", limit=4, max_n=100, lease_until=99.0) == []
    batch = store.batches.get("b1")
    assert (batch["pending"], batch["in_flight"], batch["total"]) == ("6", "4", "10")
    assert store.batches.recount("b1") == {c: int(batch[c]) for c in COUNTERS}


def test_transition_is_compare_and_set(store: JobStore) -> None:
    make_batch(store, "b2", 1)
    iid = item_id("b2", 1)
    dispatch_items(store, "novita", "b2", limit=5, max_n=5, lease_until=10.0)
    first = store.items.transition(iid, [ItemState.DISPATCHED], ItemState.SUBMITTING,
                                   fields={"x": "1"})
    second = store.items.transition(iid, [ItemState.DISPATCHED], ItemState.SUBMITTING)
    assert first.applied and first.previous == "dispatched"
    assert not second.applied and second.previous == "submitting"
    assert store.items.get(iid)["x"] == "1"


def test_transition_counts_on_the_item_or_its_batch_in_the_same_step(store: JobStore) -> None:
    make_batch(store, "b5", 1)
    iid = item_id("b5", 1)
    dispatch_items(store, "novita", "b5", limit=5, max_n=5, lease_until=10.0)
    store.items.transition(iid, [ItemState.DISPATCHED], ItemState.SUBMITTING,
                           incr={"polls": 2, "batch:hops": 1})
    missed = store.items.transition(iid, [ItemState.DISPATCHED], ItemState.SUBMITTING,
                                    incr={"batch:hops": 1})
    assert not missed.applied  # a move that does not apply counts nothing
    assert store.items.get(iid)["polls"] == "2" and "hops" not in store.items.get(iid)
    assert store.batches.get("b5")["hops"] == "1"


def test_terminal_transition_releases_slot_and_reports_open_items(store: JobStore) -> None:
    make_batch(store, "b3", 2)
    dispatch_items(store, "novita", "b3", limit=5, max_n=5, lease_until=10.0)
    one = store.items.transition(item_id("b3", 1), "*", ItemState.FAILED, timer="-")
    two = store.items.transition(item_id("b3", 2), "*", ItemState.SUCCEEDED, timer="-")
    assert (one.open_items, two.open_items) == (1, 0)
    assert store.queues.in_flight("novita") == 0
    # A terminal item never moves again, whatever a late message asks.
    late = store.items.transition(item_id("b3", 2), "*", ItemState.FAILED)
    assert not late.applied
    assert store.batches.get("b3")["succeeded"] == "1"


def test_concurrent_transitions_apply_exactly_once(store: JobStore) -> None:
    make_batch(store, "b4", 1)
    iid = item_id("b4", 1)
    dispatch_items(store, "novita", "b4", limit=5, max_n=5, lease_until=10.0)
    results: list[bool] = []

    def worker() -> None:
        results.append(store.items.transition(iid, [ItemState.DISPATCHED],
                                              ItemState.SUBMITTING).applied)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert store.batches.get("b4")["in_flight"] == "1"


def test_claim_due_leases_timers_and_drops_terminal(store: JobStore) -> None:
    make_batch(store, "b5", 3)
    dispatch_items(store, "novita", "b5", limit=5, max_n=5, lease_until=5.0)
    store.items.transition(item_id("b5", 3), "*", ItemState.FAILED)  # timer kept on purpose: stale
    due = claimed(store, 6.0, 100.0, 10)
    assert sorted(due) == [(item_id("b5", 1), "dispatched"), (item_id("b5", 2), "dispatched")]
    assert claimed(store, 6.0, 100.0, 10) == []
    assert store.debug.timer(item_id("b5", 3)) is None


def test_downloads_are_claimed_earliest_url_expiry_first_with_their_own_lease(
        store: JobStore) -> None:
    # Given three downloads due, their URLs expiring in another order than their ids
    make_batch(store, "b6", 4)
    dispatch_items(store, "novita", "b6", limit=5, max_n=5, lease_until=5.0)
    for seq, expires in ((1, 900.0), (2, 300.0), (3, 600.0)):
        store.items.transition(item_id("b6", seq), "*", ItemState.DOWNLOADING, timer=5.0,
                               fields={"url_expires_at": expires})
    # When the scheduler claims them
    due = store.limits.claim_due(6.0, 100.0, 10, {}, download_lease_until=16.0)
    # Then the other timers come first, downloads last by deadline, on the short lease
    assert due == [(item_id("b6", 4), "dispatched"), (item_id("b6", 2), "downloading"),
                   (item_id("b6", 3), "downloading"), (item_id("b6", 1), "downloading")]
    assert store.debug.timer(item_id("b6", 2)) == 16.0
    assert store.debug.timer(item_id("b6", 4)) == 100.0


def test_unknown_ids_raise_not_found(store: JobStore) -> None:
    with pytest.raises(NotFoundError):
        store.batches.get("nope")
    with pytest.raises(NotFoundError):
        store.items.transition("nope:1", "*", ItemState.FAILED)


def test_leader_lock_has_one_owner(store: JobStore) -> None:
    assert store.locks.acquire("scheduler", "a", 5)
    assert not store.locks.acquire("scheduler", "b", 5)
    assert store.locks.acquire("scheduler", "a", 5)  # renewal by the owner
    store.locks.release("scheduler", "a")
    assert store.locks.acquire("scheduler", "b", 5)


def test_add_items_writes_a_chunk_in_order_per_account(store: JobStore) -> None:
    bid = "chunk"
    store.ingest.create(bid, {"provider": "", "model": "m"}, created_at=1.0)
    items = [
        {"seq": "1", "state": "pending", "provider": "novita", "row": '{"prompt": "café ☕"}'},
        {"seq": "2", "state": "failed", "provider": "", "error_code": "invalid_row"},
        {"seq": "3", "state": "pending", "provider": "byteplus", "custom_id": "b"},
        {"seq": "4", "state": "pending", "provider": "novita", "est_cost": ""},
    ]
    store.ingest.add_items(bid, items)
    store.ingest.add_items(bid, [])
    store.ingest.add_items(bid, [{"seq": "5", "state": "pending", "provider": "novita"}])
    assert store.items.get(item_id(bid, 1)) == {**items[0], "batch": bid}
    assert store.items.get(item_id(bid, 4))["est_cost"] == ""
    assert store.debug.pending("novita", bid) == [
        item_id(bid, 1), item_id(bid, 4), item_id(bid, 5)]
    assert store.debug.pending("byteplus", bid) == [item_id(bid, 3)]
    batch = store.batches.get(bid)
    assert (batch["total"], batch["pending"], batch["failed"]) == ("5", "4", "1")
    assert store.batches.recount(bid) == {c: int(batch[c]) for c in COUNTERS}


def test_back_to_pending_and_onto_a_queue_is_one_step(store: JobStore) -> None:
    """An item moved back to pending is on its queue in the same atomic step (front for a
    429, back for a retry, on the account named by the fields it gets)."""
    make_batch(store, "b9", 3)
    dispatch_items(store, "novita", "b9", limit=5, max_n=2, lease_until=10.0)
    first, second = item_id("b9", 1), item_id("b9", 2)
    store.items.transition(first, [ItemState.DISPATCHED], ItemState.SUBMITTING)
    assert store.items.transition(first, [ItemState.SUBMITTING], ItemState.PENDING, timer="-",
                                  queue="front").applied
    assert store.debug.pending("novita", "b9") == [first, item_id("b9", 3)]
    assert store.queues.in_flight("novita") == 1
    store.items.transition(second, [ItemState.DISPATCHED], ItemState.FAILED, timer="-")
    store.debug.drop_queues("byteplus", "b9")
    assert store.items.transition(second, [ItemState.FAILED], ItemState.PENDING,
                                  fields={"provider": "byteplus"},
                                  queue="back").applied
    assert store.debug.pending("byteplus", "b9") == [second]
    assert "b9" in store.debug.queued("byteplus")
    assert store.queues.in_flight("novita") == 0
    # A transition that does not apply queues nothing.
    assert not store.items.transition(second, [ItemState.FAILED], ItemState.PENDING,
                                      queue="back").applied
    assert len(store.debug.pending("byteplus", "b9")) == 1
    batch = store.batches.get("b9")
    assert store.batches.recount("b9") == {c: int(batch[c]) for c in COUNTERS}


def test_a_batch_whose_producer_died_mid_ingest_is_reaped(store: JobStore) -> None:
    """A `validating` batch nobody has written to for the timeout is discarded whole; one
    still being written (fresh heartbeat) is kept; a late write to a reaped batch is refused
    with a clear error instead of re-creating half a batch."""
    from genbatch.errors import GenbatchError

    now = float(store.server.time())
    for bid in ("dead", "alive"):
        store.ingest.create(bid, {}, created_at=now - 3600)
        store.ingest.add_items(bid, [{"seq": str(i), "state": "pending", "provider": "novita",
                                      "custom_id": f"c{i}"} for i in (1, 2)])
    store.debug.set_batch("dead", {"touched": str(int(now - 1000))})  # went quiet
    make_batch(store, "running", 1)  # committed batches are never touched by the reaper

    assert store.ingest.reap_validating(now, 900.0, ["novita"]) == ["dead"]

    assert store.debug.batch_keys("dead") == []
    assert store.batches.get("alive")["status"] == "validating"
    assert store.batches.get("running")["status"] == "in_progress"
    assert store.debug.validating() == {"alive"}
    with pytest.raises(GenbatchError, match="batch dead was discarded while it was being"):
        store.ingest.add_items("dead", [{"seq": "3", "state": "pending", "provider": "novita"}])
    assert store.debug.batch_keys("dead") == []
    store.ingest.commit("alive", ["novita"])
    assert store.debug.validating() == set()


def test_an_unreachable_redis_is_a_store_unavailable_that_pickles() -> None:
    """Every store call translates redis-py's errors, pipelines included, into
    StoreUnavailable: the worker, scheduler and CLI catch that and import no redis."""
    down = JobStore.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable, match="cannot reach Redis") as single:
        down.batches.get("b1")
    with pytest.raises(StoreUnavailable):
        down.batches.recent()  # a pipeline
    again = pickle.loads(pickle.dumps(single.value))  # noqa: S301 (Celery's pool pickles it)
    assert isinstance(again, StoreUnavailable) and str(again) == str(single.value)


def test_other_redis_errors_are_store_errors(store: JobStore) -> None:
    store.debug.client.set(store.debug.key("batch", "b1"), "not a hash")
    with pytest.raises(StoreError):
        store.batches.get("b1")
