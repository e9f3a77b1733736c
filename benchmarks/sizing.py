"""Sizing benchmark: what one item costs Redis and the workers, and what that makes a fleet.

    .venv/bin/python benchmarks/sizing.py [--items 1000] [--workers 2] [--accounts 1,10,100]
                                          [--everysec]

One run per account count A: a private Redis (AOF on, appendfsync always), the simulator as
its own process (zero queue delay, ~1 ms generations, no limits), the scheduler and WORKERS
worker processes (GENBATCH_WORKER_CONCURRENCY threads each) with the novita provider split
into A accounts of an accounts file (rate limits off, each account's concurrency high). Then:

1. idle: for IDLE_S seconds with nothing to do, the Redis commands per second the processes
   make by themselves (scheduler ticks over every account, heartbeats, Celery's waits);
2. ingest: a batch of ITEMS rows (image URLs) is ingested: Redis commands, bytes in and out
   and `used_memory` growth per item;
3. run: from commit to `completed` (submit, poll, download into a folder, finalize): per item
   the Redis commands, bytes in and out, Redis main-thread CPU (INFO cpu; the thread that
   saturates: Redis runs commands on one core), the CPU of the worker and scheduler processes
   (/proc utime + stime of every process of their groups) and the provider requests
   (simulator stats); each also net of what the idle rate would have done over the run.

With --everysec, one more run (1 account) on a Redis with appendfsync everysec, side by side:
what the durable submit record (an fsync before every reply, worker/durable.py) costs.

Derived, printed after the table (every figure from this run's measurements):

- items/s one Redis carries = 1 / (Redis main-thread CPU s per item, net): one core at 100%
  (plan for half of it); beside the items/s measured on this machine, where two shared cores
  run everything, so the workers saturate before Redis does;
- worker processes per 1,000 items in flight: in flight an item is a hash and a timer in
  Redis, not a held process (the scheduler fires its polls); so workers scale with item
  throughput, X = 1000 / T items/s for generations of T seconds (Little's law), needing
  X x worker CPU per item cores (one process with thread pool uses one core at most) and
  X x requests per item x request time busy threads (THREADS per process), whichever is more.
  T and the request times are stated assumptions (REQUEST_S, DOWNLOAD_S), not measurements.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import MODEL, SIM_PROFILE, body, start, stop, wait_http  # noqa: E402

from genbatch.demo.redis_server import free_port, start_redis  # noqa: E402
from genbatch.models import BatchStatus, Counter  # noqa: E402
from genbatch.store import JobStore  # noqa: E402

THREADS = 8  # GENBATCH_WORKER_CONCURRENCY per worker process
IDLE_S = 5.0
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# Assumptions for the fleet sizing (real providers; the simulator answers in about a ms).
GENERATION_S = (60.0, 300.0)  # Seedance's typical time, and a slow or flex-tier one
REQUEST_S = 0.5  # one submit or poll round trip to a provider
DOWNLOAD_S = 3.0  # one video (a few MB) from the provider's CDN into storage


@dataclass
class Reading:
    """Cumulative counters at one moment."""

    at: float
    commands: int
    net_in: int
    net_out: int
    redis_cpu: float  # main thread, s
    memory: int  # used_memory, bytes
    cpu: dict[str, float] = field(default_factory=dict)  # process group -> CPU s
    rss: dict[str, float] = field(default_factory=dict)  # process group -> RSS MB
    calls: dict[str, int] = field(default_factory=dict)  # command -> calls (commandstats)


@dataclass
class Run:
    """Measurements of one account count."""

    accounts: int
    items: int
    idle: tuple[Reading, Reading]
    ingest: tuple[Reading, Reading]
    run: tuple[Reading, Reading]
    requests: int  # provider requests (submits + polls) and downloads, from the simulator


def group_usage(pgid: int) -> tuple[float, float]:
    """(utime + stime in seconds, RSS in MB) of the live processes of process group `pgid`."""
    ticks = pages = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after the command name
        if int(fields[2]) == pgid:  # field 5: pgrp
            ticks += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
            pages += int(fields[21])  # field 24: rss (pages)
    return ticks / TICKS, pages * PAGE / 2**20


def read(store: JobStore, groups: dict[str, int]) -> Reading:
    info = store.debug.client.info("everything")
    cpu = (float(info.get("used_cpu_sys_main_thread", info["used_cpu_sys"]))
           + float(info.get("used_cpu_user_main_thread", info["used_cpu_user"])))
    usage = {name: group_usage(pid) for name, pid in groups.items()}
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()
             if k.startswith("cmdstat_")}
    return Reading(time.perf_counter(), int(info["total_commands_processed"]),
                   int(info["total_net_input_bytes"]), int(info["total_net_output_bytes"]),
                   cpu, int(info["used_memory"]), {k: u[0] for k, u in usage.items()},
                   {k: u[1] for k, u in usage.items()}, calls)


def accounts_file(folder: Path, n: int, sim_url: str) -> Path:
    path = folder / "accounts.toml"
    path.write_text("".join(
        f'[nov-{i:03d}]\nprovider = "novita"\napi_key = "bench-key-{i}"\n'
        f'base_url = "{sim_url}"\nconcurrency = 2000\nsubmit_rpm = 10000000\n'
        f"poll_rpm = 10000000\n\n" for i in range(n)))
    return path


def settings_env(folder: Path, redis_url: str, sim_url: str, accounts: int) -> dict[str, str]:
    values = {
        "redis_url": redis_url, "storage_url": str(folder / "storage"),
        "accounts_file": str(accounts_file(folder, accounts, sim_url)),
        "novita_base_url": sim_url,  # videos come from the provider's own host here
        "time_factor": "1000", "first_poll_s": "1", "poll_min_interval_s": "1",
        "scheduler_tick_s": "0.1", "dispatch_batch_size": "1000",
        "worker_concurrency": str(THREADS), "log_level": "WARNING",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
    env.update({f"GENBATCH_{k.upper()}": v for k, v in values.items()})
    return env


def run_accounts(folder: Path, sim_url: str, items: int, workers: int, accounts: int,
                 fsync: str = "always") -> Run:
    from genbatch.producer.ingest import ingest_manifest
    from genbatch.storage import open_storage

    redis = start_redis(folder / "redis", fsync=fsync)
    env = settings_env(folder, redis.url, sim_url, accounts)
    manifest = folder / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(body(i)) + "\n" for i in range(1, items + 1)))
    procs = {f"worker{n}": start(["worker", "--hostname", f"w{n}@%h"], env,
                                 folder / f"worker{n}.log") for n in range(workers)}
    procs["scheduler"] = start(["scheduler"], env, folder / "scheduler.log")
    groups = {name: p.pid for name, p in procs.items()}  # each its own session and group
    store = JobStore.from_url(redis.url)
    try:
        time.sleep(6)  # workers connected, the scheduler leading
        quiet = read(store, groups)
        time.sleep(IDLE_S)
        idle = (quiet, read(store, groups))
        before = requests_made(sim_url)
        result = ingest_manifest(manifest, store=store,
                                 storage=open_storage(str(folder / "storage")),
                                 provider="novita", model=MODEL)
        ingested = read(store, groups)
        wait_completed(store, str(result.batch_id), procs, folder)
        done = read(store, groups)
        return Run(accounts, items, idle, (idle[1], ingested), (ingested, done),
                   requests_made(sim_url) - before)
    finally:
        for p in procs.values():
            stop(p)
        store.close()
        redis.stop()


def wait_completed(store: JobStore, batch_id: str,
                   procs: dict[str, subprocess.Popen[bytes]], folder: Path) -> None:
    while True:
        batch = store.batches.get(batch_id)
        if batch.status is BatchStatus.COMPLETED:
            if batch.count(Counter.SUCCEEDED) != batch.total:
                first = next(store.items.of_batch(batch_id, 1))
                raise SystemExit(f"only {batch.count(Counter.SUCCEEDED)} of {batch.total} "
                                 "succeeded;"
                                 f" the first: {first.error_code}: {first.error_message}")
            return
        if any(p.poll() is not None for p in procs.values()):
            raise SystemExit(f"a genbatch process exited; see {folder}/*.log")
        time.sleep(0.05)


def requests_made(sim_url: str) -> int:
    stats = httpx.get(f"{sim_url}/_sim/stats", timeout=10).json()
    return int(stats["submit_attempts"]) + int(stats["polls"]) + int(stats["downloads"])


@dataclass
class PerItem:
    """One run's figures per item (`net`: less what the idle rate did over the run)."""

    commands: float
    commands_net: float
    bytes_in: float
    bytes_out: float
    redis_cpu_us: float
    redis_cpu_us_net: float
    worker_cpu_ms: float
    scheduler_cpu_ms: float
    memory_ingest: float
    memory_done: float
    requests: float
    items_s: float
    idle_commands_s: float
    ingest_commands: float
    redis_busy: float  # share of one core Redis's main thread used during the run
    worker_rss_mb: float  # all worker processes at the end of the run, MB
    calls: dict[str, float]  # command -> calls per item over the run

    @classmethod
    def of(cls, r: Run) -> PerItem:
        (i0, i1), (g0, g1), (a, b) = r.idle, r.ingest, r.run
        n, idle_s, run_s = r.items, i1.at - i0.at, b.at - a.at
        idle_cmd = (i1.commands - i0.commands) / idle_s
        idle_cpu = (i1.redis_cpu - i0.redis_cpu) / idle_s
        workers = sum(b.cpu[k] - a.cpu[k] for k in b.cpu if k.startswith("worker"))
        return cls(
            (b.commands - a.commands) / n, (b.commands - a.commands - idle_cmd * run_s) / n,
            (b.net_in - a.net_in) / n, (b.net_out - a.net_out) / n,
            (b.redis_cpu - a.redis_cpu) / n * 1e6,
            (b.redis_cpu - a.redis_cpu - idle_cpu * run_s) / n * 1e6,
            workers / n * 1e3, (b.cpu["scheduler"] - a.cpu["scheduler"]) / n * 1e3,
            (g1.memory - g0.memory) / n, (b.memory - g0.memory) / n, r.requests / n,
            n / run_s, idle_cmd, (g1.commands - g0.commands) / n,
            (b.redis_cpu - a.redis_cpu) / run_s,
            sum(v for k, v in b.rss.items() if k.startswith("worker")),
            {c: (b.calls[c] - a.calls.get(c, 0)) / n for c in b.calls})


