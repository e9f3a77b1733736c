"""Quota benchmark: how close to the provider's limits does each client finish N jobs?

One command, one table, every figure measured in this run against the loopback simulator
(WaveSpeed protocol, since the official SDK speaks only that). Each client gets a fresh
simulator with the same profile: `rpm` accepted submits per minute, `concurrency` tasks per
key (WaveSpeed queues tasks over it), lognormal generation time of mean `mean`; simulated
time runs `time_factor` times faster than the wall clock.

    lower bound = max(N / R, N * t_mean / C)      (simulated seconds)

Clients: genbatch (Redis, one worker and the scheduler as child processes), genbatch with
webhooks on (the same plus `genbatch webhooks`: the simulator calls back when a task ends and
polling drops to the safety cadence), genbatch polling with its in-flight cap `--ahead`
above C (WaveSpeed queues the surplus and starts it the instant a slot frees), the official
`wavespeed` SDK (`Client(base_url=...).run`, a pool of C threads, its 1 s poll interval
compressed by the same factor), and a plain asyncio + httpx submit/poll loop (C at a time,
1 s polls, 429 → retry in 1 s). Every client downloads each video.

    python benchmarks/quota.py [--jobs 300 --rpm 120 --concurrency 20 --mean 20 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from genbatch.simulator import SimProfile

MODEL_PATH = "bytedance/seedance-v1.5-pro/image-to-video"
KEY = "bench-key"


@dataclass
class Row:
    client: str
    makespan_s: float  # simulated seconds
    oracle_s: float  # the best any client could reach on this run's generation times
    done: int
    polls: int
    r429: int
    max_in_flight: int
    max_rpm: int
    note: str = ""


def profile(a: argparse.Namespace) -> SimProfile:
    return SimProfile.model_validate({
        "rpm": a.rpm, "concurrency": a.concurrency, "latency_mean_s": a.mean,
        "latency_sigma": a.sigma, "queue_delay_s": 0.0, "time_factor": a.time_factor,
        "seed": a.seed})


def sim_stats(url: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{url}/_sim/stats", timeout=10).json()
    return stats


def row_from(name: str, url: str, started: float, ended: float, done: int,
             a: argparse.Namespace, note: str = "") -> Row:
    s = sim_stats(url)

    def per_key(field: str) -> int:
        return max((v for acct in s[field].values() for v in acct.values()), default=0)

    return Row(name, (ended - started) * a.time_factor,
               oracle_makespan(s["run_seconds"], a.concurrency, a.rpm), done, s["polls"],
               s["responses_429"], per_key("max_in_flight"), per_key("max_submits_per_minute"),
               note)


def oracle_makespan(runs: list[float], concurrency: int, rpm: int) -> float:
    """The makespan of a client with no overhead at all that knows the instant each task
    ends: tasks in submit order, each started as soon as a slot is free and the sliding
    minute allows (the simulator's own rules), on the generation times this run drew."""
    slots = [0.0] * concurrency
    starts: list[float] = []
    end = 0.0
    for run in runs:
        start = heapq.heappop(slots)
        if starts:
            start = max(start, starts[-1])
        if len(starts) >= rpm:
            start = max(start, starts[-rpm] + 60.0)
        starts.append(start)
        end = max(end, start + run)
        heapq.heappush(slots, start + run)
    return end


def job_input(url: str, i: int) -> dict[str, Any]:
    return {"image": f"{url}/_sim/assets/landscape.png", "prompt": f"benchmark shot {i}",
            "duration": 5, "resolution": "480p", "seed": i}


# -- genbatch ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_genbatch(a: argparse.Namespace, url: str, workdir: Path, webhooks: bool = False,
                 ahead: int = 0) -> Row:
    """`ahead` > 0 sets genbatch's in-flight cap that many above the account's concurrency:
    WaveSpeed queues the surplus and starts it the instant a slot frees, so the lag between
    a generation ending and a poll seeing it no longer leaves the slot idle."""
    from genbatch.demo.redis_server import start_redis
    from genbatch.producer.ingest import ingest_manifest
    from genbatch.storage import open_storage
    from genbatch.store import JobStore

    redis = start_redis(workdir / "redis")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
    env.update({
        "GENBATCH_REDIS_URL": redis.url, "GENBATCH_STORAGE_URL": str(workdir / "storage"),
        "GENBATCH_WAVESPEED_BASE_URL": url, "GENBATCH_WAVESPEED_API_KEY": KEY,
        "GENBATCH_WAVESPEED_MAX_IN_FLIGHT": str(a.concurrency + ahead),
        "GENBATCH_WAVESPEED_SUBMIT_RPM": str(a.rpm),
        "GENBATCH_WAVESPEED_POLL_RPM": str(a.poll_rpm),
        "GENBATCH_TIME_FACTOR": str(a.time_factor), "GENBATCH_SCHEDULER_TICK_S": "0.05",
        "GENBATCH_WORKER_CONCURRENCY": str(a.concurrency + 8), "GENBATCH_LOG_LEVEL": "WARNING",
    })
    commands = [["worker", "--hostname", "bench@%h"], ["scheduler"]]
    hook_port = free_port()
    if webhooks:  # the simulator calls back; polling drops to the safety cadence
        env.update({"GENBATCH_WEBHOOK_BASE_URL": f"http://127.0.0.1:{hook_port}",
                    "GENBATCH_WEBHOOK_SECRET": "bench-webhook-secret-0123456789"})
        commands.append(["webhooks", "--port", str(hook_port)])
    name = "genbatch + webhooks" if webhooks else "genbatch"
    name += f", cap C+{ahead}" if ahead else ""
    workdir = workdir / ("genbatch" + ("-webhooks" if webhooks else "")
                         + (f"-ahead{ahead}" if ahead else ""))
    workdir.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        for what in commands:
            log = (workdir / f"{what[0]}.log").open("ab")
            procs.append(subprocess.Popen([sys.executable, "-m", "genbatch", *what], env=env,
                                          stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=workdir,
                                          start_new_session=True))
        manifest = workdir / "manifest.jsonl"
        manifest.write_text("".join(
            json.dumps({"custom_id": f"job-{i:05d}", **job_input(url, i)}) + "\n"
            for i in range(a.jobs)))
        store = JobStore.from_url(redis.url)
        time.sleep(3.0)  # let the worker connect before the clock starts
        httpx.post(f"{url}/_sim/reset", timeout=10)
        started = time.monotonic()
        batch_id = str(ingest_manifest(manifest, store=store,
                                       storage=open_storage(str(workdir / "storage")),
                                       provider="wavespeed", model="seedance-v1.5-pro-i2v"
                                       ).batch_id)
        ingested = time.monotonic()
        while store.get_batch(batch_id)["status"] != "completed":
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a genbatch process died; see " + str(workdir))
            time.sleep(0.02)
        ended = time.monotonic()
        done = int(store.get_batch(batch_id)["succeeded"])
        learned = store.r.hvals(store.k("gentime"))
        note = f"ingest {(ingested - started) * a.time_factor:.0f} s (included)"
        note += f"; learned t = {float(learned[0]):.1f} s" if learned else ""
        if os.environ.get("BENCH_DUMP"):
            items = [store.get_item(f"{batch_id}:{s}") for s in range(1, a.jobs + 1)]
            Path(os.environ["BENCH_DUMP"]).write_text(json.dumps(
                {"items": items, "batch": store.get_batch(batch_id), "t": [
                    time.time() - time.monotonic() + x for x in (started, ingested, ended)]}))
        return row_from(name, url, started, ended, done, a, note)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        redis.stop()


