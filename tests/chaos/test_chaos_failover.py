"""Chaos, failover phase: the batch runs on a primary with a replica and three Sentinels on
loopback (GENBATCH_REDIS_SENTINELS); mid-batch the primary is SIGKILLed. Workers, scheduler
and this test's own store carry on, without a restart, against the replica the Sentinels
promote. Nothing may be lost or paid twice; the summary line also says how long the batch
stood still: the seconds from the kill to the next completed item.

Same simulator faults as tests/chaos/test_chaos.py; its size is GENBATCH_CHAOS_JOBS / 3
(`make test`: 50 jobs; `make chaos`: 666).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from genbatch.demo.redis_sentinel import SentinelSet, start_sentinel_set
from genbatch.errors import StoreError
from genbatch.simulator import running_simulator
from tests.chaos.test_chaos import (
    JOBS,
    LEASE_S,
    NOT_CREATED,
    PROVIDERS,
    TIME_FACTOR,
    WINDOW,
    chaos_profile,
    manifest,
    read_jsonl,
    submits_per_item,
)
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration
FAILOVER_JOBS = max(30, JOBS // 3)
WORKERS = 2
KILL_AT = 0.3  # the share of the batch done when the primary dies
DONE = ("succeeded", "failed", "expired", "cancelled", "ambiguous")


class Failover:
    """Kills the primary once the batch is KILL_AT done; then times the standstill."""

    def __init__(self, cluster: Cluster, redis: SentinelSet, batch_id: str) -> None:
        self.cluster, self.redis, self.batch_id = cluster, redis, batch_id
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.killed_at: float | None = None
        self.promoted_s: float | None = None
        self.next_done_s: float | None = None
        self.thread = threading.Thread(target=self._run, name="failover", daemon=True)

    def done(self) -> int | None:
        try:
            batch = self.cluster.store.batches.get(self.batch_id)
        except StoreError:
            return None  # the primary is gone and no replica promoted yet
        return sum(int(batch.get(k) or 0) for k in DONE)

    def _run(self) -> None:
        try:
            while not self.stop.wait(0.2):
                before = self.done()
                if before is None or before < KILL_AT * FAILOVER_JOBS:
                    continue
                old = self.redis.primary_port()
                self.redis.kill_primary()
                self.killed_at = time.monotonic()
                self.redis.wait_promoted(old)
                self.promoted_s = time.monotonic() - self.killed_at
                self._time_next_done(before)
                return
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def _time_next_done(self, before: int) -> None:
        """Seconds from the kill until more items are done than were before it (writes the
        dead primary had not sent its replica may set the count back first)."""
        assert self.killed_at is not None
        while not self.stop.wait(0.1):
            now = self.done()
            if now is not None and now > before:
                self.next_done_s = time.monotonic() - self.killed_at
                return


def wait_completed(cluster: Cluster, failover: Failover, timeout: float) -> None:
    start = time.monotonic()
    deadline, report = start + timeout, start + 10
    while time.monotonic() < deadline:
        assert not failover.errors, failover.errors
        if time.monotonic() > report:
            report += 10
            print(f"  {time.monotonic() - start:.0f}s done={failover.done()} "
                  f"killed={failover.killed_at is not None}", flush=True)
        try:
            if cluster.store.batches.get(failover.batch_id).get("status") == "completed":
                return
        except StoreError:
            pass  # failing over
        time.sleep(0.5)
    raise AssertionError(f"batch {failover.batch_id} did not complete in {timeout:.0f} s\n"
                         f"{cluster.log_tail('scheduler')}\n{cluster.log_tail('worker0')}")


def test_chaos_failover_nothing_lost_nothing_paid_twice(tmp_path: Path) -> None:
    redis = start_sentinel_set(tmp_path / "redis")
    try:
        with running_simulator(chaos_profile()) as sim_url:
            quotas = {f"{p}_{op}_rpm": "60000" for p, _ in PROVIDERS for op in ("submit", "poll")}
            cluster = Cluster(f"redis://127.0.0.1:{redis.primary_port()}/0", sim_url, tmp_path,
                              wavespeed_max_in_flight="20", time_factor=str(TIME_FACTOR),
                              task_lease_s=str(LEASE_S), log_level="WARNING", **WINDOW,
                              **redis.settings(), **quotas)
            for w in range(WORKERS):
                cluster.start_worker(f"worker{w}")
            cluster.start_scheduler()
            try:
                batch_id = str(cluster.submit(manifest(tmp_path, sim_url, FAILOVER_JOBS),
                                              provider=None, model=None).batch_id)
                failover = Failover(cluster, redis, batch_id)
                failover.thread.start()
                try:
                    wait_completed(cluster, failover, timeout=120 + FAILOVER_JOBS * 0.6)
                finally:
                    failover.stop.set()
                    failover.thread.join(60)
                for name, proc in cluster.procs.items():  # none needed a restart
                    assert proc.poll() is None, (name, cluster.log_tail(name))
                check(cluster, failover)
            finally:
                cluster.stop_all()
    finally:
        redis.stop()


def payer_figures(cluster: Cluster, batch_id: str) -> dict[str, Any]:
    """lost, paid_twice, paid_lost as tests/chaos/test_chaos.py counts them."""
    store = cluster.store
    batch = store.batches.get(batch_id)
    stats = cluster.sim_stats()
    results = read_jsonl(batch["results_jsonl"])
    errors = read_jsonl(batch["errors_jsonl"])
    expected = {f"chaos-{i:05d}" for i in range(FAILOVER_JOBS)}
    placed = Counter([r["custom_id"] for r in results] + [e["custom_id"] for e in errors])
    twice_placed = sum(1 for n in placed.values() if n > 1)
    duplicates = sum(n - 1 for n in stats["submits_by_fingerprint"].values() if n > 1)
    posts, _ = submits_per_item(stats["request_log"])
    items = {it["custom_id"]: it for it in store.items.of_batch(batch_id, int(batch["total"]))}
    for cid, item in items.items():
        statuses = posts.get(cid, [])
        attempts, not_created = int(item.get("attempts") or 0), int(item.get("not_created") or 0)
        proven = 1 if item.get("reconciled") == "resubmitted" else 0
        unproven = [s for s in statuses[:-1] if s not in NOT_CREATED]
        if len(statuses) > attempts or attempts > not_created + proven + 1 \
                or len(unproven) > proven:
            duplicates += 1
    stored = {r["remote_task_id"] for r in results}
    owner = {it["remote_id"] for it in items.values() if it.get("remote_id")}
    paid_lost = [t for t in stats["videos"] if t not in stored and t in owner]
    codes = Counter(f"{e['status']}/{e['error_code']}" for e in errors)
    return {"succeeded": len(results), "errors": len(errors),
            "error_codes": ",".join(f"{k}:{v}" for k, v in codes.most_common()) or "-",
            "lost": len(expected - set(placed)) + twice_placed, "paid_lost": len(paid_lost),
            "paid_twice": duplicates,
            "ambiguous": sum(1 for e in errors if e["status"] == "ambiguous")}


def check(cluster: Cluster, failover: Failover) -> None:
    assert failover.killed_at is not None, "the primary was never killed"
    figures = payer_figures(cluster, failover.batch_id)
    promoted = f"{failover.promoted_s:.1f}" if failover.promoted_s is not None else "-"
    next_done = f"{failover.next_done_s:.1f}" if failover.next_done_s is not None else "-"
    summary = (f"chaos-failover: jobs={FAILOVER_JOBS} "
               + " ".join(f"{k}={v}" for k, v in figures.items())
               + f" promoted_after_s={promoted} kill_to_next_completed_s={next_done}")
    print("\n" + summary)
    path = os.environ.get("GENBATCH_CHAOS_SUMMARY")
    if path:
        with Path(path).open("a", encoding="utf-8") as fh:
            fh.write(summary + "\n")
    assert figures["lost"] == 0 and figures["paid_lost"] == 0, summary
    assert figures["paid_twice"] == 0, summary
    assert failover.next_done_s is not None, summary
