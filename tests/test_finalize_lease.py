"""A batch's outputs are written by one worker at a time: a finalize sent again while one
writes (the scheduler's sweep runs every tick, and a big batch takes seconds to write) is
skipped and the sweep sends none; once the writer is gone its lease lapses and the sweep's
finalize finishes the batch. The lease is renewed while its holder works. Real Redis."""

from __future__ import annotations

import threading
from pathlib import Path

from genbatch.config import Settings
from genbatch.models import BatchStatus, ItemState
from genbatch.worker.leases import lease
from genbatch.worker.runtime import Runtime
from genbatch.worker.scheduler import Scheduler
from genbatch.worker.steps import finalize_batch, finalize_lease, finish
from tests.dispatching import dispatched_novita_batch

MODEL = "seedance-v1.5-pro-i2v"


def runtime(redis_url: str, tmp_path: Path, sent: list[tuple[str, str]]) -> Runtime:
    settings = Settings(redis_url=redis_url, storage_url=str(tmp_path / "storage"),
                        novita_api_key="nv-key")
    return Runtime(settings, enqueue=lambda kind, ident: sent.append((kind, ident)))


def finished_items(rt: Runtime) -> None:
    """Batch b1 with its two items ended (expired): nothing open, ready to finalize."""
    for iid in dispatched_novita_batch(rt.store, MODEL):
        assert finish(rt, iid, [ItemState.DISPATCHED], ItemState.EXPIRED, "deadline_exceeded",
                      "too late") == ItemState.EXPIRED


def test_a_second_finalize_while_one_writes_is_skipped_and_the_sweep_sends_none(
        redis_url: str, tmp_path: Path) -> None:
    sent: list[tuple[str, str]] = []
    rt = runtime(redis_url, tmp_path, sent)
    finished_items(rt)
    assert ("finalize", "b1") in sent  # the last item asked for it
    sent.clear()
    scheduler = Scheduler(rt)

    with lease(rt, finalize_lease("b1"), 30.0) as held:  # another worker is writing
        assert held
        assert finalize_batch(rt, "b1") == "skipped"
        assert rt.store.batches.get("b1").status is BatchStatus.IN_PROGRESS
        assert not (tmp_path / "storage" / "b1").exists()  # nothing written twice
        scheduler.sweep()
        assert sent == []

    assert not rt.store.locks.held(finalize_lease("b1"))  # released with its block
    scheduler.sweep()  # e.g. the writer died before it finished: the sweep sends one
    assert sent == [("finalize", "b1")]
    assert finalize_batch(rt, "b1") == BatchStatus.COMPLETED
    assert (tmp_path / "storage" / "b1" / "errors.jsonl").read_text().count("\n") == 2
    sent.clear()
    scheduler.sweep()
    assert sent == []  # completed: nothing more to send


def test_a_lease_is_renewed_while_its_holder_works_past_its_ttl(
        redis_url: str, tmp_path: Path) -> None:
    rt = runtime(redis_url, tmp_path, [])
    renewals = threading.Semaphore(0)
    ttl_s = 1.5
    with lease(rt, "work:x", ttl_s, renewed=renewals.release) as held:
        assert held
        for _ in range(7):  # the first at the start, then one every ttl/3: past 2 TTLs
            assert renewals.acquire(timeout=30)
        assert rt.store.locks.held("work:x")
        with lease(rt, "work:x", ttl_s) as second:
            assert not second  # still its holder's
    assert not rt.store.locks.held("work:x")
