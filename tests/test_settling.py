"""A batch with ambiguous items waits — shown as `settling N ambiguous` — until they settle
or their reconciliation window closes, then finishes; a task found for an item after that is
recorded, not adopted, and its batch stays finished; `genbatch reconcile` lists it and can
still adopt it on request. Real Redis; Celery's enqueue is a list; time passes by moving the
item's submit into the past."""

from __future__ import annotations

import json
from pathlib import Path

from genbatch.client.rows import BatchInfo
from genbatch.config import Settings
from genbatch.console.views import shown_status
from genbatch.models import BatchStatus, ItemState
from genbatch.store.history import attempt_reset
from genbatch.worker import reconcile
from genbatch.worker.reconcile_batch import reconcile_batch
from genbatch.worker.runtime import Runtime
from genbatch.worker.steps import finalize_batch, finish
from tests.dispatching import dispatched_novita_batch

MODEL = "seedance-v1.5-pro-i2v"
WINDOW_S = 600.0  # GENBATCH_RECONCILE_DEADLINE_S here


def runtime(redis_url: str, tmp_path: Path, sent: list[tuple[str, str]]) -> Runtime:
    """A novita worker with webhooks on: only an attempt's callback can settle its item."""
    settings = Settings(redis_url=redis_url, storage_url=str(tmp_path / "storage"),
                        novita_api_key="nv-key", webhook_base_url="https://hooks.example.com",
                        webhook_secret="s" * 32, reconcile_deadline_s=WINDOW_S)
    return Runtime(settings, enqueue=lambda kind, ident: sent.append((kind, ident)))


def ambiguous_batch(rt: Runtime) -> str:
    """Batch b1: item 1's submit answer was lost (ambiguous), item 2 ended (expired)."""
    store = rt.store
    first, second = dispatched_novita_batch(store, MODEL)
    store.items.set_fields({first: {"submit_started_at": repr(rt.now()), "attempts": "1"}})
    assert finish(rt, first, [ItemState.DISPATCHED], ItemState.AMBIGUOUS, "submit_timeout",
                  "the submit's answer was lost") == ItemState.AMBIGUOUS
    assert finish(rt, second, [ItemState.DISPATCHED], ItemState.EXPIRED, "deadline_exceeded",
                  "too late") == ItemState.EXPIRED
    return first


def window_passes(rt: Runtime, iid: str) -> None:
    """The item's submit is now longer ago than its reconciliation window."""
    item = rt.store.items.get(iid)
    assert item.submit_started_at is not None and item.finished_at is not None
    rt.store.items.set_fields({iid: {
        "submit_started_at": repr(item.submit_started_at - WINDOW_S - 1),
        "finished_at": repr(item.finished_at - WINDOW_S - 1)}})


def test_the_batch_waits_for_its_ambiguous_item_until_the_window_closes(
        redis_url: str, tmp_path: Path) -> None:
    sent: list[tuple[str, str]] = []
    rt = runtime(redis_url, tmp_path, sent)
    iid = ambiguous_batch(rt)
    assert ("finalize", "b1") in sent  # every item is done: the batch is asked to finish ...

    assert finalize_batch(rt, "b1") == "skipped"  # ... and waits for the ambiguous one
    batch = rt.store.batches.get("b1")
    assert batch.status is BatchStatus.IN_PROGRESS
    assert shown_status(batch) == "settling 1 ambiguous"
    assert BatchInfo.of(batch).status == "settling" and not BatchInfo.of(batch).finished
    # Its look is at the window's end; before that, a look changes nothing.
    assert reconcile.reconcile_item(rt, iid).outcome == "later"
    assert finalize_batch(rt, "b1") == "skipped"

    window_passes(rt, iid)
    sent.clear()
    assert reconcile.reconcile_item(rt, iid).outcome == "left"
    assert sent == [("finalize", "b1")]
    assert finalize_batch(rt, "b1") == BatchStatus.COMPLETED
    item = rt.store.items.get(iid)
    assert item.state is ItemState.AMBIGUOUS and item.settle_closed_at is not None
    assert shown_status(rt.store.batches.get("b1")) == "completed"


