"""Dispatch benchmark: does the CPU a dispatched item costs depend on how many batches wait?

    python benchmarks/dispatch.py [--items 10000 --cap 20 --repeat 3 --fsync everysec]

Against a real Redis (a private redis-server, AOF on), with no Celery: a Runtime whose
enqueue callback only records ids, as tests/test_dispatch.py does. Two scenarios of N
pending novita items, each on an emptied Redis:

    (i)  1 batch of N items          (ii)  N batches of 1 item each

One novita account, in-flight cap `--cap`, submit rpm very high (no rate wait). The clock
starts after the setup (ingest create / add_items / commit, not measured): one
dispatch fills the cap, then, as workers do, one dispatched item at a time ends
(`steps.finish` dispatched → failed, the worker's own step: it moves the item and refills the
freed slot through `dispatch.refill`), oldest first, until all N items were dispatched: one
dispatch per freed slot. Per item (divided by N):

- process CPU: `time.process_time()` of this process over the loop (finish + refill +
  redis-py), and the part of it spent inside `dispatch_provider` (the whole refill call);
- Redis CPU: `INFO cpu` used_cpu_sys + used_cpu_user of the server over the loop, and the
  time it spent in the Lua scripts (`INFO commandstats` EVALSHA usec: dispatch.lua,
  transition.lua and the rest, with the commands they call), the share of it that has
  nothing to do with sockets or the event loop.

The table has both scenarios and the ratio (ii) / (i); the goal is ≤ 1.2 in process CPU
and in Redis CPU: a dispatch costs what it dispatches, however many batches wait. A second
table splits the loop into quarters of the items dispatched: in (ii) the batches waiting
fall from N to 0 over it, so a cost that grew with them would fall quarter by quarter, while
what (ii) costs more than (i) at every quarter is work per batch (each item of (ii) ends
its batch's queue and its batch, and touches a batch record of its own). With `--repeat R`
each scenario runs R times, alternating, and the tables show the medians.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import genbatch.worker.dispatch as dispatch_module  # noqa: E402
from genbatch.config import Settings  # noqa: E402
from genbatch.demo.redis_server import free_port, start_redis  # noqa: E402
from genbatch.models import ItemState  # noqa: E402
from genbatch.store import JobStore  # noqa: E402
from genbatch.worker.runtime import Runtime  # noqa: E402
from genbatch.worker.steps import finish  # noqa: E402

PROVIDER = "novita"
MODEL = "seedance-v1.5-pro-i2v"
CHUNK = 1000  # items per add_items call in the one-batch setup


@dataclass
class Sample:
    """Cumulative readings at one point of the loop."""

    dispatched: int
    wall: float  # perf_counter, s
    cpu: float  # process_time of this process, µs
    dispatch: float  # of it inside dispatch_provider, µs
    redis_cpu: float  # the server's used_cpu_sys + used_cpu_user, µs
    redis_lua: float  # the server's time in EVALSHA (the Lua scripts), µs


@dataclass
class Part:
    """Per-item figures between two samples."""

    waiting: int  # batches with pending items at the start of the part
    wall_s: float
    cpu_us: float
    dispatch_us: float
    redis_cpu_us: float
    redis_lua_us: float

    @classmethod
    def between(cls, a: Sample, b: Sample, waiting: int) -> Part:
        n = max(1, b.dispatched - a.dispatched)
        return cls(waiting, b.wall - a.wall, (b.cpu - a.cpu) / n,
                   (b.dispatch - a.dispatch) / n, (b.redis_cpu - a.redis_cpu) / n,
                   (b.redis_lua - a.redis_lua) / n)


@dataclass
class Result:
    scenario: str
    whole: Part  # the whole loop, per item
    quarters: list[Part]  # each quarter of the items dispatched
    calls: int  # dispatch_provider calls
    setup_s: float


def item_records(first: int, n: int) -> list[dict[str, str]]:
    return [{"seq": str(s), "state": "pending", "provider": PROVIDER, "model": MODEL}
            for s in range(first, first + n)]


def setup(store: JobStore, batches: int, per_batch: int) -> None:
    """`batches` committed batches of `per_batch` pending items (tests/test_dispatch.py's
    make_batch, the items of a big batch written CHUNK at a time)."""
    for b in range(batches):
        bid = "one" if batches == 1 else f"b{b:05d}"
        store.ingest.create(bid, {"priority": "normal"}, created_at=1.0)
        for first in range(1, per_batch + 1, CHUNK):
            store.ingest.add_items(bid, item_records(first, min(CHUNK, per_batch - first + 1)))
        store.ingest.commit(bid, [PROVIDER])


def redis_readings(store: JobStore) -> tuple[float, float]:
    """(used_cpu_sys + used_cpu_user, usec in EVALSHA) of the server, in microseconds. (The
    commands a script calls are counted in commandstats too: EVALSHA's time includes them.)"""
    cpu = store.debug.client.info("cpu")
    lua = store.debug.client.info("commandstats").get("cmdstat_evalsha", {}).get("usec", 0)
    return (float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])) * 1e6, float(lua)


