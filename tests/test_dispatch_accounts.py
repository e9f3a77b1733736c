"""Dispatch over several accounts of one provider, on a real Redis: spread by free
capacity, per-model caps and rates, paused, degraded and drained accounts, freed slots per
account, and the round-robin rings kept equal to the queues set."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from genbatch.config import Settings
from genbatch.models import ItemState
from genbatch.store import JobStore
from genbatch.worker.dispatch import dispatch_provider
from genbatch.worker.runtime import Runtime
from genbatch.worker.steps import finish

MODEL, MODEL_ID = "seedance-v1.5-pro-i2v", "seedance-1-5-pro-251215"  # genbatch's, BytePlus's
OTHER, OTHER_ID = "seedance-v1-pro-i2v", "seedance-1-0-pro-250528"


def make_batch(store: JobStore, bid: str, n: int, model: str = MODEL,
               priority: str = "normal") -> None:
    store.ingest.create(bid, {"priority": priority}, created_at=1.0)
    store.ingest.add_items(bid, [{"seq": str(s), "state": "pending", "provider": "byteplus",
                                  "model": model} for s in range(1, n + 1)])
    store.ingest.commit(bid, ["byteplus"])


def runtime(redis_url: str, tmp_path: Path, text: str) -> tuple[Runtime, list[str]]:
    path = tmp_path / "accounts.toml"
    path.write_text(text, encoding="utf-8")
    sent: list[str] = []
    s = Settings(redis_url=redis_url, accounts_file=str(path), queue_ahead_max=0)
    return Runtime(s, enqueue=lambda kind, ident: sent.append(ident)), sent


def accounts_of(store: JobStore, ids: list[str]) -> Counter[str]:
    return Counter(store.items.get(i)["account"] for i in ids)


THREE = "".join(f'[bp-{n}]\nprovider = "byteplus"\napi_key = "k{n}"\nconcurrency = {c}\n'
                f"submit_rpm = 100000\n" for n, c in ((1, 5), (2, 5), (3, 10)))


def test_items_spread_over_accounts_up_to_each_cap(store: JobStore, redis_url: str,
                                                   tmp_path: Path) -> None:
    make_batch(store, "b", 100)
    rt, sent = runtime(redis_url, tmp_path, THREE)
    assert dispatch_provider(rt, "byteplus") == 20
    assert accounts_of(store, sent) == {"bp-1": 5, "bp-2": 5, "bp-3": 10}
    assert [store.queues.in_flight(a) for a in ("bp-1", "bp-2", "bp-3")] == [5, 5, 10]
    assert store.queues.in_flight("bp-3", MODEL) == 10
    assert dispatch_provider(rt, "byteplus") == 0  # every account full
    # a slot freed at bp-2 is refilled at bp-2 (by the finishing step itself)
    freed = next(i for i in sent if store.items.get(i)["account"] == "bp-2")
    finish(rt, freed, [ItemState.DISPATCHED], ItemState.FAILED, "x", "boom")
    assert store.queues.in_flight("bp-2") == 5 and len(sent) == 21
    assert store.items.get(sent[-1])["account"] == "bp-2"


def test_spread_follows_free_capacity_not_turns(store: JobStore, redis_url: str,
                                                tmp_path: Path) -> None:
    make_batch(store, "b", 8)
    rt, sent = runtime(redis_url, tmp_path, THREE)
    dispatch_provider(rt, "byteplus")
    # 8 items: the account with the most free slots takes each (10 free, then 9 ... = 5)
    got = accounts_of(store, sent)
    assert got["bp-3"] >= 5 and sum(got.values()) == 8


def test_a_paused_account_takes_nothing_but_its_probe(store: JobStore, redis_url: str,
                                                      tmp_path: Path) -> None:
    make_batch(store, "b", 100)
    rt, sent = runtime(redis_url, tmp_path, THREE)
    for _ in range(3):
        store.health.record_failure("bp-3", "auth", "401", 1e12, degrade_after=3,
                                    pause_after=3, probe_s=1e9)
    assert store.health.get("bp-3").state == "paused"
    dispatch_provider(rt, "byteplus")
    assert accounts_of(store, sent) == {"bp-1": 5, "bp-2": 5}
    store.debug.set_health("bp-3", {"probe_at": "1"})  # its probe is due
    dispatch_provider(rt, "byteplus")
    assert accounts_of(store, sent) == {"bp-1": 5, "bp-2": 5, "bp-3": 1}


def test_a_degraded_account_rests_while_another_is_ok(store: JobStore, redis_url: str,
                                                      tmp_path: Path) -> None:
    make_batch(store, "b", 100)
    rt, sent = runtime(redis_url, tmp_path, THREE)
    for account in ("bp-1", "bp-2"):
        for _ in range(3):
            store.health.record_failure(account, "connect", "refused", 1e12, degrade_after=3,
                                        pause_after=3, probe_s=1e9)
    dispatch_provider(rt, "byteplus")
    assert accounts_of(store, sent) == {"bp-3": 10}
    store.health.record_failure("bp-3", "5xx", "502", 1e12, degrade_after=1,
                                pause_after=3, probe_s=1e9)
    # all degraded: all work
    finish(rt, sent[0], [ItemState.DISPATCHED], ItemState.FAILED, "x", "boom")
    assert set(accounts_of(store, sent)) == {"bp-1", "bp-2", "bp-3"}


def test_per_model_caps_and_rates_hold_on_top_of_the_account(
        store: JobStore, redis_url: str, tmp_path: Path) -> None:
    make_batch(store, "a", 50, MODEL)
    make_batch(store, "b", 50, OTHER)
    rt, sent = runtime(redis_url, tmp_path, f"""
