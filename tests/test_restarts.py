"""A Redis that lost its last writes must not pay twice silently: what guards a submit's
record (`worker/durable.py`), a restart seen by its new run id and fenced until recovered
from (`store/restarts.py`), and the items flagged `possibly_paid_twice` after a restart
whose records had no guard (`worker/recovery.py`). Real Redis servers; providers behind
httpx.MockTransport."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from genbatch import providers
from genbatch.console.health import diagnose
from genbatch.demo.redis_server import RedisServer, start_redis
from genbatch.models import ItemState
from genbatch.store import Durability, JobStore, item_id
from genbatch.worker import durable, recovery
from genbatch.worker.dispatch import dispatch_provider
from genbatch.worker.durable import Guard
from genbatch.worker.finalize import error_row, result_row
from genbatch.worker.steps import submit_item
from tests.dispatching import dispatch_items
from tests.test_hints import MockedRuntime
from tests.test_webhooks import settings

MODEL = "seedance-v1.5-pro-i2v"
REQUEST = {"prompt": "a cat", "image": "https://cdn.example.com/a.png", "resolution": "480p"}
LOST_FROM = 1_000_000.0  # the last scheduler beat that survived the (pretended) restart


@pytest.mark.parametrize(("d", "wait_s", "guard", "words"), [
    (Durability(True, "always", False, "6.2.14"), 2.0, Guard.ALWAYS, "every answered write"),
    (Durability(True, "everysec", True, "7.2.4"), 2.0, Guard.WAITAOF, "WAITAOF"),
    (Durability(True, "everysec", False, "6.2.14"), 2.0, Guard.WAIT, "waits 2s"),
    (Durability(True, "everysec", False, "6.2.14"), 0.0, Guard.NONE, "can lose sent"),
    (Durability(True, "no", False, "6.2.14"), 2.0, Guard.NONE, "AOF no"),
    (Durability(True, None, False, "6.2.14"), 2.0, Guard.NONE, "fsync unknown"),
    (Durability(False, "everysec", True, "7.2.4"), 2.0, Guard.NONE, "no AOF"),
])
def test_the_guard_of_a_submit_record_and_its_line(d: Durability, wait_s: float, guard: Guard,
                                                   words: str) -> None:
    s = settings("redis://unused", fsync_wait_s=wait_s)
    assert durable.guard(d, s) is guard
    assert guard.covers == (guard is not Guard.NONE)
    assert words in durable.describe(d, guard, s)


def test_a_new_run_id_is_one_restart_and_dispatch_waits_for_its_recovery(
        store: JobStore, redis_url: str) -> None:
    book = store.restarts
    assert book.observe("run-a", 10.0, "wait", True, "AOF everysec") is None  # first sight
    assert book.observe("run-a", 11.0, "wait", True, "AOF everysec") is None
    book.beat(12.0)
    seen = book.observe("run-b", 20.0, "always", True, "AOF always")
    assert seen is not None and seen.epoch == 1 and seen.lost_from == 12.0
    assert seen.covers and seen.guard == "wait"  # the old server's guard: it held the writes
    assert book.observe("run-b", 21.0, "always", True, "AOF always") is None  # recorded once
    assert book.fenced() and book.durability() == "AOF always"

    bid = "fenced"
    queue_pending(store, "novita", bid, 1)
    rt = runtime(redis_url, [])
    assert dispatch_provider(rt, "novita") == 0  # fenced: nothing leaves the queue
    assert store.items.get(item_id(bid, 1)).state is ItemState.PENDING
    book.recovered(seen.epoch, 0, 0)
    assert not book.fenced() and book.last() is not None
    assert dispatch_provider(rt, "novita") == 1


def test_a_submit_waits_while_a_restart_is_recovered_from(store: JobStore,
                                                          redis_url: str) -> None:
    bodies: list[dict[str, object]] = []
    iid = dispatched(store, "novita", "wait-fence")
    store.restarts.observe("run-a", 1.0, "none", False, "")
    store.restarts.observe("run-b", 2.0, "none", False, "")
    assert submit_item(runtime(redis_url, bodies), iid) == "later"
    assert not bodies and store.items.get(iid).state is ItemState.DISPATCHED


@pytest.fixture
def everysec(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "everysec", fsync="everysec")
    yield server
    server.stop()


@pytest.mark.parametrize("lost", [False, True])
def test_with_everysec_a_submit_is_sent_only_once_its_record_survived_the_wait(
        everysec: RedisServer, lost: bool) -> None:
    """The worker waits GENBATCH_FSYNC_WAIT_S after the `submitting` record and reads it back:
    a record lost meanwhile (here: put back as a lost write leaves it) is never sent."""
    store = JobStore.from_url(everysec.url)
    bodies: list[dict[str, object]] = []
    rt = runtime(everysec.url, bodies, fsync_wait_s=1.0)
    if store.server.durability().waitaof:
        pytest.skip("this Redis has WAITAOF: the wait is not used")
    iid = dispatched(store, "novita", f"readback-{lost}")
    if lost:
        threading.Thread(target=lose_claim, args=(store, iid), daemon=True).start()
    outcome = submit_item(rt, iid)
    item = store.items.get(iid)
    if lost:
        assert outcome == "skipped" and not bodies
        assert item.state is ItemState.DISPATCHED and item.attempts == 0
    else:
        assert outcome == ItemState.SUBMITTED and len(bodies) == 1 and item.attempts == 1
    store.close()


def lose_claim(store: JobStore, iid: str) -> None:
    """As a Redis that lost its last second leaves it: the claim undone."""
    for _ in range(500):
        if store.items.get(iid).state is ItemState.SUBMITTING:
            store.items.transition(iid, [ItemState.SUBMITTING], ItemState.DISPATCHED,
                                   fields={"submit_started_at": ""}, incr={"attempts": -1})
            return
        time.sleep(0.005)


def test_a_real_restart_is_seen_and_a_guarded_one_flags_nothing(everysec: RedisServer,
                                                                tmp_path: Path) -> None:
    rt = runtime(everysec.url, [])
    queue_pending(rt.store, "novita", "guarded", 2)
    first = rt.store.server.durability().run_id
    assert recovery.watch(rt) is None  # first sight: recorded, no restart
    everysec.kill()
    server = start_redis(tmp_path / "everysec", everysec.port, fsync="everysec")
    try:
        assert rt.store.server.durability().run_id != first
        restart = recovery.watch(rt)
        assert restart is not None and restart.covers  # everysec with the wait
        last = rt.store.restarts.last()
        assert last is not None and last.state == "recovered" and last.flagged == 0
        assert not rt.store.restarts.fenced()
        assert rt.store.batches.get("guarded").get("possibly_paid_twice") is None
    finally:
        rt.store.close()
        server.stop()


def listing(*task_ids: str) -> httpx.MockTransport:
    """WaveSpeed's prediction history holding `task_ids` (created just after LOST_FROM)."""
    wire = providers.provider_model_id("wavespeed", MODEL, "480p")
    created = datetime.fromtimestamp(LOST_FROM + 1, UTC).isoformat()

    def answer(request: httpx.Request) -> httpx.Response:
        items = [{"id": t, "model": wire, "created_at": created, "status": "completed"}
                 for t in task_ids]
        return httpx.Response(200, json={"code": 200, "message": "success",
                                         "data": {"page": 1, "items": items}})

    return httpx.MockTransport(answer)


