"""The dispatcher on a real Redis: priority first, round-robin across batches, the submit
budget and the in-flight cap (no worker: enqueued tasks are only collected)."""

from __future__ import annotations

import pytest

from genbatch.config import Settings
from genbatch.models import ItemState
from genbatch.store import JobStore
from genbatch.worker.runtime import Runtime
from genbatch.worker.scheduler import Scheduler


def make_batch(store: JobStore, bid: str, n: int, priority: str = "normal") -> None:
    store.ingest.create(bid, {"priority": priority}, created_at=1.0)
    store.ingest.add_items(bid, [{"seq": str(s), "state": "pending", "provider": "novita",
                                  "model": "seedance-v1.5-pro-i2v"}
                          for s in range(1, n + 1)])
    store.ingest.commit(bid, ["novita"])


def scheduler(redis_url: str, **settings: object) -> tuple[Scheduler, list[str]]:
    sent: list[str] = []
    s = Settings(redis_url=redis_url, **settings)  # type: ignore[arg-type]
    return Scheduler(Runtime(s, enqueue=lambda kind, ident: sent.append(ident))), sent


def batches_of(ids: list[str]) -> list[str]:
    return [i.rsplit(":", 1)[0] for i in ids]


def test_small_batch_is_not_starved_by_a_big_one(store: JobStore, redis_url: str) -> None:
    make_batch(store, "big", 1000)
    make_batch(store, "small", 10)
    sched, sent = scheduler(redis_url, novita_max_in_flight=20, novita_submit_rpm=10000)
    sched.dispatch()
    assert len(sent) == 20
    assert batches_of(sent).count("small") == 10  # an equal share of the 20 free slots


def test_priority_first_then_round_robin(store: JobStore, redis_url: str) -> None:
    make_batch(store, "low", 50, "low")
    make_batch(store, "norm-a", 50)
    make_batch(store, "norm-b", 50)
    make_batch(store, "high", 3, "high")
    sched, sent = scheduler(redis_url, novita_max_in_flight=11, novita_submit_rpm=10000)
    sched.dispatch()
    got = batches_of(sent)
    assert got[:3] == ["high"] * 3
    assert sorted(got[3:]) == ["norm-a"] * 4 + ["norm-b"] * 4
    assert "low" not in got


def test_round_robin_rotates_when_the_budget_is_one_per_tick(store: JobStore,
                                                             redis_url: str) -> None:
    for bid in ("a", "b", "c"):
        make_batch(store, bid, 5)
    sched, sent = scheduler(redis_url, novita_max_in_flight=100, novita_submit_rpm=10000,
                            dispatch_batch_size=1)
    for _ in range(6):
        sched.dispatch()
    assert batches_of(sent) == ["a", "b", "c", "a", "b", "c"]


def test_submit_budget_limits_dispatch(store: JobStore, redis_url: str) -> None:
    make_batch(store, "b", 100)
    # 60 per minute: the minute's 60 now, then nothing until they age out.
    sched, sent = scheduler(redis_url, novita_max_in_flight=100, novita_submit_rpm=60,
                            scheduler_tick_s=0.5)
    sched.dispatch()
    assert len(sent) == 60
    sched.dispatch()
    assert len(sent) == 60
    assert store.queues.in_flight("novita") == len(sent)
    assert int(store.batches.get("b")["pending"]) == 100 - len(sent)


def test_in_flight_cap(store: JobStore, redis_url: str) -> None:
    make_batch(store, "b", 100)
    sched, sent = scheduler(redis_url, novita_max_in_flight=7, novita_submit_rpm=10000)
    sched.dispatch()
    sched.dispatch()
    assert len(sent) == 7 == store.queues.in_flight("novita")


def test_a_freed_slot_is_refilled_at_once_by_the_worker(store: JobStore,
                                                        redis_url: str) -> None:
    """A worker that ends an in-flight item dispatches into the freed slot itself, without
    waiting for the scheduler's tick; with the setting off it leaves that to the tick."""
    from genbatch.worker.steps import finish

    make_batch(store, "b", 3)
    sched, sent = scheduler(redis_url, novita_max_in_flight=1, novita_submit_rpm=10000)
    sched.dispatch()
    assert sent == ["b:1"]
    finish(sched.rt, "b:1", [ItemState.DISPATCHED], ItemState.FAILED, "x", "boom")
    assert sent == ["b:1", "b:2"]  # refilled by the finishing step, no tick in between
    assert store.queues.in_flight("novita") == 1
    # not applied: no refill
    finish(sched.rt, "b:1", [ItemState.DISPATCHED], ItemState.FAILED, "x", "again")
    assert sent == ["b:1", "b:2"]

    quiet, quiet_sent = scheduler(redis_url, novita_max_in_flight=1, novita_submit_rpm=10000,
                                  dispatch_on_free=False)
    finish(quiet.rt, "b:2", [ItemState.DISPATCHED], ItemState.FAILED, "x", "boom")
    assert quiet_sent == []
    assert store.items.get("b:3")["state"] == "pending"


def test_scheduler_logs_one_line_while_redis_is_down(caplog: pytest.LogCaptureFixture) -> None:
    """A Redis restart is logged as one warning line per attempt, without a traceback."""
    import threading

    s = Settings(redis_url="redis://127.0.0.1:1/0", scheduler_tick_s=0.01)
    sched = Scheduler(Runtime(s, enqueue=lambda kind, ident: None))
    stop = threading.Event()
    runner = threading.Thread(target=sched.run, args=(stop,))
    with caplog.at_level("WARNING", logger="genbatch.worker.scheduler"):
        runner.start()
        while len(caplog.records) < 2 and runner.is_alive():
            stop.wait(0.05)
        stop.set()
        runner.join()
    assert len(caplog.records) >= 2
    for rec in caplog.records:
        assert rec.getMessage() == "scheduler: Redis unavailable (ConnectionError); retrying"
        assert rec.exc_info is None
