"""Throughput benchmark: N jobs end to end through genbatch vs a plain asyncio + httpx script.

    .venv/bin/python benchmarks/throughput.py [--jobs 5000] [--workers 4]

One run: a private Redis (AOF on), the simulator as its own process (zero queue delay, ~1 ms
generations, no limits), genbatch's scheduler and WORKERS worker processes with the
in-flight and rate limits raised and GENBATCH_TIME_FACTOR high so no poll waits. A batch of
JOBS rows (novita, image URL) is ingested, then timed from commit to `completed` (submit,
poll, download into storage, finalize with results files). Then a plain script does the
same submit / poll / download to a folder against the same simulator, with as many requests
in flight as genbatch's workers have threads. Prints jobs/s of both and the ratio.

`--redis single,sentinel` (the default) runs genbatch twice: on one Redis, and on a primary
with a replica and three Sentinels (GENBATCH_REDIS_SENTINELS), where each submit's record
waits for the replica's acknowledgement (`WAIT`) before its POST: the cost of a submit that
survives a failover, printed as a ratio beside the single-Redis figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genbatch.demo.redis_sentinel import SentinelSet, start_sentinel_set  # noqa: E402
from genbatch.demo.redis_server import free_port, start_redis  # noqa: E402

MODEL = "seedance-v1.5-pro-i2v"
KEY = "bench-key"
THREADS = 8  # GENBATCH_WORKER_CONCURRENCY per worker process
SIM_PROFILE = {"time_factor": 1000, "latency_mean_s": 1, "latency_sigma": 0,
               "queue_delay_s": 0, "request_log_size": 0,
               "url_ttl_s": 1e9}


def body(i: int) -> dict[str, object]:
    return {"custom_id": f"job-{i:06d}", "prompt": f"Slow pan over product {i}",
            "image": f"https://cdn.example.com/p/{i}.png", "resolution": "480p",
            "ratio": "16:9", "duration": 5, "seed": i}


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "genbatch", *args], env=env,
                            stdin=subprocess.DEVNULL, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=log.parent)


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run_genbatch(folder: Path, sim_url: str, redis: dict[str, str], jobs: int,
                 workers: int) -> float:
    """Seconds from ingest to `completed`; `redis`: the GENBATCH_REDIS_* settings."""
    from genbatch.config import Settings
    from genbatch.producer.ingest import ingest_manifest
    from genbatch.storage import open_storage
    from genbatch.store import JobStore

    values = {
        **redis, "storage_url": str(folder / "storage"),
        "novita_base_url": sim_url, "novita_api_key": KEY,
        "novita_max_in_flight": "2000", "novita_submit_rpm": "10000000",
        "novita_poll_rpm": "10000000", "time_factor": "1000", "first_poll_s": "1",
        "poll_min_interval_s": "1", "scheduler_tick_s": "0.02", "dispatch_batch_size": "1000",
        "worker_concurrency": str(THREADS), "log_level": "WARNING",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
    env.update({f"GENBATCH_{k.upper()}": v for k, v in values.items()})
    manifest = folder / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(body(i)) + "\n" for i in range(1, jobs + 1)))
    procs = [start(["worker", "--hostname", f"w{n}@%h"], env, folder / f"worker{n}.log")
             for n in range(workers)]
    procs.append(start(["scheduler"], env, folder / "scheduler.log"))
    store = JobStore.from_target(Settings(**redis).redis_target())  # type: ignore[arg-type]
    try:
        time.sleep(5)  # let the workers connect before the clock starts
        t0 = time.perf_counter()
        result = ingest_manifest(manifest, store=store, storage=open_storage(values["storage_url"]),
                                 provider="novita", model=MODEL)
        assert result.batch_id is not None
        while True:
            batch = store.batches.get(result.batch_id)
            if batch["status"] == "completed":
                break
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(f"a genbatch process exited; see {folder}/*.log")
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        if int(batch["succeeded"]) != jobs:
            raise SystemExit(f"only {batch['succeeded']} of {jobs} succeeded: {batch}")
        return elapsed
    finally:
        for p in procs:
            stop(p)


async def plain_job(client: httpx.AsyncClient, sim_url: str, i: int, out: Path) -> None:
    row = body(i)
    req = {k: v for k, v in row.items() if k != "custom_id"}
    r = await client.post(f"{sim_url}/v3/async/{MODEL}", json=req)
    r.raise_for_status()
    task_id = r.json()["task_id"]
    while True:
        r = await client.get(f"{sim_url}/v3/async/task-result", params={"task_id": task_id})
        r.raise_for_status()
        answer = r.json()
        status = answer["task"]["status"]
        if status == "TASK_STATUS_SUCCEED":
            break
        if status == "TASK_STATUS_FAILED":
            raise RuntimeError(answer)
        await asyncio.sleep(0.001)
    async with client.stream("GET", answer["videos"][0]["video_url"]) as video:
        video.raise_for_status()
        with (out / f"{row['custom_id']}.mp4").open("wb") as fh:
            async for chunk in video.aiter_bytes():
                fh.write(chunk)


async def run_plain(folder: Path, sim_url: str, jobs: int, concurrency: int) -> float:
    out = folder / "plain"
    out.mkdir()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, limits=limits,
                                 timeout=60) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await plain_job(client, sim_url, i, out)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(1, jobs + 1)))
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--fsync", default="always",
                        help="Redis appendfsync modes to run genbatch with, comma-separated "
                        "(always,everysec: the cost of durable submit records side by side)")
    parser.add_argument("--redis", default="single,sentinel",
                        help="single: one Redis; sentinel: a primary, a replica and three "
                        "Sentinels, each submit record acknowledged by the replica")
    args = parser.parse_args()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="genbatch-bench-") as tmp:
        folder = Path(tmp)
        profile = folder / "sim.json"
        profile.write_text(json.dumps(SIM_PROFILE))
        port = free_port()
        sim = start(["simulate", "--port", str(port), "--profile", str(profile)], dict(os.environ),
                    folder / "sim.log")
        sim_url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{sim_url}/_sim/stats")
            for kind in args.redis.split(","):
                for fsync in args.fsync.split(","):
                    name = f"{kind}-{fsync}"
                    (folder / name).mkdir()
                    timings[name] = timed_run(folder / name, sim_url, kind, fsync, args)
            plain = asyncio.run(run_plain(folder, sim_url, args.jobs, THREADS * args.workers))
        finally:
            stop(sim)
    print(f"{'pipeline':<52}{'jobs':>7}{'seconds':>9}{'jobs/s':>9}")
    for name, gb in timings.items():
        label = f"genbatch ({args.workers}x{THREADS} threads, {name.replace('-', ', fsync ')})"
        print(f"{label:<52}{args.jobs:>7}{gb:>9.1f}{args.jobs / gb:>9.1f}")
    print(f"{'plain asyncio + httpx script':<52}{args.jobs:>7}{plain:>9.1f}"
          f"{args.jobs / plain:>9.1f}")
    for name, gb in timings.items():
        print(f"ratio genbatch ({name}) / plain: {plain / gb:.2f}")
        single = timings.get(name.replace("sentinel-", "single-"))
        if name.startswith("sentinel-") and single:
            print(f"ratio genbatch ({name}) / ({name.replace('sentinel-', 'single-')}), "
                  f"jobs/s: {single / gb:.2f}")


def timed_run(folder: Path, sim_url: str, kind: str, fsync: str,
              args: argparse.Namespace) -> float:
    """One genbatch run on a Redis of `kind` (single, sentinel) fsyncing `fsync`."""
    if kind == "single":
        redis = start_redis(folder / "redis", fsync=fsync)
        try:
            return run_genbatch(folder, sim_url, {"redis_url": redis.url}, args.jobs,
                                args.workers)
        finally:
            redis.stop()
    if fsync != "always":
        raise SystemExit("--redis sentinel runs with fsync always only")
    replicated = start_sentinel_set(folder / "redis")
    try:
        elapsed = run_genbatch(folder, sim_url, replicated.settings(), args.jobs, args.workers)
        print(f"sentinel: the primary answered {waits(replicated)} WAITs (one per submit "
              "record)")
        return elapsed
    finally:
        replicated.stop()


def waits(replicated: SentinelSet) -> int:
    """WAIT commands the primary has run (INFO commandstats)."""
    from genbatch.store import JobStore

    store = JobStore.from_target(replicated.target())
    stats = store.debug.client.info("commandstats").get("cmdstat_wait") or {}
    store.close()
    return int(stats.get("calls", 0))


if __name__ == "__main__":
    main()
