"""Item pages and per-batch series, on a real Redis: filters, cursors both ways, the scan
budget, and a series that stays bounded over a long life."""

from __future__ import annotations

import itertools

from genbatch.models import ItemState
from genbatch.store import JobStore, item_id
from genbatch.store.pages import ItemFilter, Pages
from genbatch.store.series import Series


def make_items(store: JobStore, bid: str, n: int) -> None:
    store.ingest.create(bid, {"manifest": "/m.csv"}, created_at=1000.0)
    store.ingest.add_items(bid, [{"seq": str(i), "state": "pending",
                                  "provider": "novita" if i % 2 else "byteplus",
                                  "model": "m1" if i % 3 else "m2", "custom_id": f"Shot-{i:03d}",
                                  "line": str(i + 1)} for i in range(1, n + 1)])
    store.ingest.commit(bid, ["novita", "byteplus"])


def seqs(page: object) -> list[int]:
    return [item.seq for item in page.items]  # type: ignore[attr-defined]


def test_unfiltered_pages_walk_forward_and_back(store: JobStore) -> None:
    make_items(store, "b", 25)

    first = store.pages.page("b", 25, ItemFilter(), 10)
    second = store.pages.page("b", 25, ItemFilter(), 10, after=first.next_after or 0)
    last = store.pages.page("b", 25, ItemFilter(), 10, after=second.next_after or 0)
    back = store.pages.page("b", 25, ItemFilter(), 10, before=last.prev_before)

    assert seqs(first) == list(range(1, 11)) and first.prev_before is None
    assert seqs(second) == list(range(11, 21)) and second.prev_before == 11
    assert seqs(last) == [21, 22, 23, 24, 25] and last.next_after is None
    assert seqs(back) == seqs(second) and back.next_after == 20


def test_filters_by_state_provider_model_and_search(store: JobStore) -> None:
    make_items(store, "b", 30)
    for seq in (4, 9, 27):
        store.items.transition(item_id("b", seq), [ItemState.PENDING], ItemState.FAILED, timer="-")

    failed = store.pages.page("b", 30, ItemFilter(states=("failed",)), 10)
    novita_m2 = store.pages.page("b", 30, ItemFilter(provider="novita", model="m2"), 10)
    search = store.pages.page("b", 30, ItemFilter(search="shot-02"), 5)
    none = store.pages.page("b", 30, ItemFilter(search="nope"), 5)

    assert seqs(failed) == [4, 9, 27] and failed.next_after is None
    assert seqs(novita_m2) == [3, 9, 15, 21, 27]
    assert seqs(search) == [20, 21, 22, 23, 24] and search.next_after == 24
    assert seqs(none) == [] and none.next_after is None and none.scanned_to == 30


def test_a_rare_match_stops_at_the_scan_budget_and_goes_on(store: JobStore) -> None:
    make_items(store, "b", 50)
    store.items.transition(item_id("b", 45), [ItemState.PENDING], ItemState.FAILED, timer="-")
    pages = Pages(store.debug.client, store.prefix, budget=20)
    flt = ItemFilter(states=("failed",))

    first = pages.page("b", 50, flt, 10)
    second = pages.page("b", 50, flt, 10, after=first.next_after or 0)
    third = pages.page("b", 50, flt, 10, after=second.next_after or 0)

    assert seqs(first) == [] and first.next_after == 20 and first.scanned_to == 20
    assert seqs(second) == [] and second.next_after == 40
    assert seqs(third) == [45] and third.next_after is None


def test_series_samples_counters_and_stays_bounded(store: JobStore) -> None:
    make_items(store, "b", 4)
    store.items.transition(item_id("b", 1), [ItemState.PENDING], ItemState.SUCCEEDED, timer="-")
    store.counters.add_for_batch("provider_429", "novita:submit", "b", "rate_limited")
    series = Series(store.debug.client, store.prefix, cap=16, min_step_s=1.0)

    series.sample(["b"], 0.0)
    series.sample(["b"], 0.5)  # too soon after the only point: skipped
    series.sample(["b"], 2.0)
    series.sample(["b"], 2.5)
    series.sample(["b"], 2.8)  # 2.5 was under a step after 2.0: replaced by the newest
    points = series.read("b")
    for t in range(3, 10_000, 7):
        series.sample(["b"], float(t))
    long_life = series.read("b")

    assert [p.t for p in points] == [0.0, 2.0, 2.8]
    assert points[-1].values["succeeded"] == 1 and points[-1].values["pending"] == 3
    assert points[-1].values["rate_limited"] == 1 and points[-1].done == 1
    assert len(long_life) <= 16 and long_life[0].t == 0.0 and long_life[-1].t >= 9990
    gaps = [b.t - a.t for a, b in itertools.pairwise(long_life)]
    assert max(gaps) < 4 * min(gaps[:-1])  # spread over the whole life, not bunched up