# -- the official wavespeed SDK ----------------------------------------------------------
def run_sdk(a: argparse.Namespace, url: str) -> Row:
    import wavespeed

    client = wavespeed.Client(api_key=KEY, base_url=url)
    downloads = httpx.Client(timeout=30)
    errors = 0
    lock = threading.Lock()

    def job(i: int) -> bool:
        nonlocal errors
        while True:
            try:
                out = client.run(MODEL_PATH, job_input(url, i),
                                 poll_interval=1.0 / a.time_factor)
                downloads.get(out["outputs"][0]).raise_for_status()
                return True
            except Exception:  # the SDK never retries a submit (a 429 raises): try again
                with lock:
                    errors += 1
                time.sleep(1.0 / a.time_factor)

    started = time.monotonic()
    with ThreadPoolExecutor(a.concurrency) as pool:
        done = sum(pool.map(job, range(a.jobs)))
    ended = time.monotonic()
    return row_from("wavespeed SDK (C threads)", url, started, ended, done, a,
                    f"{errors} raised" if errors else "")


# -- a plain asyncio + httpx loop ----------------------------------------------------------
def run_httpx(a: argparse.Namespace, url: str) -> Row:
    async def main() -> int:
        sem = asyncio.Semaphore(a.concurrency)
        headers = {"Authorization": f"Bearer {KEY}"}
        tick = 1.0 / a.time_factor
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30,
                                     limits=httpx.Limits(max_connections=64)) as http:
            async def job(i: int) -> int:
                async with sem:
                    while True:
                        resp = await http.post(f"/api/v3/{MODEL_PATH}", json=job_input(url, i))
                        if resp.status_code == 200:
                            break
                        await asyncio.sleep(tick)
                    task_id = resp.json()["data"]["id"]
                    while True:
                        await asyncio.sleep(tick)
                        r = await http.get(f"/api/v3/predictions/{task_id}/result")
                        if r.status_code != 200:
                            continue
                        data = r.json()["data"]
                        if data["status"] == "completed":
                            await http.get(data["outputs"][0])
                            return 1
                        if data["status"] == "failed":
                            return 0
            return sum(await asyncio.gather(*(job(i) for i in range(a.jobs))))

    started = time.monotonic()
    done = asyncio.run(main())
    ended = time.monotonic()
    return row_from("asyncio + httpx loop", url, started, ended, done, a)