def test_a_callback_inside_the_window_adopts_and_the_batch_goes_on(
        redis_url: str, tmp_path: Path) -> None:
    rt = runtime(redis_url, tmp_path, [])
    iid = ambiguous_batch(rt)
    verdict = reconcile.adopt(rt, rt.store.items.get(iid), "task-1", rt.now(),
                              note="adopted task task-1 from its attempt's callback")
    assert verdict.outcome == "adopted"
    item = rt.store.items.get(iid)
    assert item.state is ItemState.SUBMITTED and item.remote_id == "task-1"
    assert rt.store.reconcile.holding("b1") == 0
    assert rt.store.batches.get("b1").status is BatchStatus.IN_PROGRESS


def finished_with_its_window_closed(redis_url: str, tmp_path: Path) -> tuple[Runtime, str]:
    """Batch b1 finished with its ambiguous item's reconciliation window closed."""
    rt = runtime(redis_url, tmp_path, [])
    iid = ambiguous_batch(rt)
    window_passes(rt, iid)
    reconcile.reconcile_item(rt, iid)
    assert finalize_batch(rt, "b1") == BatchStatus.COMPLETED
    return rt, iid


def test_a_task_found_after_the_window_is_recorded_not_adopted(
        redis_url: str, tmp_path: Path) -> None:
    rt, iid = finished_with_its_window_closed(redis_url, tmp_path)
    finished = rt.store.batches.get("b1")

    for _ in range(2):  # the provider's retry of the callback is recorded once
        verdict = reconcile.adopt(rt, rt.store.items.get(iid), "task-9", rt.now(),
                                  note="adopted task task-9 from its attempt's callback")
        assert verdict.outcome == "late"

    batch = rt.store.batches.get("b1")
    assert batch.status is BatchStatus.COMPLETED
    assert batch["finished_at"] == finished["finished_at"]
    assert batch["late_adoptions"] == "1"
    item = rt.store.items.get(iid)
    assert item.state is ItemState.AMBIGUOUS and item.late_task == "task-9"
    assert rt.store.reconcile.owners("novita", [("task-9", rt.now())]) == {"task-9": iid}
    report = reconcile_batch(rt, "b1")
    assert report.late == [(iid, "task-9")]
    assert report.adopted == [] and report.orphans == []
    # A new attempt (retry --ambiguous) starts with an open window; the late task is history.
    fresh = attempt_reset(item)
    assert fresh["settle_closed_at"] == fresh["late_task"] == ""
    assert json.loads(fresh["history"])[-1]["late_task"] == "task-9"


def test_an_explicit_adoption_after_the_window_reopens_the_batch(
        redis_url: str, tmp_path: Path) -> None:
    rt, iid = finished_with_its_window_closed(redis_url, tmp_path)

    verdict = reconcile.adopt(rt, rt.store.items.get(iid), "task-9", rt.now(),
                              note="adopted on request", explicit=True)

    assert verdict.outcome == "adopted"
    assert rt.store.items.get(iid).state is ItemState.SUBMITTED
    assert rt.store.batches.get("b1").status is BatchStatus.IN_PROGRESS


def test_a_cancelled_batch_does_not_wait_for_its_ambiguous_items(
        redis_url: str, tmp_path: Path) -> None:
    rt = runtime(redis_url, tmp_path, [])
    ambiguous_batch(rt)
    rt.store.batches.set_fields("b1", {"cancel_requested": "1"})
    assert finalize_batch(rt, "b1") == BatchStatus.CANCELLED


def test_without_callbacks_nothing_can_settle_it_and_the_batch_finishes(
        redis_url: str, tmp_path: Path) -> None:
    rt = runtime(redis_url, tmp_path, [])
    rt.settings = rt.settings.model_copy(update={"webhook_base_url": None})
    ambiguous_batch(rt)
    assert rt.store.reconcile.holding("b1") == 0
    assert finalize_batch(rt, "b1") == BatchStatus.COMPLETED


def test_the_window_closes_with_its_last_look_not_before(redis_url: str, tmp_path: Path) -> None:
    rt = runtime(redis_url, tmp_path, [])
    iid = ambiguous_batch(rt)
    window_passes(rt, iid)  # due, but its closing look has not run yet: still open
    verdict = reconcile.adopt(rt, rt.store.items.get(iid), "task-3", rt.now(),
                              note="adopted task task-3 from its attempt's callback")
    assert verdict.outcome == "adopted"
    assert rt.store.items.get(iid).state is ItemState.SUBMITTED