[bp-1]
provider = "byteplus"
api_key = "k"
concurrency = 20
submit_rpm = 100000
[bp-1.models."{MODEL_ID}"]
concurrency = 3
[bp-1.models."{OTHER}"]
submit_rpm = 4
""")
    dispatch_provider(rt, "byteplus")
    models = Counter(store.items.get(i)["model"] for i in sent)
    assert models == {MODEL: 3, OTHER: 4}  # its cap; its rate's minute
    assert store.queues.in_flight("bp-1", MODEL) == 3
    dispatch_provider(rt, "byteplus")
    assert len(sent) == 7


def test_a_drained_account_takes_no_new_work(store: JobStore, redis_url: str,
                                             tmp_path: Path) -> None:
    make_batch(store, "b", 100)
    rt, sent = runtime(redis_url, tmp_path, THREE.replace('concurrency = 10\n',
                                                          'concurrency = 10\ndrain = true\n'))
    dispatch_provider(rt, "byteplus")
    assert accounts_of(store, sent) == {"bp-1": 5, "bp-2": 5}


def test_rings_hold_what_the_queues_set_holds(store: JobStore, redis_url: str,
                                             tmp_path: Path) -> None:
    for n in range(30):
        make_batch(store, f"b{n}", 1, priority=("high", "normal", "low")[n % 3])
    make_batch(store, "big", 40)

    def rings() -> set[str]:
        return {str(b) for p in ("high", "normal", "low")
                for b in store.debug.ring("byteplus", p)}

    assert rings() == store.debug.queued("byteplus")
    store.queues.unqueue("big", ["byteplus"])
    assert "big" not in rings()
    rt, sent = runtime(redis_url, tmp_path, THREE)
    dispatch_provider(rt, "byteplus")
    assert len(sent) == 20
    assert [i.rsplit(":", 1)[0] for i in sent[:10]] == [f"b{n}" for n in range(0, 30, 3)]
    assert rings() == store.debug.queued("byteplus")  # emptied ones left
    assert len(rings()) == 10


def test_a_store_from_before_the_rings_is_put_back_on_them(store: JobStore) -> None:
    make_batch(store, "old", 3)
    store.debug.drop_queues("byteplus", priority="normal")  # as an older genbatch left it
    assert store.queues.rebuild_rings("byteplus") == 1
    assert store.debug.ring("byteplus", "normal") == ["old"]
    assert store.queues.rebuild_rings("byteplus") == 0


@pytest.mark.parametrize("learned", [20.0, 60.0, None])
def test_queueing_ahead_raises_the_cap_on_providers_that_queue(
        store: JobStore, redis_url: str, tmp_path: Path, learned: float | None) -> None:
    make_batch(store, "b", 100)
    if learned is not None:
        store.gen_times.observe("byteplus", MODEL, learned)
    path = tmp_path / "accounts.toml"
    path.write_text('[bp-1]\nprovider = "byteplus"\napi_key = "k"\nconcurrency = 20\n'
                    'submit_rpm = 100000\n', encoding="utf-8")
    sent: list[str] = []
    rt = Runtime(Settings(redis_url=redis_url, accounts_file=str(path)),
                 enqueue=lambda kind, ident: sent.append(ident))
    dispatch_provider(rt, "byteplus")
    assert len(sent) == 20 + {20.0: 10, 60.0: 6, None: 20}[learned]  # None: the bound