@pytest.mark.parametrize("unowned", [(), ("t-lost",)])
def test_an_unguarded_restart_flags_every_item_whose_submit_could_be_lost(
        store: JobStore, redis_url: str, unowned: tuple[str, ...]) -> None:
    rt = runtime(redis_url, [])
    rt.handler = listing(*unowned, "t-owned")
    bid = "unguarded"
    queue_pending(store, "novita", bid, 6, more=("wavespeed", 2))
    n = {state: item_id(bid, seq) for seq, state in enumerate(
        ("pending", "dispatched", "old", "new", "done", "ambiguous"), start=1)}
    dispatch_items(store, "novita", bid, 5, 1, 1e12)  # seq 1 → dispatched: swap 1 and 2
    n["pending"], n["dispatched"] = n["dispatched"], n["pending"]
    move(store, n["old"], ItemState.SUBMITTED, submit_started_at=LOST_FROM - 50)
    move(store, n["new"], ItemState.SUBMITTED, submit_started_at=LOST_FROM + 1)
    move(store, n["done"], ItemState.SUCCEEDED, submit_started_at=LOST_FROM + 1)
    move(store, n["ambiguous"], ItemState.AMBIGUOUS, submit_started_at=LOST_FROM - 50)
    store.reconcile.own("wavespeed", "t-owned", n["old"], LOST_FROM + 1)
    store.restarts.observe("run-before", LOST_FROM - 100, "none", False, "AOF no")
    store.restarts.beat(LOST_FROM)

    restart = recovery.watch(rt)  # this server's run id is not "run-before"

    assert restart is not None and not restart.covers and restart.lost_from == LOST_FROM
    items = {it.id: it for it in store.items.of_batch(bid, 8)}
    flagged = {iid for iid, it in items.items() if it.possibly_paid_twice}
    wavespeed = {item_id(bid, 7), item_id(bid, 8)} if unowned else set()
    assert flagged == {n["pending"], n["dispatched"], n["new"]} | wavespeed
    assert int(store.batches.get(bid).get("possibly_paid_twice") or 0) == len(flagged)
    last = store.restarts.last()
    assert last is not None and last.flagged == len(flagged) and last.unowned == len(unowned)
    assert not store.restarts.fenced()
    for iid, it in items.items():
        assert error_row(it)["possibly_paid_twice"] == result_row(it)["possibly_paid_twice"] \
            == (iid in flagged)
    detail = diagnose(store, store.batches.get(bid))
    assert "AOF always" in detail.durability and "(before it: AOF no)" in detail.durability
    assert f"{len(flagged)} items flagged" in detail.durability

    recovery.recover(rt, restart)  # a second pass (a scheduler killed mid-way) counts once
    assert int(store.batches.get(bid).get("possibly_paid_twice") or 0) == len(flagged)


