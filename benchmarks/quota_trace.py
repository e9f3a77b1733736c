"""Where one quota-benchmark run's time went, per job, from its `BENCH_DUMP` file.

    BENCH_DUMP=/tmp/run.json python benchmarks/quota.py --only runway
    python benchmarks/quota_trace.py /tmp/run.json [--concurrency 20 --time-factor 10]

The simulator draws each task's run time when the task is created and records them in
creation order (= genbatch's submit order), and a provider that queues (WaveSpeed, fal,
Runway) starts a waiting task the instant a slot frees, first come first served; so the
provider's schedule can be rebuilt from the items' submit times: when each task started
and ended. Beside what genbatch recorded (when it saw the end, when the download was done),
that shows where the makespan goes beyond the oracle's: slots idle because no task waited
at the provider (genbatch saw slots free late, or its cap held tasks back), the poll lag,
the tail. For a provider that queues nothing (Kling) every idle slot is a poll lag. Figures
in simulated seconds. One account only (not the `accounts` rows).
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Job:
    """One task's timeline (wall seconds) and what genbatch recorded of it."""

    submitted: float
    start: float
    end: float
    seen: float
    done: float
    polls: int
    expected_wait: float
    first_poll: float
    typical: float


def rebuild(dump: dict[str, Any], concurrency: int, factor: float) -> tuple[list[Job], float]:
    """The jobs in submit order with the provider's start and end rebuilt; and the slot
    time (wall seconds, summed over slots) spent idle while the batch had work left."""
    items = sorted(dump["items"], key=lambda i: float(i["submitted_at"]))
    runs = [r / factor for r in dump["runs"]]
    if len(runs) != len(items):
        raise SystemExit(f"{len(runs)} tasks for {len(items)} items: one account only")
    slots = [dump["t"][0]] * concurrency
    jobs, idle = [], 0.0
    for item, run in zip(items, runs, strict=True):
        submitted = float(item["submitted_at"])
        free = heapq.heappop(slots)
        start = max(submitted, free)
        idle += start - free
        heapq.heappush(slots, start + run)
        jobs.append(Job(submitted, start, start + run, float(item["generated_at"]),
                        float(item["finished_at"]), int(item.get("polls") or 0),
                        float(item.get("queue_wait_s") or 0), float(item.get("first_poll_s") or 0),
                        float(item.get("typical_s") or 0)))
    return jobs, idle


def report(dump: dict[str, Any], concurrency: int, factor: float) -> list[str]:
    jobs, idle = rebuild(dump, concurrency, factor)
    t0, end = dump["t"][0], dump["t"][2]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) * factor

    last = max(j.end for j in jobs)
    starts = sorted(j.start for j in jobs)
    submits = sorted(j.submitted for j in jobs)
    dry = [e for e in sorted(j.end for j in jobs)[:-concurrency]
           if bisect.bisect_right(submits, e) <= bisect.bisect_right(starts, e)]
    lines = [
        f"makespan {(end - t0) * factor:.1f}; last generation ends {(last - t0) * factor:.1f};"
        f" tail {(end - last) * factor:.1f}",
        f"slot idle while work was left: {idle * factor / concurrency:.1f} s per slot; "
        f"{len(dry)} of {len(jobs) - concurrency} freed slots found no task waiting, at "
        + ", ".join(f"{(e - t0) * factor:.0f}" for e in dry),
        "part  submitted  wait expected/real  typical  run  first poll-end  end->seen  "
        "seen->done  polls"]
    n = len(jobs)
    for k in range(6):
        part = jobs[k * n // 6:(k + 1) * n // 6]
        cols = (mean([j.submitted - t0 for j in part]), mean([j.expected_wait for j in part]),
                mean([j.start - j.submitted for j in part]),
                sum(j.typical for j in part) / len(part), mean([j.end - j.start for j in part]),
                mean([j.submitted + j.first_poll - j.end for j in part]),
                mean([j.seen - j.end for j in part]), mean([j.done - j.seen for j in part]),
                sum(j.polls for j in part) / len(part))
        lines.append("{}/6  {:9.0f}  {:8.1f} / {:5.1f}  {:7.1f}  {:4.1f}  {:14.1f}  {:9.1f}  "
                     "{:10.1f}  {:5.2f}".format(k + 1, *cols))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dump", type=Path)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--time-factor", type=float, default=10.0)
    a = p.parse_args(argv)
    print("\n".join(report(json.loads(a.dump.read_text()), a.concurrency, a.time_factor)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
