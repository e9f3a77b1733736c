"""Quota benchmark: how close to the provider's limits does each client finish N jobs?

One command, one table, every figure measured in this run against the loopback simulator
(WaveSpeed protocol, since the official SDK speaks only that). Each client gets a fresh
simulator with the same profile: `rpm` accepted submits per minute, `concurrency` tasks per
key (WaveSpeed queues tasks over it), lognormal generation time of mean `mean`; simulated
time runs `time_factor` times faster than the wall clock.

    lower bound = max(N / R, N * t_mean / C)      (simulated seconds)

Clients: genbatch with its default settings (Redis, one worker and the scheduler as child
processes; polling, and queueing ahead: its in-flight cap runs up to
GENBATCH_QUEUE_AHEAD_MAX above C, sized from the learned generation time, and WaveSpeed
queues the surplus and starts it the instant a slot frees), genbatch with webhooks on (the
same plus `genbatch webhooks`: the simulator calls back when a task ends and polling drops
to the safety cadence), genbatch with queueing ahead off (cap = C: each slot idles from a
generation's end to the poll that sees it), genbatch with a fixed in-flight cap `--ahead`
above C (queueing ahead off), the official `wavespeed` SDK (`Client(base_url=...).run`, a
pool of C threads, its 1 s poll interval compressed by the same factor), and a plain
asyncio + httpx submit/poll loop (C at a time, 1 s polls, 429 → retry in 1 s). Every client
downloads each video.

Then genbatch (defaults) with an accounts file of three WaveSpeed accounts, three keys each
with the same R and C at the simulator (its limits are per key) and each with the one-key
rows' load (3 N jobs, `--account-jobs`; simulated time runs 3 x slower for them, so the
wall-clock load on the machine stays that of one key), against the combined quota

    bound of k keys = max(N / (k R), N * t_mean / (k C))

and the same run with one key refused for want of balance (`out_of_balance`, replaced into
the simulator's profile at runtime) once a third of the jobs were submitted; its bound is
the simplest honest one: all N jobs on the two remaining keys' quota. Per key, the table
shows the simulator's maxima (in flight, running, submits per simulated minute) against the
key's limits and says whether every key kept them.

Then the provider plugins' own limit semantics, each with genbatch's defaults against its
simulated protocol (the same profile, without `rpm`: none of them has a per-minute limit, so
their bound is N * t_mean / C): fal, whose queue never refuses (over the account's
concurrency a request waits IN_QUEUE, so queueing ahead applies), polled and with webhooks;
Runway, where a task over the concurrency waits THROTTLED at Runway (queueing ahead too);
and Kling, which queues nothing and refuses a submit over the concurrency with 1303 "slot
full" (SlotFull: the item goes back to genbatch's queue, no failure and no rate cut), with
genbatch told a concurrency `--kling-told` above the account's so it meets 1303 all along,
as when keys share an account; polled, and with Kling's callbacks (unsigned: each wakes its
item's poll at once).

    python benchmarks/quota.py [--jobs 300 --rpm 120 --concurrency 20 --mean 20 ...]
    python benchmarks/quota.py --only fal --only fal-webhooks --only runway --only kling
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from genbatch.simulator import SimProfile

MODEL_PATH = "bytedance/seedance-v1.5-pro/image-to-video"
KEY = "bench-key"
ACCOUNT_LETTERS = "abcdefgh"


def job_input(url: str, i: int) -> dict[str, Any]:
    return {"image": f"{url}/_sim/assets/landscape.png", "prompt": f"benchmark shot {i}",
            "duration": 5, "resolution": "480p", "seed": i}


def plain_input(url: str, i: int) -> dict[str, Any]:
    """A row for a model that takes no resolution or seed (fal's and Kling's Kling 2.1)."""
    return {"image": f"{url}/_sim/assets/landscape.png", "prompt": f"benchmark shot {i}",
            "duration": 5}


def runway_input(url: str, i: int) -> dict[str, Any]:
    return {**plain_input(url, i), "ratio": "16:9", "seed": i}


@dataclass(frozen=True)
class Protocol:
    """A provider as the benchmark drives genbatch through it at the simulator."""

    name: str  # genbatch's provider name, and the simulator's
    model: str
    prefix: str = ""  # where the simulator serves it
    key_setting: str = "api_key"
    settings: tuple[tuple[str, str], ...] = ()  # its plugin's own settings besides the key
    rpm_limited: bool = True  # a per-minute submit limit exists (the profile's `rpm`)
    row: Callable[[str, int], dict[str, Any]] = job_input

    def var(self, setting: str) -> str:
        return f"GENBATCH_{self.name.upper()}_{setting.upper()}"


WAVESPEED = Protocol("wavespeed", "seedance-v1.5-pro-i2v")
FAL = Protocol("fal", "kling-v2.1-std-i2v", "/fal", rpm_limited=False, row=plain_input)
RUNWAY = Protocol("runway", "gen4_turbo", "/runway", rpm_limited=False, row=runway_input)
# Kling signs a JWT per request with the access key and this secret (the simulator's).
KLING = Protocol("kling", "kling-v2-1", "/kling", key_setting="access_key",
                 settings=(("secret_key", "sim-kling-secret"),), rpm_limited=False,
                 row=plain_input)
UNLIMITED_RPM = 10**9


@dataclass(frozen=True)
class Key:
    """One API key at the simulator, as a client uses it."""

    api_key: str
    account: str  # genbatch's name for it (the provider's for the environment's key)
    cap: int  # the most tasks the client may ever hold in flight at it (queued + running)


@dataclass
class Row:
    client: str
    bound_s: float  # the lower bound of this row's quota (one key, or k keys combined)
    makespan_s: float  # simulated seconds
    oracle_s: float  # the best any client could reach on this run's generation times
    done: int
    polls: int
    r429: int
    keys: list[Key]
    max_in_flight: list[int]  # per key, from the simulator's stats
    max_running: list[int]
    max_rpm: list[int]
    over: list[str]  # the limits a key exceeded (empty: every key kept its own)
    note: str = ""
    jobs: int = 0  # N of this row (the accounts rows: --account-jobs)
    rpm_limited: bool = True  # the provider has a per-minute limit (R applies)


def profile(a: argparse.Namespace, api_keys: Sequence[str] | None = None,
            proto: Protocol = WAVESPEED) -> SimProfile:
    values: dict[str, Any] = {
        "rpm": a.rpm if proto.rpm_limited else None, "concurrency": a.concurrency,
        "latency_mean_s": a.mean,
        "latency_sigma": a.sigma, "queue_delay_s": 0.0, "time_factor": a.time_factor,
        "seed": a.seed}
    if api_keys:
        values["api_keys"] = list(api_keys)
    return SimProfile.model_validate(values)


def sim_stats(url: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{url}/_sim/stats", timeout=10).json()
    return stats


def bound_of(a: argparse.Namespace, keys: int, rpm_limited: bool = True) -> float:
    """max(N / (k R), N * t_mean / (k C)): the lower bound of k keys' combined quota (only
    N * t_mean / (k C) where no per-minute limit exists)."""
    jobs, rpm, mean, concurrency = int(a.jobs), int(a.rpm), float(a.mean), int(a.concurrency)
    by_rate = jobs / (keys * rpm) * 60.0 if rpm_limited else 0.0
    return max(by_rate, jobs * mean / (keys * concurrency))


def row_from(name: str, url: str, started: float, ended: float, done: int,
             a: argparse.Namespace, note: str = "", keys: Sequence[Key] | None = None,
             stops: dict[str, float] | None = None, bound_keys: int | None = None,
             proto: Protocol = WAVESPEED) -> Row:
    """The row of one run. `stops`: api key -> simulated second (from `started`) from which
    that key takes no new task (for the oracle); `bound_keys`: the keys the bound counts
    (default: all of `keys`)."""
    keys = list(keys or [Key(KEY, proto.name, a.concurrency)])
    s = sim_stats(url)
    rpm_limit = a.rpm if proto.rpm_limited else UNLIMITED_RPM

    def per_key(field: str) -> list[int]:
        return [int(s[field].get(proto.name, {}).get(k.api_key, 0)) for k in keys]

    in_flight, running, rpm = (per_key("max_in_flight"), per_key("max_running"),
                               per_key("max_submits_per_minute"))
    over = []
    for k, f, r, m in zip(keys, in_flight, running, rpm, strict=True):
        over += [f"{k.account} in flight {f} > cap {k.cap}"] if f > k.cap else []
        over += [f"{k.account} running {r} > C {a.concurrency}"] if r > a.concurrency else []
        over += [f"{k.account} {m} submits/min > R {a.rpm}"] if m > rpm_limit else []
    stops = stops or {}
    oracle = oracle_accounts(s["run_seconds"], [(a.concurrency, rpm_limit,
                                                 stops.get(k.api_key, math.inf)) for k in keys])
    return Row(name, bound_of(a, bound_keys or len(keys), proto.rpm_limited),
               (ended - started) * a.time_factor, oracle, done, s["polls"] + s["lists"],
               s["responses_429"], keys, in_flight, running, rpm, over, note,
               rpm_limited=proto.rpm_limited)


def oracle_makespan(runs: list[float], concurrency: int, rpm: int) -> float:
    """The makespan of a client with no overhead at all that knows the instant each task
    ends: tasks in submit order, each started as soon as a slot is free and the sliding
    minute allows (the simulator's own rules), on the generation times this run drew."""
    return oracle_accounts(runs, [(concurrency, rpm, math.inf)])


def oracle_accounts(runs: list[float], keys: Sequence[tuple[int, int, float]]) -> float:
    """`oracle_makespan` over several keys, each (concurrency, rpm, stop) with its own slots
    and sliding minute: each task, in submit order, goes to the key where it can start
    first; a key starts nothing at or after its `stop` (simulated seconds; inf = never),
    while the tasks it started run on."""
    slots = [[0.0] * concurrency for concurrency, _, _ in keys]
    starts: list[list[float]] = [[] for _ in keys]
    last = end = 0.0
    for run in runs:
        best: tuple[float, int] | None = None
        for i, (_, rpm, stop) in enumerate(keys):
            start = max(slots[i][0], last)
            if len(starts[i]) >= rpm:
                start = max(start, starts[i][-rpm] + 60.0)
            if start < stop and (best is None or start < best[0]):
                best = (start, i)
        if best is None:
            raise ValueError("no key can take the remaining tasks")
        start, i = best
        heapq.heapreplace(slots[i], start + run)
        starts[i].append(start)
        last, end = start, max(end, start + run)
    return end


# -- ports -------------------------------------------------------------------------------
PORTS: list[int] = []  # --ports LO-HI: listen on these only (empty: any the OS gives)
_handed_out: set[int] = set()


def free_port() -> int:
    if not PORTS:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for port in PORTS:
        if port in _handed_out:  # handed to a child that may not listen yet
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port left in --ports")


# -- genbatch ----------------------------------------------------------------------------
def genbatch_label(webhooks: bool = False, ahead: int | None = None, accounts: int = 1,
                   fail_after: float | None = None, proto: Protocol = WAVESPEED,
                   told: int | None = None) -> str:
    name = "genbatch + webhooks" if webhooks else "genbatch"
    if proto is not WAVESPEED:
        name += f" on {proto.name}"
    if told is not None:
        name += f", told C+{told} (the account has C)"
    if ahead == 0:
        name += ", queue-ahead off (cap C)"
    elif ahead:
        name += f", fixed cap C+{ahead} (queue-ahead off)"
    if accounts > 1:
        name += f", {accounts} accounts"
    if fail_after is not None:
        name += f", one out of balance after {fail_after:.0%} submitted"
    return name


def default_queue_ahead_max() -> int:
    from genbatch.config import Settings

    return int(Settings.model_fields["queue_ahead_max"].default)


def learned_cap(a: argparse.Namespace, typical_s: float) -> int:
    """The in-flight cap genbatch's defaults give one key at generations of `typical_s`."""
    from genbatch.config import Settings
    from genbatch.worker.queue_ahead import queue_ahead

    concurrency = int(a.concurrency)
    return concurrency + queue_ahead(concurrency, default_queue_ahead_max(), typical_s,
                                     Settings())


def count_submitted(store: Any, batch_id: str, n: int) -> int:
    """Items of the batch with a task at the provider (their submit record's `submitted_at`)."""
    pipe = store.debug.client.pipeline(transaction=False)
    for seq in range(1, n + 1):
        pipe.hexists(store.debug.key("item", f"{batch_id}:{seq}"), "submitted_at")
    return sum(bool(x) for x in pipe.execute())


def run_genbatch(a: argparse.Namespace, url: str, workdir: Path, webhooks: bool = False,
                 ahead: int | None = None, accounts: int = 1,
                 fail_after: float | None = None, proto: Protocol = WAVESPEED,
                 told: int | None = None) -> Row:
    """genbatch with its defaults, polling, one key, unless told otherwise.

    `ahead` None keeps queueing ahead (the default: the cap runs up to
    GENBATCH_QUEUE_AHEAD_MAX above C, sized from the learned generation time); 0 turns it
    off (cap = C); K > 0 sets a fixed cap C + K with it off. `accounts` > 1: an accounts
    file of that many WaveSpeed accounts, one simulator key each. `fail_after`: once this
    share of the jobs has a task at the provider, the last key runs out of balance (the
    simulator's profile replaced at runtime): its submits are refused with 402, polls of
    its tasks still work. `proto`: the provider (default WaveSpeed); `told`: genbatch's
    concurrency for the account set this many above the account's real C (Kling: 1303)."""
    from genbatch.demo.redis_server import start_redis
    from genbatch.producer.ingest import ingest_manifest
    from genbatch.storage import open_storage
    from genbatch.store import JobStore

    name = genbatch_label(webhooks, ahead, accounts, fail_after, proto, told)
    slug = f"genbatch-{proto.name}" + ("-webhooks" if webhooks else "") + \
        (f"-ahead{ahead}" if ahead is not None else "") + \
        (f"-accounts{accounts}" if accounts > 1 else "") + ("-fail" if fail_after else "")
    workdir = workdir / slug
    workdir.mkdir(parents=True, exist_ok=True)
    queues = proto.name in ("wavespeed", "fal", "runway")  # the plugins' limits.queues
    cap = a.concurrency + (told or 0) + (
        (default_queue_ahead_max() if ahead is None else ahead) if queues else 0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
    if accounts > 1:
        keys = [Key(f"{KEY}-{c}", f"ws-{c}", cap) for c in ACCOUNT_LETTERS[:accounts]]
        accounts_file = workdir / "accounts.toml"
        accounts_file.touch(mode=0o600)
        accounts_file.write_text("".join(
            f'[{k.account}]\nprovider = "wavespeed"\napi_key = "{k.api_key}"\n'
            f"concurrency = {a.concurrency}\nsubmit_rpm = {a.rpm}\npoll_rpm = {a.poll_rpm}\n\n"
            for k in keys))
        env["GENBATCH_ACCOUNTS_FILE"] = str(accounts_file)
    else:
        keys = [Key(KEY, proto.name, cap)]
        env.update({proto.var(proto.key_setting): KEY})
        env.update({proto.var(setting): value for setting, value in proto.settings})
    if ahead is not None:  # a fixed cap: queueing ahead off
        env["GENBATCH_QUEUE_AHEAD_MAX"] = "0"
    redis = start_redis(workdir / "redis", port=free_port())
    env.update({
        "GENBATCH_REDIS_URL": redis.url, "GENBATCH_STORAGE_URL": str(workdir / "storage"),
        proto.var("base_url"): url + proto.prefix,
        proto.var("max_in_flight"): str(a.concurrency + (ahead or 0) + (told or 0)),
        proto.var("poll_rpm"): str(a.poll_rpm),
        "GENBATCH_TIME_FACTOR": str(a.time_factor), "GENBATCH_SCHEDULER_TICK_S": "0.05",
        "GENBATCH_WORKER_CONCURRENCY": str(a.concurrency * accounts + 8),
        "GENBATCH_LOG_LEVEL": "WARNING",
    })
    if proto.rpm_limited:  # else the plugin's own generous safety valve
        env[proto.var("submit_rpm")] = str(a.rpm)
    commands = [["worker", "--hostname", "bench@%h"], ["scheduler"]]
    if webhooks:  # the simulator calls back; polling drops to the safety cadence
        hook_port = free_port()
        env.update({"GENBATCH_WEBHOOK_BASE_URL": f"http://127.0.0.1:{hook_port}",
                    "GENBATCH_WEBHOOK_SECRET": "bench-webhook-secret-0123456789"})
        if proto is WAVESPEED:
            # WaveSpeed signs its callbacks with the account's secret: with it set, a
            # verified callback finishes its item (an unsigned one only wakes its poll).
            secret = httpx.get(f"{url}/api/v3/webhook/secret", timeout=10, headers={
                "Authorization": f"Bearer {KEY}"}).json()["data"]["secret"]
            env["GENBATCH_WAVESPEED_WEBHOOK_SECRET"] = secret
        elif proto is FAL:  # fal signs with a published key set: the simulator's
            env["GENBATCH_FAL_JWKS_URL"] = f"{url}/fal/.well-known/jwks.json"
        commands.append(["webhooks", "--port", str(hook_port)])
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
            json.dumps({"custom_id": f"job-{i:05d}", **proto.row(url, i)}) + "\n"
            for i in range(a.jobs)))
        store = JobStore.from_url(redis.url)
        time.sleep(3.0)  # let the worker connect before the clock starts
        httpx.post(f"{url}/_sim/reset", timeout=10)
        started = time.monotonic()
        batch_id = str(ingest_manifest(manifest, store=store,
                                       storage=open_storage(str(workdir / "storage")),
                                       provider=proto.name, model=proto.model
                                       ).batch_id)
        ingested = time.monotonic()
        failed_at: float | None = None
        checked = 0.0
        while store.batches.get(batch_id)["status"] != "completed":
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a genbatch process died; see " + str(workdir))
            if fail_after is not None and failed_at is None \
                    and time.monotonic() - checked > 0.1:
                checked = time.monotonic()
                if count_submitted(store, batch_id, a.jobs) >= fail_after * a.jobs:
                    broke = json.loads(profile(a, [k.api_key for k in keys], proto)
                                       .model_dump_json(exclude_defaults=True))
                    broke["keys"] = {keys[-1].api_key: {"out_of_balance": True}}
                    httpx.put(f"{url}/_sim/profile", json=broke, timeout=10).raise_for_status()
                    failed_at = time.monotonic()
            time.sleep(0.02)
        ended = time.monotonic()
        batch = store.batches.get(batch_id)
        done = int(batch["succeeded"])
        learned = store.debug.client.hvals(store.debug.key("gentime"))
        note = f"ingest {(ingested - started) * a.time_factor:.0f} s (included)"
        if learned:
            typical = float(learned[0])
            note += f"; learned t = {typical:.1f} s"
            if ahead is None and queues:
                note += f" → cap C+{learned_cap(a, typical) - a.concurrency} per key" \
                        f" (at most C+{default_queue_ahead_max()})"
        if told:
            note += f"; {sim_stats(url)['responses_429']} refused 1303 (slot full), requeued"
        failed = int(batch.get("failed") or 0)
        note += f"; {failed} failed" if failed or accounts > 1 else ""
        stops: dict[str, float] = {}
        if accounts > 1:
            pipe = store.debug.client.pipeline(transaction=False)
            for seq in range(1, a.jobs + 1):
                pipe.hget(store.debug.key("item", f"{batch_id}:{seq}"), "account")
            per = Counter(pipe.execute())
            note += "; jobs per account " + " / ".join(f"{per[k.account]}" for k in keys)
        if failed_at is not None:
            stops[keys[-1].api_key] = (failed_at - started) * a.time_factor
            note += (f"; {keys[-1].account} refused (402, out of balance) from "
                     f"{stops[keys[-1].api_key]:.0f} s on, its tasks still polled (a key "
                     "dropped from api_keys instead would refuse the polls of tasks it "
                     "already created too: no client recovers those without paying twice)")
        if os.environ.get("BENCH_DUMP"):
            items = [store.items.get(f"{batch_id}:{s}") for s in range(1, a.jobs + 1)]
            Path(os.environ["BENCH_DUMP"]).write_text(json.dumps(
                {"items": items, "batch": store.batches.get(batch_id),
                 "runs": sim_stats(url)["run_seconds"], "t": [
                    time.time() - time.monotonic() + x for x in (started, ingested, ended)]}))
        return row_from(name, url, started, ended, done, a, note, keys=keys, stops=stops,
                        bound_keys=len(keys) - (1 if fail_after is not None else 0),
                        proto=proto)
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
def simulator(prof: SimProfile) -> Iterator[str]:
    """A fresh simulator in its own process, so no client competes with it for the GIL."""
    with tempfile.TemporaryDirectory(prefix="genbatch-sim-") as tmp:
        path = Path(tmp) / "profile.json"
        path.write_text(prof.model_dump_json(exclude_defaults=True))
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


