"""The rest after a "slot full" refusal (Kling's 1303): it ends when one of the account's
tasks ends, since the slot it waited for is then free; a 429's cooldown runs its course.
On a real Redis, through the worker's own steps."""

from __future__ import annotations

import time

from genbatch.config import Settings
from genbatch.errors import RateLimited, SlotFull
from genbatch.models import ItemState, PollResult, TaskStatus
from genbatch.store import JobStore
from genbatch.worker.runtime import Runtime
from genbatch.worker.steps import _not_created, apply_poll, finish
from tests.dispatching import dispatch_items

MODEL = "kling-v2-1"


def _kling(store: JobStore, redis_url: str, n: int) -> tuple[Runtime, list[str]]:
    """`n` items of one batch at the Kling account: the first one submitted, the others
    submitting; a runtime whose enqueued tasks are recorded on `rt.sent`."""
    store.ingest.create("k", {}, created_at=1.0)
    store.ingest.add_items("k", [{"seq": str(i), "state": "pending", "provider": "kling",
                                  "model": MODEL, "req": "{}"} for i in range(1, n + 1)])
    store.ingest.commit("k", ["kling"])
    ids = dispatch_items(store, "kling", "k", n, n, 1e12)
    assert len(ids) == n
    for iid in ids:
        store.items.transition(iid, [ItemState.DISPATCHED], ItemState.SUBMITTING)
    store.items.transition(ids[0], [ItemState.SUBMITTING], ItemState.SUBMITTED,
                           fields={"submitted_at": time.time(), "typical_s": 20.0})
    sent: list[tuple[str, str]] = []
    rt = Runtime(Settings(redis_url=redis_url),
                 enqueue=lambda kind, ident: sent.append((kind, ident)))
    rt.sent = sent  # type: ignore[attr-defined]
    return rt, ids


def _refuse(rt: Runtime, iid: str, exc: SlotFull | RateLimited) -> None:
    assert _not_created(rt, rt.store.items.get(iid), iid, exc) == "requeued"
    assert rt.store.items.get(iid).state is ItemState.PENDING


def _done(rt: Runtime, iid: str) -> str:
    done = PollResult(TaskStatus.SUCCEEDED, "succeed", video_url="https://v/x.mp4")
    return apply_poll(rt, rt.store.items.get(iid), iid, done, 1)


def test_a_slot_full_rest_ends_when_one_of_the_accounts_tasks_ends(
        store: JobStore, redis_url: str) -> None:
    rt, (running, refused) = _kling(store, redis_url, 2)
    _refuse(rt, refused, SlotFull("kling", "1303", "parallel task over resource pack limit"))
    assert store.queues.cooling(["kling"]) == [True]  # rests: no submit into a full account
    assert _done(rt, running) == ItemState.DOWNLOADING  # its slot is free now
    assert store.queues.cooling(["kling"]) == [False]
    assert store.items.get(refused).state is ItemState.DISPATCHED  # refilled at once
    assert ("submit", refused) in rt.sent  # type: ignore[attr-defined]


def test_a_failed_task_ends_the_rest_too(store: JobStore, redis_url: str) -> None:
    rt, (running, refused) = _kling(store, redis_url, 2)
    _refuse(rt, refused, SlotFull("kling", "1303", "slot full"))
    assert finish(rt, running, [ItemState.SUBMITTED], ItemState.FAILED, "failed",
                  "the provider failed it") == ItemState.FAILED
    assert store.queues.cooling(["kling"]) == [False]
    assert store.items.get(refused).state is ItemState.DISPATCHED


def test_a_429_cooldown_is_not_ended_by_a_task_ending(store: JobStore, redis_url: str) -> None:
    rt, (running, limited) = _kling(store, redis_url, 2)
    _refuse(rt, limited, RateLimited("kling", "1302", "rate limited", 429, retry_after=60.0))
    assert _done(rt, running) == ItemState.DOWNLOADING
    assert store.queues.cooling(["kling"]) == [True]  # the rate limit still holds
    assert store.items.get(limited).state is ItemState.PENDING


def test_after_a_slot_full_the_account_takes_one_submit_at_a_time(
        store: JobStore, redis_url: str) -> None:
    """Offered ten submits into one freed slot, Kling refuses nine: after a 1303 the
    account takes one at a time, each telling whether a slot is free, and one that lands
    sends the next at once (another slot may be free too), until one is refused again."""
    import httpx

    from genbatch.worker.dispatch import dispatch_provider
    from genbatch.worker.steps import submit_item
    from tests.test_hints import MockedRuntime

    free_slots = [1]  # the account's free slots as Kling counts them

    def kling(request: httpx.Request) -> httpx.Response:
        if free_slots[0] <= 0:
            return httpx.Response(429, json={"code": 1303, "request_id": "r",
                                             "message": "parallel task over resource pack limit"})
        free_slots[0] -= 1
        return httpx.Response(200, json={"code": 0, "message": "SUCCEED", "request_id": "r",
                                         "data": {"task_id": f"t{free_slots[0]}",
                                                  "task_status": "submitted"}})

    sent: list[tuple[str, str]] = []
    rt = MockedRuntime(Settings(redis_url=redis_url, kling_access_key="ak", kling_secret_key="sk",
                                kling_max_in_flight="10"),
                       enqueue=lambda kind, ident: sent.append((kind, ident)))
    rt.handler = httpx.MockTransport(kling)
    store.ingest.create("p", {}, created_at=1.0)
    store.ingest.add_items("p", [{"seq": str(i), "state": "pending", "provider": "kling",
                                  "model": MODEL, "req": '{"prompt": "a cat", "image": '
                                  '"https://cdn.example.com/a.png"}'} for i in range(1, 7)])
    store.ingest.commit("p", ["kling"])

    assert dispatch_provider(rt, "kling") == 6  # nothing refused yet: up to the cap
    outcomes = [submit_item(rt, iid) for kind, iid in list(sent) if kind == "submit"]
    assert outcomes.count(ItemState.SUBMITTED) == 1 and outcomes.count("requeued") == 5
    assert store.queues.rests(["kling"]) == [(True, True)]  # resting, and found full

    free_slots[0] = 2  # two tasks ended, unseen; the rest is over
    store.queues.end_slot_rest("kling")
    sent.clear()
    assert dispatch_provider(rt, "kling") == 1  # one, not the five that wait
    first = sent[-1][1]
    assert submit_item(rt, first) == ItemState.SUBMITTED
    # It landed: the next went out at once, without waiting for the scheduler.
    second = sent[-1][1]
    assert second != first and store.items.get(second).state is ItemState.DISPATCHED
    assert submit_item(rt, second) == ItemState.SUBMITTED
    third = sent[-1][1]
    assert submit_item(rt, third) == "requeued"  # full again: rests, still one at a time
    assert store.queues.rests(["kling"]) == [(True, True)]
    assert [store.items.get(f"p:{i}").state for i in range(1, 7)].count(
        ItemState.SUBMITTED) == 3