ROWS: tuple[tuple[str, str, str], ...] = (
    ("Redis commands per item (run)", "commands", "{:.1f}"),
    ("  net of the idle rate", "commands_net", "{:.1f}"),
    ("Redis commands per item (ingest)", "ingest_commands", "{:.2f}"),
    ("Redis bytes in per item", "bytes_in", "{:,.0f}"),
    ("Redis bytes out per item", "bytes_out", "{:,.0f}"),
    ("Redis memory per item, pending (B)", "memory_ingest", "{:,.0f}"),
    ("Redis memory per item, finished (B)", "memory_done", "{:,.0f}"),
    ("Redis main-thread CPU per item (us)", "redis_cpu_us", "{:.0f}"),
    ("  net of the idle rate (us)", "redis_cpu_us_net", "{:.0f}"),
    ("worker CPU per item (ms)", "worker_cpu_ms", "{:.2f}"),
    ("scheduler CPU per item (ms)", "scheduler_cpu_ms", "{:.2f}"),
    ("provider requests per item", "requests", "{:.2f}"),
    ("idle Redis commands per second", "idle_commands_s", "{:.0f}"),
    ("worker RSS, all worker processes (MB)", "worker_rss_mb", "{:.0f}"),
    ("items/s measured here", "items_s", "{:.1f}"),
    ("Redis busy during the run (one core)", "redis_busy", "{:.0%}"),
)