def run(scenario: str, redis_url: str, n: int, cap: int) -> Result:
    batches, per_batch = (1, n) if scenario == "i" else (n, 1)
    store = JobStore.from_url(redis_url)
    store.debug.client.flushall()
    t0 = time.perf_counter()
    setup(store, batches, per_batch)
    setup_s = time.perf_counter() - t0

    sent: deque[str] = deque()
    dispatched = 0

    def enqueue(kind: str, ident: str) -> None:
        nonlocal dispatched
        if kind == "submit":
            sent.append(ident)
            dispatched += 1

    settings = Settings(_env_file=None, redis_url=redis_url,
                        novita_max_in_flight=cap, novita_submit_rpm=1e9,
                        novita_poll_rpm=1e9, queue_ahead_max=0)
    rt = Runtime(settings, enqueue=enqueue)
    rt.now()  # the clock offset to Redis, measured before the clock starts
    inside = [0.0, 0]
    real_dispatch: Callable[[Runtime, str], int] = dispatch_module.dispatch_provider

    def timed(rt_: Runtime, provider: str) -> int:
        start = time.process_time()
        try:
            return real_dispatch(rt_, provider)
        finally:
            inside[0] += time.process_time() - start
            inside[1] += 1

    def sample() -> Sample:
        wall, cpu = time.perf_counter(), time.process_time()
        redis_cpu, redis_lua = redis_readings(store)
        return Sample(dispatched, wall, cpu * 1e6, inside[0] * 1e6, redis_cpu, redis_lua)

    marks = [n * q // 4 for q in range(1, 5)]  # quarters of the items dispatched
    # refill() looks dispatch_provider up in its module at each call: time it there.
    vars(dispatch_module)["dispatch_provider"] = timed
    try:
        samples = [sample()]
        timed(rt, PROVIDER)  # fill the cap
        while dispatched < n:
            if not sent:
                raise RuntimeError(f"nothing in flight with {n - dispatched} not dispatched")
            iid = sent.popleft()
            if finish(rt, iid, [ItemState.DISPATCHED], ItemState.FAILED, "bench",
                      "slot freed") != "failed":
                raise RuntimeError(f"{iid} did not end failed")
            if dispatched >= marks[len(samples) - 1] and dispatched < n:
                samples.append(sample())
        samples.append(sample())
    finally:
        vars(dispatch_module)["dispatch_provider"] = real_dispatch
    if store.queues.in_flight(PROVIDER) != min(cap, n) or dispatched != n:
        raise RuntimeError(f"dispatched {dispatched} of {n}; "
                           f"{store.queues.in_flight(PROVIDER)} in flight (cap {cap})")

    def waiting(at: Sample) -> int:
        return 1 if batches == 1 else n - at.dispatched

    quarters = [Part.between(a, b, waiting(a)) for a, b in itertools.pairwise(samples)]
    return Result(scenario, Part.between(samples[0], samples[-1], waiting(samples[0])),
                  quarters, int(inside[1]), setup_s)


def median(results: list[Result]) -> Result:
    def mid(parts: list[Part]) -> Part:
        def m(field: str) -> float:
            return float(statistics.median(getattr(x, field) for x in parts))

        return Part(parts[0].waiting, m("wall_s"), m("cpu_us"), m("dispatch_us"),
                    m("redis_cpu_us"), m("redis_lua_us"))

    first = results[0]
    return Result(first.scenario, mid([r.whole for r in results]),
                  [mid([r.quarters[q] for r in results]) for q in range(len(first.quarters))],
                  first.calls, float(statistics.median(r.setup_s for r in results)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--cap", type=int, default=20, help="the account's in-flight cap")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs per scenario, alternating (medians)")
    p.add_argument("--fsync", choices=("always", "everysec", "no"), default="everysec",
                   help="the server's appendfsync (AOF on)")
    p.add_argument("--port", type=int, default=0, help="the server's port (0: any free)")
    a = p.parse_args(argv)
    runs: dict[str, list[Result]] = {"i": [], "ii": []}
    with tempfile.TemporaryDirectory(prefix="genbatch-bench-") as tmp:
        redis = start_redis(Path(tmp) / "redis", port=a.port or free_port(), fsync=a.fsync)
        try:
            for rep in range(a.repeat):
                for scenario in ("i", "ii"):
                    print(f"scenario ({scenario}), run {rep + 1} of {a.repeat} ...",
                          file=sys.stderr, flush=True)
                    runs[scenario].append(run(scenario, redis.url, a.items, a.cap))
                    res = runs[scenario][-1]
                    print(f"  setup {res.setup_s:.1f} s, loop {res.whole.wall_s:.1f} s",
                          file=sys.stderr, flush=True)
        finally:
            redis.stop()
    one, many = median(runs["i"]), median(runs["ii"])
    print(f"N={a.items} items, one novita account, in-flight cap {a.cap}, rpm unlimited; "
          f"one dispatch per freed slot (steps.finish → refill); Redis AOF appendfsync "
          f"{a.fsync}; per item = over the loop / N (setup excluded)"
          + (f"; medians of {a.repeat} runs each" if a.repeat > 1 else ""))
    print("| scenario | batches waiting at start | loop s | process CPU µs/item "
          "| of which dispatch µs/item | Redis CPU µs/item | Redis in Lua scripts µs/item "
          "| dispatch calls |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in (("(i) 1 batch of N", one), ("(ii) N batches of 1", many)):
        w = r.whole
        print(f"| {label} | {w.waiting:,} | {w.wall_s:.1f} | {w.cpu_us:.0f} | "
              f"{w.dispatch_us:.0f} | {w.redis_cpu_us:.0f} | {w.redis_lua_us:.0f} | "
              f"{r.calls:,} |")
    fields = ("wall_s", "cpu_us", "dispatch_us", "redis_cpu_us", "redis_lua_us")
    ratios = [getattr(many.whole, f) / max(getattr(one.whole, f), 1e-9) for f in fields]
    print(f"| (ii) / (i) | | {ratios[0]:.2f} | {ratios[1]:.2f} | {ratios[2]:.2f} | "
          f"{ratios[3]:.2f} | {ratios[4]:.2f} | |")
    worst = max(ratios[1], ratios[3])
    print(f"goal (ii) / (i) ≤ 1.2 in process CPU and Redis CPU per item: "
          f"{'met' if worst <= 1.2 else 'MISSED'} (worst {worst:.2f}; the dispatch share and "
          f"the Lua scripts' time are there to show where a difference comes from)")
    print()
    print("Per quarter of the items dispatched, µs/item, (i) → (ii): does (ii) get cheaper "
          "as its batches drain?")
    print("| quarter | (ii) batches waiting at its start | process CPU | of which dispatch "
          "| Redis CPU | Redis in Lua scripts |")
    print("|---|---|---|---|---|---|")
    for q, (x, y) in enumerate(zip(one.quarters, many.quarters, strict=True), 1):
        print(f"| {q} | {y.waiting:,} | {x.cpu_us:.0f} → {y.cpu_us:.0f} | "
              f"{x.dispatch_us:.0f} → {y.dispatch_us:.0f} | "
              f"{x.redis_cpu_us:.0f} → {y.redis_cpu_us:.0f} | "
              f"{x.redis_lua_us:.0f} → {y.redis_lua_us:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