def measure(name: str, a: argparse.Namespace, fn: Callable[[str], Row],
            keys: int = 1, proto: Protocol = WAVESPEED) -> Row:
    """One client against a fresh simulator; with `keys` > 1 it accepts that many keys
    (those of run_genbatch's accounts file), each with the profile's R and C."""
    print(f"running {name} ...", file=sys.stderr, flush=True)
    api_keys = [f"{KEY}-{c}" for c in ACCOUNT_LETTERS[:keys]] if keys > 1 else None
    with simulator(profile(a, api_keys, proto)) as url:
        row = fn(url)
    row.jobs = a.jobs
    return row


def plugin_run(a: argparse.Namespace, tmp: Path, proto: Protocol, webhooks: bool,
               told: int | None) -> Callable[[str], Row]:
    """genbatch's run of one provider plugin's row, given the simulator's URL."""
    return lambda url: run_genbatch(a, url, tmp, webhooks=webhooks, proto=proto, told=told)


CLIENTS = ("genbatch", "webhooks", "no-ahead", "ahead", "sdk", "httpx", "accounts",
           "accounts-fail", "fal", "fal-webhooks", "runway", "kling", "kling-webhooks")


def per_key(values: list[int], limit: int) -> str:
    return f"{'·'.join(str(v) for v in values)} (≤ {limit})"


