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
