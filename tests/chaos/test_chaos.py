"""Chaos run: a batch through the simulator with injected provider faults, while worker
processes are SIGKILLed and replaced every few seconds, the scheduler is SIGKILLed once and
Redis (AOF on) is restarted once. Nothing may be lost, paid twice or silently resubmitted.

Redis starts with `appendfsync everysec`: while submits are in full swing the machine loses
power and the AOF its last second (`powerloss:` in the summary line: records rewound,
claims cut, paid twice on WaveSpeed/BytePlus, items flagged possibly paid twice, duplicates
not flagged); it comes back with `appendfsync always` for the rest of the run.

`GENBATCH_CHAOS_JOBS` sets the size (`make test`: 150; `make chaos`: 2000).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import redis

from genbatch.demo.redis_server import RedisServer, start_redis
from genbatch.models import ItemState
from genbatch.simulator import SimProfile, running_simulator
from genbatch.store import JobStore
from tests.integration.cluster import Cluster
from tests.integration.test_webhooks import hooked_cluster

pytestmark = pytest.mark.integration
JOBS = int(os.environ.get("GENBATCH_CHAOS_JOBS", "150"))
WORKERS = 2
KILL_EVERY_S = 4.0
LEASE_S = 8.0  # a message lost with a killed worker is re-sent after this many seconds
TIME_FACTOR = 10.0  # 60 simulated seconds of URL life = 6 s real: longer than a restart
STORAGE_OUTAGE_S = 15.0  # longer than a URL lives: a stored video needs a fresh URL after
PROVIDERS = [("novita", "seedance-v1.5-pro-i2v"), ("byteplus", "seedance-v1.5-pro-i2v"),
             ("highwayapi", "seedance-v1.5-pro-i2v"), ("novita", "seedance-v1-lite-i2v"),
             ("wavespeed", "seedance-v1.5-pro-i2v")]
ID = re.compile(r"chaos-\d{5}")
# POSTs that only read (WaveSpeed's prediction history, reconciliation) or upload inputs
READS = ("/_sim/", "/api/v3/predictions", "/api/v3/media/upload")
NOT_CREATED = {429}  # answers that provably created nothing (all 4xx would be too)
LOST_S = 1.0  # what a power cut takes from an `appendfsync everysec` AOF
LISTED = ("wavespeed", "byteplus")  # providers with a task list: never paid twice
# The batch waits for an ambiguous item until its reconciliation window closes: 30 s real.
WINDOW = {"reconcile_deadline_s": "300"}


def chaos_profile() -> SimProfile:
    return SimProfile.model_validate({
        "time_factor": TIME_FACTOR, "latency_mean_s": 20.0, "latency_sigma": 0.4,
        "queue_delay_s": 2.0, "seed": 7,
        "p_429": 0.05, "p_5xx": 0.02, "p_submit_timeout": 0.01, "submit_timeout_mode": "drop",
        "p_malformed": 0.01,
        "request_log_size": JOBS * 40, "request_log_body_chars": 4096,
        # Presigned output URLs lapse in a minute (their fresh ones are asked for); WaveSpeed
        # keeps its outputs as long as it documents (7 days, scaled by the time factor).
        "keys": {"test-highwayapi-key": {"provider": "highwayapi", "url_ttl_s": 60.0},
                 "test-novita-key": {"url_ttl_s": 60.0},
                 "test-byteplus-key": {"url_ttl_s": 60.0}},
    })


def manifest(folder: Path, sim_url: str, n: int) -> Path:
    image = f"{sim_url}/_sim/assets/landscape.png"
    lines = []
    for i in range(n):
        provider, model = PROVIDERS[i % len(PROVIDERS)]
        lines.append(json.dumps({
            "custom_id": f"chaos-{i:05d}", "provider": provider, "model": model,
            "prompt": f"chaos-{i:05d} product shot", "image": image, "resolution": "480p",
            "duration": 5, "seed": i}))
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_jsonl(uri: str) -> list[dict[str, Any]]:
    text = Path(urlparse(uri).path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line]


class Chaos:
    """Kills and restarts parts of the cluster from a background thread."""

    def __init__(self, cluster: Cluster, redis_dir: Path, server: RedisServer,
                 batch_id: str) -> None:
        self.cluster, self.redis_dir, self.server = cluster, redis_dir, server
        self.batch_id = batch_id
        self.stop = threading.Event()
        self.kills: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()  # guards cluster.procs against the waiting thread
        self.thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.outage = threading.Thread(target=self._storage_outage, args=(STORAGE_OUTAGE_S,),
                                       name="storage-outage", daemon=True)
        self.workers = 0
        self.torn_bytes = 0
        self.rewound = self.claims_cut = 0  # what the everysec power loss took back
        self.cut_bytes = 0
        self.snapshots: deque[tuple[float, dict[Path, bytes]]] = deque()
        self.snapper = threading.Thread(target=self._snap, name="aof-snapshots", daemon=True)
        self.then = "always"  # the fsync Redis comes back with after the everysec power loss

    def done_fraction(self) -> float:
        try:
            batch = self.cluster.store.batches.get(self.batch_id)
        except redis.RedisError:
            return 0.0
        done = sum(int(batch.get(k) or 0)
                   for k in ("succeeded", "failed", "expired", "cancelled", "ambiguous"))
        return done / JOBS

    def _run(self) -> None:
        try:
            scheduler_killed = redis_restarted = power_lost = False
            self.snapper.start()
            while not self.stop.wait(KILL_EVERY_S):
                with self.lock:
                    name = next(n for n in self.cluster.procs if n.startswith("worker"))
                    self.cluster.stop(name, signal.SIGKILL)  # the oldest
                    self.kills["worker"] += 1
                    self.workers += 1
                    self.cluster.start_worker(f"worker{self.workers + WORKERS - 1}")
                done = self.done_fraction()
                if not self.kills["storage"] and done >= 0.05:  # alongside what follows
                    self.outage.start()
                if not scheduler_killed and done >= 0.2:
                    with self.lock:
                        self.cluster.stop("scheduler", signal.SIGKILL)
                        self.kills["scheduler"] += 1
                        self.cluster.start_scheduler()
                    scheduler_killed = True
                elif scheduler_killed and not redis_restarted and done >= 0.4:
                    self.server.kill()  # SIGKILL: only what reached the AOF survives
                    time.sleep(1.0)
                    self.server = start_redis(self.redis_dir, self.server.port)
                    self.kills["redis"] += 1
                    redis_restarted = True
                elif redis_restarted and not power_lost and done >= 0.6:
                    self._power_loss()
                    power_lost = True

        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


    def attempts(self) -> int:
        """Submit attempts begun, over all items."""
        try:
            return sum(int(r.get("attempts") or 0) for r in self._records().values())
        except redis.RedisError:
            return 0

    def _snap(self, trigger: float = 0.25) -> None:
        """Copies of the AOF every 0.1 s (the last few seconds'); the everysec power loss
        once `trigger` of the items have begun a submit, the moment another one begins
        (submits in full swing)."""
        seen = 0
        try:
            while not self.stop.wait(0.1) and not self.kills["power_everysec"]:
                begun = self.attempts()
                if begun > seen >= trigger * JOBS and len(self.snapshots) > 20:
                    self._power_loss_everysec(self.then)
                    return
                seen = begun
                self._snap_once()
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def _snap_once(self) -> None:
        taken = time.monotonic()
        files = {f: f.read_bytes() for f in self.redis_dir.glob("appendonly*") if f.is_file()}
        files |= {f: f.read_bytes() for f in self.redis_dir.glob("appendonlydir/*")}
        with self.lock:
            self.snapshots.append((taken, files))
            while self.snapshots and self.snapshots[0][0] < taken - 5 * LOST_S:
                self.snapshots.popleft()

    def _records(self) -> dict[str, dict[str, str]]:
        store = self.cluster.store
        total = store.batches.get(self.batch_id).total
        return {it.id: dict(it) for it in store.items.of_batch(self.batch_id, total)}

    def _power_loss_everysec(self, then: str = "always") -> None:
        """The machine loses power with Redis at `appendfsync everysec`: everything dies at
        once and the AOF is what it was LOST_S earlier; Redis comes back with `then`."""
        with self.lock:
            before = self._records()
            self.server.kill()
            cut = time.monotonic() - LOST_S  # the disk holds what Redis had a second ago
            for name in list(self.cluster.procs):
                self.cluster.stop(name, signal.SIGKILL)
            _, files = next(s for s in reversed(self.snapshots) if s[0] <= cut)
            current = sum(f.stat().st_size for f in self.redis_dir.glob("appendonly*")
                          if f.is_file())
            self.cut_bytes = current - sum(len(data) for data in files.values())
            for f in list(self.redis_dir.glob("appendonly*")) + list(
                    self.redis_dir.glob("appendonlydir/*")):
                if f.is_file():
                    f.unlink()
            for f, data in files.items():
                f.write_bytes(data)
            self.kills["power_everysec"] += 1
            self.server = start_redis(self.redis_dir, self.server.port, fsync=then)
            after = self._records()
            self.rewound = sum(1 for iid, rec in before.items() if after.get(iid) != rec)
            self.claims_cut = sum(1 for iid, rec in before.items() if int(
                (after.get(iid) or {}).get("attempts") or 0) < int(rec.get("attempts") or 0))
            for _ in range(WORKERS):
                self.workers += 1
                self.cluster.start_worker(f"worker{self.workers + WORKERS - 1}")
            self.cluster.start_scheduler()

    def _power_loss(self) -> None:
        """The machine loses power: Redis, every worker and the scheduler die at the same
        instant, and the AOF's last write is torn (with `appendfsync always` Redis answers a
        write only once it is on disk, so power can cut only a write not yet answered);
        then everything starts again."""
        with self.lock:
            self.server.kill()
            for name in list(self.cluster.procs):
                self.cluster.stop(name, signal.SIGKILL)
            self.torn_bytes = tear_last_write(self.redis_dir)
            self.kills["power"] += 1
            self.server = start_redis(self.redis_dir, self.server.port)
            for _ in range(WORKERS):
                self.workers += 1
                self.cluster.start_worker(f"worker{self.workers + WORKERS - 1}")
            self.cluster.start_scheduler()

    def _storage_outage(self, seconds: float) -> None:
        """The storage folder is gone for `seconds` (moved away, a file in its place: every
        write fails, as on a lost mount), then back as it was; kills go on meanwhile."""
        storage = Path(self.cluster.settings.storage_url)
        away = storage.with_name("storage-away")
        storage.rename(away)
        storage.write_text("not a folder")
        self.kills["storage"] += 1
        try:
            time.sleep(seconds)
        finally:
            storage.unlink()
            away.rename(storage)


def tear_last_write(redis_dir: Path) -> int:
    """Cut the AOF inside its last command, as a power loss mid-write leaves it (Redis loads
    such a file up to its last whole command: `aof-load-truncated yes`, the default); the
    number of bytes cut."""
    files = sorted(redis_dir.glob("appendonlydir/*.incr.aof"), key=lambda f: f.stat().st_mtime)
    aof = files[-1] if files else redis_dir / "appendonly.aof"
    data = aof.read_bytes()
    last = data.rfind(b"\r\n*", 0, len(data) - 2) + 2  # where the last command begins
    if last < 2:
        return 0
    keep = random.Random(len(data)).randrange(last + 1, len(data))
    with aof.open("r+b") as fh:
        fh.truncate(keep)
    return len(data) - keep


def wait_completed(cluster: Cluster, chaos: Chaos, batch_id: str, timeout: float) -> None:
    start = time.monotonic()
    deadline, report = start + timeout, start + 10
    while time.monotonic() < deadline:
        assert not chaos.errors, chaos.errors
        if time.monotonic() > report:
            report += 10
            print(f"  {time.monotonic() - start:.0f}s done={chaos.done_fraction():.0%} "
                  f"kills={dict(chaos.kills)}", flush=True)
        try:
            if cluster.store.batches.get(batch_id).get("status") == "completed":
                return
        except redis.RedisError:
            pass  # Redis is being restarted
        time.sleep(0.5)
    raise AssertionError(f"batch {batch_id} did not complete in {timeout:.0f} s: "
                         f"{cluster.store.batches.get(batch_id)}\n{cluster.log_tail('scheduler')}")


def submits_per_item(log: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], list[Any]]:
    """custom_id → the statuses of its submit requests, in the order they arrived; and the
    statuses of requests refused before their body was read (429/5xx injected up front)."""
    found: dict[str, list[Any]] = defaultdict(list)
    unread: list[Any] = []
    for entry in log:
        if entry["method"] != "POST" or entry["path"].startswith(READS):
            continue
        match = ID.search(entry["body"])
        if match:
            found[match.group()].append(entry["status"])
        else:
            unread.append(entry["status"])
    return found, unread


def test_chaos_nothing_lost_nothing_paid_twice(tmp_path: Path) -> None:
    redis_dir = tmp_path / "redis"
    server = start_redis(redis_dir, fsync="everysec")  # `always` after its power loss
    chaos: Chaos | None = None
    try:
        with running_simulator(chaos_profile()) as sim_url:
            # The simulator has no RPM limit: lift ours too, so faults and kills are tested,
            # not quotas (a 2-per-minute WaveSpeed budget alone would take hours).
            quotas = {f"{p}_{op}_rpm": "60000" for p, _ in PROVIDERS for op in ("submit", "poll")}
            cluster = Cluster(server.url, sim_url, tmp_path, wavespeed_max_in_flight="20",
                              time_factor=str(TIME_FACTOR), task_lease_s=str(LEASE_S),
                              log_level="WARNING", **WINDOW, **quotas)
            for w in range(WORKERS):
                cluster.start_worker(f"worker{w}")
            cluster.start_scheduler()
            try:
                batch_id = str(cluster.submit(manifest(tmp_path, sim_url, JOBS),
                                              provider=None, model=None).batch_id)
                chaos = Chaos(cluster, redis_dir, server, batch_id)
                chaos.thread.start()
                try:
                    wait_completed(cluster, chaos, batch_id, timeout=120 + JOBS * 0.6)
                finally:
                    chaos.stop.set()
                    chaos.thread.join(60)
                    chaos.snapper.join(10)
                    if chaos.outage.is_alive():
                        chaos.outage.join(60)
                check(cluster, chaos, batch_id)
            finally:
                cluster.stop_all()
    finally:
        (chaos.server if chaos else server).stop()  # the one running after its restarts


def check(cluster: Cluster, chaos: Chaos, batch_id: str) -> None:
    store = JobStore.from_url(chaos.server.url)
    batch = store.batches.get(batch_id)
    stats = cluster.sim_stats()
    results = read_jsonl(batch["results_jsonl"])
    errors = read_jsonl(batch["errors_jsonl"])
    expected = {f"chaos-{i:05d}" for i in range(JOBS)}

    # Every manifest line ends in exactly one of results / errors.
    placed = Counter([r["custom_id"] for r in results] + [e["custom_id"] for e in errors])
    lost = len(expected - set(placed))
    twice = sum(1 for n in placed.values() if n > 1)
    assert set(placed) == expected and twice == 0, (lost, twice)

    # Stored bytes are what the simulator produced.
    videos = stats["videos"]
    for r in results:
        stored = Path(urlparse(str(r["output_uri"])).path).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == r["sha256"] == videos[r["remote_task_id"]]

    # Exactly one created task per request; none created twice.
    created = stats["submits_by_fingerprint"]
    duplicates = sum(n - 1 for n in created.values() if n > 1)

    # Per item: no request the item did not record an attempt for, and nothing sent after
    # a submit whose outcome was unknown (only a provable "not created" may be retried).
    log = stats["request_log"]
    assert len(log) < JOBS * 40, "request log overflowed; raise request_log_size"
    posts, unread = submits_per_item(log)
    # A request refused before its body was read created nothing (and names no item).
    assert all(s == 429 or (isinstance(s, int) and s >= 500) for s in unread), Counter(unread)
    items = {it["custom_id"]: it for it in store.items.of_batch(batch_id, int(batch["total"]))}
    assert sum(map(len, posts.values())) + len(unread) <= sum(
        int(it.get("attempts") or 0) for it in items.values())
    resubmitted = []
    for cid, item in items.items():
        statuses = posts.get(cid, [])
        attempts, not_created = int(item.get("attempts") or 0), int(item.get("not_created") or 0)
        # an attempt the provider's task list proved created nothing (reconciliation)
        proven = 1 if item.get("reconciled") == "resubmitted" else 0
        # Every request is recorded as an attempt before it is sent ...
        assert len(statuses) <= attempts, (cid, statuses, item)
        # ... and only an attempt that provably created nothing is ever followed by another.
        unproven = [s for s in statuses[:-1] if s not in NOT_CREATED]
        if attempts > not_created + proven + 1 or len(unproven) > proven:
            resubmitted.append((cid, statuses, item.get("state")))
    duplicates += len(resubmitted)

    # Ambiguous outcomes are reported as such.
    ambiguous = [e for e in errors if e["status"] == "ambiguous"]
    for cid, statuses in posts.items():
        if statuses[-1] not in NOT_CREATED and statuses[-1] != 200:
            # ... unless reconciliation found its task in the provider's list (adopted)
            assert items[cid]["state"] in ("ambiguous", "failed") or items[cid].get(
                "adopted"), (cid, statuses, items[cid])
    assert created and len(created) >= len(results)

    # Counters equal a recount of the item records.
    recount = store.batches.recount(batch_id)
    assert recount == {k: int(v) for k, v in batch.items() if k in recount}

    # What matters to the payer: a succeeded task owned by an item whose video was never
    # stored though the provider still serves it (every provider here still has every
    # video: presigned URLs are signed afresh, WaveSpeed keeps outputs for days), and
    # ambiguous items left unresolved — each on a provider without a task list, or with
    # several candidates, or a list that could not be read at the end.
    stored_tasks = {r["remote_task_id"] for r in results}
    owner = {it["remote_id"]: it for it in items.values() if it.get("remote_id")}
    paid_lost = [t for t in videos if t not in stored_tasks and t in owner]
    unresolved = [it for it in items.values() if it["state"] == "ambiguous"]
    for it in unresolved:
        assert it["provider"] in ("novita", "highwayapi") or any(
            words in it.get("error_message", "") for words in (
                "unowned tasks of this model", "could not be read", "does not yet cover",
                "no task found again", "could also be that of")), it

    faults = (stats["responses_429"] + stats["responses_5xx"] + stats["malformed"]
              + stats["submit_timeouts"] + stats["downloads_refused"])
    codes = Counter(f"{e['status']}/{e['error_code']}" for e in errors)
    summary = (f"chaos: jobs={JOBS} succeeded={len(results)} errors={len(errors)} "
               f"({' '.join(f'{k}={v}' for k, v in codes.most_common())}) "
               f"faults={faults} (429={stats['responses_429']} 5xx={stats['responses_5xx']} "
               f"malformed={stats['malformed']} submit_timeouts={stats['submit_timeouts']} "
               f"expired_urls={stats['downloads_refused']}) "
               f"kills={sum(chaos.kills.values())} (worker={chaos.kills['worker']} "
               f"scheduler={chaos.kills['scheduler']} redis_restarts={chaos.kills['redis']} "
               f"storage_outages={chaos.kills['storage']} power_losses={chaos.kills['power']}) "
               f"lost={lost} duplicates={duplicates} ambiguous={len(ambiguous)} "
               f"adopted={batch.get('adopted') or 0} "
               f"reconciled_resubmits={batch.get('reconciled_resubmits') or 0} "
               f"paid_lost={len(paid_lost)} paid_twice={duplicates} "
               f"ambiguous_unresolved={len(unresolved)}")
    summary += " " + power_loss_figures(store, chaos, items, resubmitted)
    print("\n" + summary)
    Path(os.environ.get("GENBATCH_CHAOS_SUMMARY", os.devnull)).write_text(summary + "\n")
    assert duplicates == 0, resubmitted[:10]
    assert not paid_lost, [(t, owner[t].get("state"), owner[t].get("error_code"))
                           for t in paid_lost[:10]]
    assert chaos.kills["scheduler"] == 1 and chaos.kills["redis"] == 1
    assert chaos.kills["storage"] == 1 and chaos.kills["power"] == 1
    assert chaos.kills["power_everysec"] == 1 and chaos.rewound > 0, chaos.cut_bytes
    store.close()


def power_loss_figures(store: JobStore, chaos: Chaos, items: Mapping[str, Mapping[str, str]],
                       resubmitted: list[tuple[str, list[Any], Any]]) -> str:
    """The everysec power loss's line: 0 paid twice on providers with a task list, and every
    item paid twice elsewhere flagged `possibly_paid_twice`."""
    flagged = {cid for cid, it in items.items() if it.get("possibly_paid_twice")}
    twice = [cid for cid, _, _ in resubmitted]
    listed = [cid for cid in twice if items[cid].get("provider") in LISTED]
    unflagged = [cid for cid in twice if cid not in listed and cid not in flagged]
    last = store.restarts.last()
    assert last is not None, "no Redis restart was seen"
    assert not listed and not unflagged, (listed, unflagged)
    return (f"powerloss: fsync=everysec lost_s={LOST_S:g} rewound={chaos.rewound} "
            f"claims_cut={chaos.claims_cut} paid_twice_ws_bp={len(listed)} "
            f"flagged={len(flagged)} unflagged_dup={len(unflagged)} "
            f"restarts_seen={last.epoch}")


UNGUARDED_JOBS = 40


def test_chaos_power_loss_unguarded_flags_every_item_paid_twice(tmp_path: Path) -> None:
    """`everysec` with the worker's wait turned off (GENBATCH_FSYNC_WAIT_S=0: nothing guards a
    submit's record): a power loss while submits are in full swing makes items be paid
    twice, and every one of them must be flagged `possibly_paid_twice` (its own
    `powerloss_unguarded:` summary line)."""
    redis_dir = tmp_path / "redis"
    server = start_redis(redis_dir, fsync="everysec")
    chaos: Chaos | None = None
    profile = SimProfile.model_validate({"time_factor": TIME_FACTOR, "latency_mean_s": 20.0,
                                         "seed": 11, "request_log_size": 4000,
                                         "request_log_body_chars": 4096})
    try:
        with running_simulator(profile) as sim_url:
            quotas = {f"{p}_{op}_rpm": "60000" for p, _ in PROVIDERS for op in ("submit", "poll")}
            # a few generations at a time per provider: submits go on as slots free, so the
            # power loss falls among them
            caps = {f"{p}_max_in_flight": "4" for p, _ in PROVIDERS}
            cluster = Cluster(server.url, sim_url, tmp_path, time_factor=str(TIME_FACTOR),
                              task_lease_s=str(LEASE_S), log_level="WARNING",
                              fsync_wait_s="0", **quotas, **caps)
            try:
                for w in range(WORKERS):
                    cluster.start_worker(f"worker{w}")
                cluster.start_scheduler()
                cluster.wait_until(lambda: bool(cluster.store.restarts.run_id()) and len(
                    cluster.store.heartbeats.workers()) >= WORKERS, timeout=60,
                    what="the scheduler's note of the server, and the workers")
                time.sleep(2 * LOST_S)  # that note is older than what the power loss takes
                batch_id = str(cluster.submit(manifest(tmp_path, sim_url, UNGUARDED_JOBS),
                                              provider=None, model=None).batch_id)
                chaos = Chaos(cluster, redis_dir, server, batch_id)
                cut_when_half_sent(chaos)
                cluster.wait_until(lambda: cluster.store.batches.get(batch_id).get(
                    "status") == "completed", timeout=240, what="batch completed")
                line = unguarded_figures(cluster, chaos, batch_id)
            finally:
                cluster.stop_all()
    finally:
        (chaos.server if chaos else server).stop()
    print("\n" + line)
    with Path(os.environ.get("GENBATCH_CHAOS_SUMMARY", os.devnull)).open("a") as fh:
        fh.write(line + "\n")


def cut_when_half_sent(chaos: Chaos) -> None:
    """Snapshots of the AOF from the start; the power loss once half the rows began a
    submit; Redis comes back at `everysec`, the wait still off."""
    chaos.then = "everysec"
    chaos.snapper = threading.Thread(target=chaos._snap, args=(0.4 * UNGUARDED_JOBS / JOBS,),
                                     daemon=True)
    chaos.snapper.start()
    chaos.snapper.join(120)
    assert chaos.kills["power_everysec"] == 1, "the power loss did not happen"


def unguarded_figures(cluster: Cluster, chaos: Chaos, batch_id: str) -> str:
    store = cluster.store
    items = {it.custom_id: it for it in store.items.of_batch(batch_id, UNGUARDED_JOBS)}
    posts, _ = submits_per_item(cluster.sim_stats()["request_log"])
    twice = sorted(cid for cid, statuses in posts.items() if statuses.count(200) > 1)
    flagged = {cid for cid, it in items.items() if it.possibly_paid_twice}
    unflagged = [cid for cid in twice if cid not in flagged]
    last = store.restarts.last()
    assert last is not None and not last.covers, last
    assert chaos.rewound > 0, f"cut {chaos.cut_bytes} bytes, {len(chaos.snapshots)} snapshots"
    assert not unflagged, [(cid, posts[cid], dict(items[cid])) for cid in unflagged[:5]]
    return (f"powerloss_unguarded: jobs={UNGUARDED_JOBS} fsync=everysec wait=0 "
            f"lost_s={LOST_S:g} rewound={chaos.rewound} claims_cut={chaos.claims_cut} "
            f"paid_twice={len(twice)} flagged={len(flagged)} unflagged_dup={len(unflagged)}")
# -- phase: dropped submit answers, callbacks on ----------------------------------------
DROP_JOBS = max(20, JOBS // 10)
P_DROP = 0.3  # a submit's answer is lost after its task was created


def test_chaos_dropped_answers_settled_by_callbacks(tmp_path: Path) -> None:
    """Submit answers dropped after the task was created, with webhooks on: each attempt's
    own callback URL says whose task it is, so every ambiguous item adopts its task (by its
    callback, or from the task list where the provider has one) and nothing is paid twice
    or left ambiguous. The batch finishes only once they are settled."""
    server = start_redis(tmp_path / "redis")
    profile = {"time_factor": TIME_FACTOR, "latency_mean_s": 20.0, "latency_sigma": 0.4,
               "queue_delay_s": 2.0, "seed": 11, "p_submit_timeout": P_DROP,
               "submit_timeout_mode": "drop", "request_log_size": DROP_JOBS * 40}
    quotas = {f"{p}_{op}_rpm": "60000" for p, _ in PROVIDERS for op in ("submit", "poll")}
    try:
        with hooked_cluster(server.url, tmp_path, profile, time_factor=str(TIME_FACTOR),
                            log_level="WARNING", **quotas) as c:
            batch_id = str(c.submit(manifest(tmp_path, c.sim_url, DROP_JOBS),
                                    provider=None, model=None).batch_id)
            batch = c.wait_batch(batch_id, timeout=120 + DROP_JOBS * 2)
            figures = dropped_answer_figures(c, batch_id)
    finally:
        server.stop()
    line = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\nchaos dropped_answers: {line}")
    with Path(os.environ.get("GENBATCH_CHAOS_SUMMARY", os.devnull)).open("a") as out:
        out.write(f"dropped_answers: {line}\n")
    assert figures["n"] > 0, "no submit answer was dropped: raise P_DROP"
    assert figures["adopted_by_callback"] > 0, figures
    assert figures["adopted_by_callback"] + figures["adopted_by_list"] == figures["n"], figures
    assert figures["still_ambiguous"] == 0 and figures["paid_twice"] == 0, figures
    assert int(batch.get("succeeded") or 0) == DROP_JOBS


def dropped_answer_figures(c: Cluster, batch_id: str) -> dict[str, int]:
    """How the batch's dropped answers were settled, from the items and the simulator."""
    stats = c.sim_stats()
    items = list(c.store.items.of_batch(batch_id, DROP_JOBS))
    notes = [" ".join(str(e.get("note", "")) for e in item.history) for item in items]
    created = stats["submits_by_fingerprint"]
    return {
        "n": int(stats["submit_timeouts"]),
        "adopted_by_callback": sum("callback" in n for n in notes),
        "adopted_by_list": sum("task list" in n or "client id" in n for n in notes),
        "still_ambiguous": sum(item.state is ItemState.AMBIGUOUS for item in items),
        "paid_twice": sum(n - 1 for n in created.values() if n > 1),
    }
