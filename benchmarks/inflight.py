"""In-flight benchmark: memory of the worker, the scheduler and Redis per item running remotely.

    .venv/bin/python benchmarks/inflight.py [--items 100000] [--workers 2]

One run: a private Redis (AOF on), the simulator as its own process with very long
generations (nothing finishes), WORKERS genbatch workers and the scheduler with the in-flight
limit above ITEMS, rate limits off and the first poll far away. A batch of ITEMS rows is
submitted; at checkpoints (a quarter, half, all of ITEMS accepted by the simulator) the table
gets a row: items in flight (dispatched, submitting or submitted), tasks the simulator has
accepted, worker RSS (largest worker process), scheduler RSS, and Redis `used_memory` growth
since before the batch divided by ITEMS (every item record exists from ingest on; before the
last row this also holds the Celery messages of items dispatched but not yet submitted, so
the last row, with every item in flight, is the per-in-flight-item figure).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import KEY, MODEL, body, start, stop, wait_http  # noqa: E402

from genbatch.demo.redis_server import free_port, start_redis  # noqa: E402

SIM_PROFILE = {"time_factor": 1, "latency_mean_s": 1e7, "latency_sigma": 0,
               "queue_delay_s": 0, "request_log_size": 0, "url_ttl_s": 1e9}


def rss_mb(pid: int) -> float:
    """Resident set size of one process and its children (a prefork pool), in MB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from genbatch.producer.ingest import ingest_manifest
    from genbatch.storage import open_storage
    from genbatch.store import JobStore

    n = args.items
    checkpoints = sorted({max(1, n // 4), max(1, n // 2), n})
    table: list[tuple[int, int, float, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="genbatch-bench-") as tmp:
        folder = Path(tmp)
        redis = start_redis(folder / "redis")
        profile = folder / "sim.json"
        profile.write_text(json.dumps(SIM_PROFILE))
        port = free_port()
        sim_url = f"http://127.0.0.1:{port}"
        sim = start(["simulate", "--port", str(port), "--profile", str(profile)],
                    dict(os.environ), folder / "sim.log")
        procs = []
        try:
            wait_http(f"{sim_url}/_sim/stats")
            values = {
                "redis_url": redis.url, "storage_url": str(folder / "storage"),
                "novita_base_url": sim_url, "novita_api_key": KEY,
                "novita_max_in_flight": str(n + 1000), "novita_submit_rpm": "10000000",
                "novita_poll_rpm": "10000000", "first_poll_s": "1000000",
                "poll_min_interval_s": "1000000", "poll_max_interval_s": "1000000",
                "task_lease_s": "100000", "scheduler_tick_s": "0.1",
                "dispatch_batch_size": "500", "worker_concurrency": "8", "log_level": "WARNING",
            }
            env = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
            env.update({f"GENBATCH_{k.upper()}": v for k, v in values.items()})
            procs = [start(["worker", "--hostname", f"w{i}@%h"], env, folder / f"worker{i}.log")
                     for i in range(args.workers)]
            sched = start(["scheduler"], env, folder / "scheduler.log")
            procs.append(sched)
            store = JobStore.from_url(redis.url)
            manifest = folder / "items.jsonl"
            with manifest.open("w") as fh:
                for i in range(1, n + 1):
                    fh.write(json.dumps(body(i)) + "\n")
            time.sleep(3)
            base_mem = int(store.debug.client.info("memory")["used_memory"])
            idle = (max(rss_mb(p.pid) for p in procs[:-1]), rss_mb(sched.pid))
            table.append((0, 0, *idle, 0.0, 0.0))
            t0 = time.perf_counter()
            result = ingest_manifest(manifest, store=store,
                                     storage=open_storage(values["storage_url"]),
                                     provider="novita", model=MODEL)
            assert result.batch_id is not None
            for target in checkpoints:
                while True:
                    submits = int(httpx.get(f"{sim_url}/_sim/stats", timeout=30)
                                  .json()["submits"])
                    if submits >= target:
                        break
                    for p in [*procs, sim]:
                        if p.poll() is not None:
                            raise SystemExit(f"a process exited; see {folder}/*.log")
                    time.sleep(1)
                time.sleep(2)  # let the submits in progress land
                submits = int(httpx.get(f"{sim_url}/_sim/stats", timeout=30).json()["submits"])
                mem = int(store.debug.client.info("memory")["used_memory"])
                in_flight = store.queues.in_flight("novita")
                table.append((in_flight, submits, max(rss_mb(p.pid) for p in procs[:-1]),
                              rss_mb(sched.pid), (mem - base_mem) / n,
                              time.perf_counter() - t0))
                print(f"... {table[-1]}", file=sys.stderr, flush=True)
        finally:
            for p in procs:
                stop(p)
            stop(sim)
            redis.stop()
    print(f"{'in flight':>10}{'at provider':>12}{'worker RSS MB':>15}{'scheduler RSS MB':>18}"
          f"{'Redis B/item':>14}{'elapsed s':>11}")
    for in_flight, remote, w, s, per_item, secs in table:
        print(f"{in_flight:>10,}{remote:>12,}{w:>15.1f}{s:>18.1f}{per_item:>14,.0f}{secs:>11.0f}")


if __name__ == "__main__":
    main()