def print_table(per: dict[str, PerItem]) -> None:
    print(f"{'':<40}" + "".join(f"{label:>14}" for label in per))
    for label, attr, fmt in ROWS:
        print(f"{label:<40}" + "".join(f"{fmt.format(getattr(p, attr)):>14}"
                                       for p in per.values()))
    first = next(iter(per))
    for a, p in per.items():
        if a != first:
            base = per[first]
            print(f"ratio {a} / {first}: commands per item (net) "
                  f"{p.commands_net / base.commands_net:.2f}, Redis CPU per item (net) "
                  f"{p.redis_cpu_us_net / base.redis_cpu_us_net:.2f}, idle commands/s "
                  f"{p.idle_commands_s / base.idle_commands_s:.2f}")


def print_commands(per: dict[str, PerItem], top: int = 10) -> None:
    """The commands an item costs most of (calls per item, the first run's order)."""
    first = next(iter(per.values()))
    names = sorted(first.calls, key=lambda c: -first.calls[c])[:top]
    print(f"{'calls per item, by command':<40}" + "".join(f"{label:>14}" for label in per))
    for name in names:
        print(f"{'  ' + name:<40}" + "".join(f"{p.calls.get(name, 0.0):>14.1f}"
                                             for p in per.values()))


def print_derived(per: dict[str, PerItem]) -> None:
    for a, p in per.items():
        ceiling = 1e6 / max(p.redis_cpu_us_net, 1.0)
        print(f"{a}: one Redis carries ~{ceiling:,.0f} items/s at 100% of a core "
              f"(plan {ceiling / 2:,.0f}); measured here {p.items_s:.1f} items/s = "
              f"{p.items_s / ceiling:.1%} of that ceiling")
    p = next(iter(per.values()))
    busy_s = REQUEST_S * max(p.requests - 1, 0) + DOWNLOAD_S
    for t in GENERATION_S:
        rate = 1000 / t
        by_cpu = rate * p.worker_cpu_ms / 1e3
        by_threads = rate * busy_s / THREADS
        print(f"1,000 items in flight at {t:.0f} s per generation = {rate:.1f} items/s: "
              f"worker CPU {by_cpu:.2f} cores, busy threads {rate * busy_s:.0f} -> "
              f"{max(1, math.ceil(max(by_cpu, by_threads))):d} worker process(es) of "
              f"{THREADS} threads (requests {REQUEST_S} s, download {DOWNLOAD_S} s assumed)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--accounts", default="1,10,100")
    parser.add_argument("--everysec", action="store_true",
                        help="one more run, 1 account, Redis with appendfsync everysec")
    args = parser.parse_args()
    runs = [(int(a), "always") for a in args.accounts.split(",")]
    runs += [(1, "everysec")] if args.everysec else []
    per: dict[str, PerItem] = {}
    with tempfile.TemporaryDirectory(prefix="genbatch-sizing-") as tmp:
        folder = Path(tmp)
        profile = folder / "sim.json"
        profile.write_text(json.dumps(SIM_PROFILE))
        port = free_port()
        sim = start(["simulate", "--port", str(port), "--profile", str(profile)],
                    dict(os.environ), folder / "sim.log")
        sim_url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{sim_url}/_sim/stats")
            for a, fsync in runs:
                label = f"{a} acct" + ("s" if a > 1 else "") + (
                    "" if fsync == "always" else f", {fsync}")
                (folder / f"{a}-{fsync}").mkdir()
                per[label] = PerItem.of(run_accounts(folder / f"{a}-{fsync}", sim_url,
                                                     args.items, args.workers, a, fsync))
        finally:
            stop(sim)
    print(f"sizing: {args.items} items per run, {args.workers} workers x {THREADS} threads, "
          f"{os.cpu_count()} CPUs")
    print_table(per)
    print_commands(per)
    print_derived(per)


if __name__ == "__main__":
    main()