def rates(row: Row, rpm: int) -> str:
    """Submits per simulated minute per key, against R where the provider has one."""
    if row.rpm_limited:
        return per_key(row.max_rpm, rpm)
    return f"{'·'.join(str(v) for v in row.max_rpm)} (no limit)"


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
                   help="the 'ahead' client: genbatch polling with a fixed in-flight cap this "
                        "many above C and queueing ahead off (WaveSpeed queues the surplus); "
                        "10 = C x 2 poll intervals / t_mean at t_mean 20 s")
    p.add_argument("--accounts", type=int, default=3,
                   help="keys (genbatch accounts) of the 'accounts' and 'accounts-fail' rows")
    p.add_argument("--account-jobs", type=int, default=None,
                   help="N of the 'accounts' and 'accounts-fail' rows (default: --jobs x "
                        "--accounts: each key carries the one-key rows' load)")
    p.add_argument("--fail-after", type=float, default=1 / 3,
                   help="'accounts-fail': the share of jobs submitted before the last key "
                        "runs out of balance")
    p.add_argument("--kling-told", type=int, default=10,
                   help="'kling': genbatch's concurrency for the account this many above the "
                        "account's C, so submits meet 1303 (slot full)")
    p.add_argument("--ports", help="LO-HI: listen on ports of this range only (default: any)")
    p.add_argument("--only", choices=list(CLIENTS), action="append")
    a = p.parse_args(argv)
    if not 2 <= a.accounts <= len(ACCOUNT_LETTERS):
        p.error(f"--accounts must be 2 to {len(ACCOUNT_LETTERS)}")
    if a.ports:
        lo, _, hi = a.ports.partition("-")
        PORTS[:] = range(int(lo), int(hi or lo) + 1)
    bound = bound_of(a, 1)
    only = set(a.only or CLIENTS)
    rows: list[Row] = []
    k = a.accounts
    with tempfile.TemporaryDirectory(prefix="genbatch-bench-") as tmp:
        if "genbatch" in only:
            rows.append(measure(genbatch_label(), a,
                                lambda u: run_genbatch(a, u, Path(tmp))))
        if "webhooks" in only:
            rows.append(measure(genbatch_label(webhooks=True), a,
                                lambda u: run_genbatch(a, u, Path(tmp), webhooks=True)))
        if "no-ahead" in only:
            rows.append(measure(genbatch_label(ahead=0), a,
                                lambda u: run_genbatch(a, u, Path(tmp), ahead=0)))
        if "ahead" in only:
            rows.append(measure(genbatch_label(ahead=a.ahead), a,
                                lambda u: run_genbatch(a, u, Path(tmp), ahead=a.ahead)))
        if "sdk" in only:
            rows.append(measure("wavespeed SDK", a, lambda u: run_sdk(a, u)))
        if "httpx" in only:
            rows.append(measure("asyncio + httpx", a, lambda u: run_httpx(a, u)))
        # k keys' work in the wall-clock time of one key's: k x the requests per second of
        # the one-key rows on the same two cores, an artifact of compressing time (at the
        # providers' real pace the load is a tenth of it). Running the clock k x slower
        # keeps the machine's load per second equal to the one-key rows'.
        many = argparse.Namespace(**{**vars(a), "jobs": a.account_jobs or a.jobs * k,
                                     "time_factor": a.time_factor / k})
        if "accounts" in only:
            rows.append(measure(genbatch_label(accounts=k), many,
                                lambda u: run_genbatch(many, u, Path(tmp), accounts=k), keys=k))
        if "accounts-fail" in only:
            rows.append(measure(
                genbatch_label(accounts=k, fail_after=a.fail_after), many,
                lambda u: run_genbatch(many, u, Path(tmp), accounts=k,
                                       fail_after=a.fail_after),
                keys=k))
        plugins: list[tuple[str, Protocol, bool, int | None]] = [
            ("fal", FAL, False, None), ("fal-webhooks", FAL, True, None),
            ("runway", RUNWAY, False, None), ("kling", KLING, False, a.kling_told),
            ("kling-webhooks", KLING, True, a.kling_told)]
        for client, proto, hooks, told in plugins:
            if client in only:
                rows.append(measure(genbatch_label(hooks, proto=proto, told=told), a,
                                    plugin_run(a, Path(tmp), proto, hooks, told),
                                    proto=proto))
    many_jobs = a.account_jobs or a.jobs * k
    print(f"N={a.jobs} jobs ({many_jobs} for the {k}-account rows: each key carries the "
          f"one-key load, with simulated time {a.time_factor / k:g}x faster than the wall "
          f"clock so the machine's requests per second stay those of one key), "
          f"R={a.rpm} submits/min, C={a.concurrency} concurrent per key, "
          f"lognormal t_mean={a.mean:g} s sigma={a.sigma:g}; simulated time "
          f"{a.time_factor:g}x faster than the wall clock (figures in simulated seconds); "
          f"lower bound max(N/R, N*t/C) = {bound:.0f} s for one key, max(N/(kR), N*t/(kC)) "
          f"for k keys' combined quota (the 'out of balance' row: all N jobs on the k-1 "
          f"keys left)")
    print("oracle = a client with no overhead that knows the instant each task ends, on the "
          "generation times this very run drew (its ÷ bound shows the tail the bound "
          "ignores); with several keys each task goes to the key where it starts first, and "
          "a key out of balance starts nothing from the moment it was in this run")
    print("per key: the simulator's maxima, every key against its own limits (in flight: "
          "the client's cap; running: C; submits per simulated minute: R); polls/job: "
          "every request for a task's status, task listings included")
    print("| client | bound s | makespan s | ÷ bound | oracle s (÷ bound) | ÷ oracle | done "
          "| polls/job | 429s | max in flight | max running | max submits/min "
          "| limits kept | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        kept = "yes" if not r.over else "NO: " + ", ".join(r.over)
        print(f"| {r.client} | {r.bound_s:.0f} | {r.makespan_s:.0f} | "
              f"{r.makespan_s / r.bound_s:.3f} | "
              f"{r.oracle_s:.0f} ({r.oracle_s / r.bound_s:.3f}) | "
              f"{r.makespan_s / max(r.oracle_s, 1e-9):.3f} | "
              f"{r.done}/{r.jobs} | {r.polls / max(r.done, 1):.2f} | {r.r429} | "
              f"{per_key(r.max_in_flight, r.keys[0].cap)} | "
              f"{per_key(r.max_running, a.concurrency)} | "
              f"{rates(r, a.rpm)} | "
              f"{kept} | {r.note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
