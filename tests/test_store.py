"""Job store: compare-and-set transitions keep counters equal to a recount."""

from __future__ import annotations

import threading

import pytest

from genbatch.errors import NotFoundError
from genbatch.store import COUNTERS, JobStore, item_id
from tests.dispatching import dispatch_items


def make_batch(store: JobStore, bid: str, n: int, provider: str = "novita") -> None:
    store.create_batch(bid, {"provider": provider, "model": "m"}, created_at=1.0)
    store.add_items(
        bid,
        [{"seq": str(i), "state": "pending", "provider": provider, "line": str(i + 1)}
         for i in range(1, n + 1)],
    )
    store.commit_batch(bid, [provider])


def test_dispatch_respects_in_flight_limit_and_moves_counters(store: JobStore) -> None:
    make_batch(store, "b1", 10)
    got = dispatch_items(store, "novita", "b1", limit=4, max_n=100, lease_until=99.0)
    assert got == [item_id("b1", i) for i in range(1, 5)]
    assert store.in_flight("novita") == 4
    assert dispatch_items(store, "novita", "b1", limit=4, max_n=100, lease_until=99.0) == []
    batch = store.get_batch("b1")
    assert (batch["pending"], batch["in_flight"], batch["total"]) == ("6", "4", "10")
    assert store.recount("b1") == {c: int(batch[c]) for c in COUNTERS}


def test_transition_is_compare_and_set(store: JobStore) -> None:
    make_batch(store, "b2", 1)
    iid = item_id("b2", 1)
    dispatch_items(store, "novita", "b2", limit=5, max_n=5, lease_until=10.0)
    first = store.transition(iid, ["dispatched"], "submitting", fields={"x": "1"})
    second = store.transition(iid, ["dispatched"], "submitting")
    assert first.applied and first.previous == "dispatched"
    assert not second.applied and second.previous == "submitting"
    assert store.get_item(iid)["x"] == "1"


def test_transition_counts_on_the_item_or_its_batch_in_the_same_step(store: JobStore) -> None:
    make_batch(store, "b5", 1)
    iid = item_id("b5", 1)
    dispatch_items(store, "novita", "b5", limit=5, max_n=5, lease_until=10.0)
    store.transition(iid, ["dispatched"], "submitting", incr={"polls": 2, "batch:hops": 1})
    missed = store.transition(iid, ["dispatched"], "submitting", incr={"batch:hops": 1})
    assert not missed.applied  # a move that does not apply counts nothing
    assert store.get_item(iid)["polls"] == "2" and "hops" not in store.get_item(iid)
    assert store.get_batch("b5")["hops"] == "1"


def test_terminal_transition_releases_slot_and_reports_open_items(store: JobStore) -> None:
    make_batch(store, "b3", 2)
    dispatch_items(store, "novita", "b3", limit=5, max_n=5, lease_until=10.0)
    one = store.transition(item_id("b3", 1), "*", "failed", timer="-")
    two = store.transition(item_id("b3", 2), "*", "succeeded", timer="-")
    assert (one.open_items, two.open_items) == (1, 0)
    assert store.in_flight("novita") == 0
    # A terminal item never moves again, whatever a late message asks.
    late = store.transition(item_id("b3", 2), "*", "failed")
    assert not late.applied
    assert store.get_batch("b3")["succeeded"] == "1"


def test_concurrent_transitions_apply_exactly_once(store: JobStore) -> None:
    make_batch(store, "b4", 1)
    iid = item_id("b4", 1)
    dispatch_items(store, "novita", "b4", limit=5, max_n=5, lease_until=10.0)
    results: list[bool] = []

    def worker() -> None:
        results.append(store.transition(iid, ["dispatched"], "submitting").applied)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert store.get_batch("b4")["in_flight"] == "1"


def test_claim_due_leases_timers_and_drops_terminal(store: JobStore) -> None:
    make_batch(store, "b5", 3)
    dispatch_items(store, "novita", "b5", limit=5, max_n=5, lease_until=5.0)
    store.transition(item_id("b5", 3), "*", "failed")  # timer kept on purpose: stale
    due = store.claim_due(now=6.0, lease_until=100.0, max_n=10)
    assert sorted(due) == [(item_id("b5", 1), "dispatched"), (item_id("b5", 2), "dispatched")]
    assert store.claim_due(now=6.0, lease_until=100.0, max_n=10) == []
    assert store.r.zscore(store.k("timers"), item_id("b5", 3)) is None


def test_downloads_are_claimed_earliest_url_expiry_first_with_their_own_lease(
        store: JobStore) -> None:
    # Given three downloads due, their URLs expiring in another order than their ids
    make_batch(store, "b6", 4)
    dispatch_items(store, "novita", "b6", limit=5, max_n=5, lease_until=5.0)
    for seq, expires in ((1, 900.0), (2, 300.0), (3, 600.0)):
        store.transition(item_id("b6", seq), "*", "downloading", timer=5.0,
                         fields={"url_expires_at": expires})
    # When the scheduler claims them
    due = store.limits.claim_due(6.0, 100.0, 10, {}, download_lease_until=16.0)
    # Then the other timers come first, downloads last by deadline, on the short lease
    assert due == [(item_id("b6", 4), "dispatched"), (item_id("b6", 2), "downloading"),
                   (item_id("b6", 3), "downloading"), (item_id("b6", 1), "downloading")]
    assert store.r.zscore(store.k("timers"), item_id("b6", 2)) == 16.0
    assert store.r.zscore(store.k("timers"), item_id("b6", 4)) == 100.0