@contextmanager
def simulator(a: argparse.Namespace) -> Iterator[str]:
    """A fresh simulator in its own process, so no client competes with it for the GIL."""
    with tempfile.TemporaryDirectory(prefix="genbatch-sim-") as tmp:
        path = Path(tmp) / "profile.json"
        path.write_text(profile(a).model_dump_json(exclude_defaults=True))
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "genbatch", "simulate", "--port",
                                 str(port), "--profile", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{url}/_sim/stats", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the simulator did not start") from None
                    time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def measure(name: str, a: argparse.Namespace, fn: Callable[[str], Row]) -> Row:
    print(f"running {name} ...", file=sys.stderr, flush=True)
    with simulator(a) as url:
        return fn(url)


CLIENTS = ("genbatch", "webhooks", "ahead", "sdk", "httpx")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=300)
    p.add_argument("--rpm", type=int, default=120)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--mean", type=float, default=20.0, help="mean generation time (s)")
    p.add_argument("--sigma", type=float, default=0.3, help="lognormal sigma")
    p.add_argument("--time-factor", type=float, default=10.0)
    p.add_argument("--poll-rpm", type=int, default=600, help="genbatch's poll budget")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ahead", type=int, default=10,
                   help="the 'ahead' client: genbatch polling with its in-flight cap this many "
                        "above C (WaveSpeed queues the surplus); 10 = C x 2 poll intervals / "
                        "t_mean, the slots that free while a poll is still to come")
    p.add_argument("--only", choices=list(CLIENTS), action="append")
    a = p.parse_args(argv)
    bound = max(a.jobs / a.rpm * 60.0, a.jobs * a.mean / a.concurrency)
    only = set(a.only or CLIENTS)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="genbatch-bench-") as tmp:
        if "genbatch" in only:
            rows.append(measure("genbatch", a, lambda u: run_genbatch(a, u, Path(tmp))))
        if "webhooks" in only:
            rows.append(measure("genbatch + webhooks", a,
                                lambda u: run_genbatch(a, u, Path(tmp), webhooks=True)))
        if "ahead" in only:
            rows.append(measure(f"genbatch, cap C+{a.ahead}", a,
                                lambda u: run_genbatch(a, u, Path(tmp), ahead=a.ahead)))
        if "sdk" in only:
            rows.append(measure("wavespeed SDK", a, lambda u: run_sdk(a, u)))
        if "httpx" in only:
            rows.append(measure("asyncio + httpx", a, lambda u: run_httpx(a, u)))
    print(f"N={a.jobs} jobs, R={a.rpm} submits/min, C={a.concurrency} concurrent, "
          f"lognormal t_mean={a.mean:g} s sigma={a.sigma:g}; simulated time "
          f"{a.time_factor:g}x faster than the wall clock (figures in simulated seconds); "
          f"lower bound max(N/R, N*t/C) = {bound:.0f} s")
    print("oracle = a client with no overhead that knows the instant each task ends, on the "
          "generation times this very run drew (its ÷ bound shows the tail the bound ignores)")
    print("| client | makespan s | ÷ bound | oracle s (÷ bound) | ÷ oracle | done | polls/job "
          "| 429s | max in flight | max submits/min | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.client} | {r.makespan_s:.0f} | {r.makespan_s / bound:.3f} | "
              f"{r.oracle_s:.0f} ({r.oracle_s / bound:.3f}) | "
              f"{r.makespan_s / max(r.oracle_s, 1e-9):.3f} | "
              f"{r.done}/{a.jobs} | {r.polls / max(r.done, 1):.2f} | {r.r429} | "
              f"{r.max_in_flight} | {r.max_rpm} | {r.note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