def runtime(redis_url: str, bodies: list[dict[str, object]], **over: object) -> MockedRuntime:
    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"task_id": "t-1"})

    rt = MockedRuntime(settings(redis_url, webhook_base_url=None, **over),
                       enqueue=lambda kind, ident: None)
    rt.handler = httpx.MockTransport(answer)
    return rt


def queue_pending(store: JobStore, provider: str, bid: str, n: int,
                  more: tuple[str, int] | None = None) -> None:
    """A batch of `n` pending items of `provider` (and `more`: n of another after them)."""
    store.ingest.create(bid, {"provider": provider, "model": MODEL}, 1.0)
    rows = [provider] * n + ([more[0]] * more[1] if more else [])
    store.ingest.add_items(bid, [{"seq": str(s), "state": "pending", "provider": p,
                                  "line": str(s + 1), "custom_id": f"c{s}", "model": MODEL,
                                  "req": json.dumps(REQUEST)}
                                 for s, p in enumerate(rows, start=1)])
    store.ingest.commit(bid, sorted(set(rows)))


def dispatched(store: JobStore, provider: str, bid: str) -> str:
    queue_pending(store, provider, bid, 1)
    (iid,) = dispatch_items(store, provider, bid, 5, 5, 1e12)
    return iid


def move(store: JobStore, iid: str, state: ItemState, **fields: object) -> None:
    assert store.items.transition(iid, [ItemState.PENDING], state, fields=fields).applied


def test_status_and_the_batch_page_show_the_durability_and_the_flagged_items(
        store: JobStore, redis_url: str) -> None:
    from rich.console import Console

    from genbatch.console import batch_page
    from genbatch.console.detail import batch_detail

    rt = runtime(redis_url, [])
    queue_pending(store, "novita", "shown", 2)
    store.restarts.observe("run-before", LOST_FROM - 100, "none", False, "AOF no")
    store.restarts.beat(LOST_FROM)
    recovery.watch(rt)
    batch = store.batches.get("shown")
    diagnosis = diagnose(store, batch)
    console = Console(width=200, record=True, force_terminal=False)
    console.print(batch_detail(batch, diagnosis, []))
    text = console.export_text()
    assert "possibly paid twice: 2 items" in text
    assert "durability  AOF always" in text and "2 items flagged" in text
    view = batch_page.batch_view(batch, (0.0, 0.0), LOST_FROM)
    view["durability"] = diagnosis.durability
    html = batch_page.render(view, [], [])
    assert "possibly paid twice: 2</b>" in html and 'id="durability"' in html


@pytest.mark.parametrize("case", ["stopped_waiting", "sending", "restarted", "always"])
def test_a_worker_that_stopped_during_the_wait_sent_nothing(store: JobStore, redis_url: str,
                                                            case: str) -> None:
    """A `submitting` item past its lease is `ambiguous` — unless its record was still
    waiting out the fsync (no `sending` mark) and Redis has not restarted since: then it
    sent nothing and goes back to pending."""
    from genbatch.worker.scheduler import Scheduler

    rt = runtime(redis_url, [])
    recovery.watch(rt)  # the server's run id recorded
    iid = dispatched(store, "novita", f"stopped-{case}")
    now = rt.now()
    fields = {"submit_started_at": now, "hold": "always" if case == "always" else "wait",
              "sending": repr(now + 2) if case == "sending" else ""}
    store.items.transition(iid, [ItemState.DISPATCHED], ItemState.SUBMITTING, fields=fields,
                           incr={"attempts": 1})
    if case == "restarted":  # a restart since the claim could have lost the mark
        store.restarts.observe("another-run", now + 1, "wait", True, "")
    Scheduler(rt)._interrupted_submit(iid)
    item = store.items.get(iid)
    if case == "stopped_waiting":
        assert item.state is ItemState.PENDING and item.get("not_created") == "1"
    else:
        assert item.state is ItemState.AMBIGUOUS and item.error_code == "submit_interrupted"


def test_a_failover_is_a_restart_that_no_fsync_guards(store: JobStore) -> None:
    """A replica promoted to primary loses what it had not got, whatever the old primary's
    fsync: the restart is unguarded (its items get flagged)."""
    assert not store.server.promoted()  # the suite's Redis is a plain primary
    store.restarts.observe("primary", 1.0, "always", True, "AOF always")
    seen = store.restarts.observe("replica", 2.0, "always", True, "AOF always", promoted=True)
    assert seen is not None and not seen.covers and seen.guard == "failover"