def test_unknown_ids_raise_not_found(store: JobStore) -> None:
    with pytest.raises(NotFoundError):
        store.get_batch("nope")
    with pytest.raises(NotFoundError):
        store.transition("nope:1", "*", "failed")


def test_leader_lock_has_one_owner(store: JobStore) -> None:
    assert store.acquire_lock("scheduler", "a", 5)
    assert not store.acquire_lock("scheduler", "b", 5)
    assert store.acquire_lock("scheduler", "a", 5)  # renewal by the owner
    store.release_lock("scheduler", "a")
    assert store.acquire_lock("scheduler", "b", 5)


def test_add_items_writes_a_chunk_in_order_per_account(store: JobStore) -> None:
    bid = "chunk"
    store.create_batch(bid, {"provider": "", "model": "m"}, created_at=1.0)
    items = [
        {"seq": "1", "state": "pending", "provider": "novita", "row": '{"prompt": "café ☕"}'},
        {"seq": "2", "state": "failed", "provider": "", "error_code": "invalid_row"},
        {"seq": "3", "state": "pending", "provider": "byteplus", "custom_id": "b"},
        {"seq": "4", "state": "pending", "provider": "novita", "est_cost": ""},
    ]
    store.add_items(bid, items)
    store.add_items(bid, [])
    store.add_items(bid, [{"seq": "5", "state": "pending", "provider": "novita"}])
    assert store.get_item(item_id(bid, 1)) == {**items[0], "batch": bid}
    assert store.get_item(item_id(bid, 4))["est_cost"] == ""
    assert store.r.lrange(store.k("pending", "novita", bid), 0, -1) == [
        item_id(bid, 1), item_id(bid, 4), item_id(bid, 5)]
    assert store.r.lrange(store.k("pending", "byteplus", bid), 0, -1) == [item_id(bid, 3)]
    batch = store.get_batch(bid)
    assert (batch["total"], batch["pending"], batch["failed"]) == ("5", "4", "1")
    assert store.recount(bid) == {c: int(batch[c]) for c in COUNTERS}


def test_back_to_pending_and_onto_a_queue_is_one_step(store: JobStore) -> None:
    """An item moved back to pending is on its queue in the same atomic step (front for a
    429, back for a retry, on the account named by the fields it gets)."""
    make_batch(store, "b9", 3)
    dispatch_items(store, "novita", "b9", limit=5, max_n=2, lease_until=10.0)
    first, second = item_id("b9", 1), item_id("b9", 2)
    store.transition(first, ["dispatched"], "submitting")
    assert store.transition(first, ["submitting"], "pending", timer="-",
                            queue="front").applied
    assert store.r.lrange("gb:pending:novita:b9", 0, -1) == [first, item_id("b9", 3)]
    assert store.in_flight("novita") == 1
    store.transition(second, ["dispatched"], "failed", timer="-")
    store.r.srem("gb:queues:byteplus", "b9")
    assert store.transition(second, ["failed"], "pending", fields={"provider": "byteplus"},
                            queue="back").applied
    assert store.r.lrange("gb:pending:byteplus:b9", 0, -1) == [second]
    assert store.r.sismember("gb:queues:byteplus", "b9")
    assert store.in_flight("novita") == 0
    # A transition that does not apply queues nothing.
    assert not store.transition(second, ["failed"], "pending", queue="back").applied
    assert store.r.llen("gb:pending:byteplus:b9") == 1
    batch = store.get_batch("b9")
    assert store.recount("b9") == {c: int(batch[c]) for c in COUNTERS}


def test_a_batch_whose_producer_died_mid_ingest_is_reaped(store: JobStore) -> None:
    """A `validating` batch nobody has written to for the timeout is discarded whole; one
    still being written (fresh heartbeat) is kept; a late write to a reaped batch is refused
    with a clear error instead of re-creating half a batch."""
    from genbatch.errors import GenbatchError

    now = float(store.r.time()[0])
    for bid in ("dead", "alive"):
        store.create_batch(bid, {}, created_at=now - 3600)
        store.add_items(bid, [{"seq": str(i), "state": "pending", "provider": "novita",
                               "custom_id": f"c{i}"} for i in (1, 2)])
    store.r.hset(store.k("batch", "dead"), "touched", str(int(now - 1000)))  # went quiet
    make_batch(store, "running", 1)  # committed batches are never touched by the reaper

    assert store.reap_validating(now, 900.0, ["novita"]) == ["dead"]

    assert not store.r.exists(store.k("batch", "dead"), store.k("item", "dead:1"),
                              store.k("pending", "novita", "dead"))
    assert store.get_batch("alive")["status"] == "validating"
    assert store.get_batch("running")["status"] == "in_progress"
    assert store.r.smembers(store.k("validating")) == {"alive"}
    with pytest.raises(GenbatchError, match="batch dead was discarded while it was being"):
        store.add_items("dead", [{"seq": "3", "state": "pending", "provider": "novita"}])
    assert not store.r.exists(store.k("batch", "dead"))
    store.commit_batch("alive", ["novita"])
    assert store.r.smembers(store.k("validating")) == set()
