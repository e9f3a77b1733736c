"""Per-account (and per model at an account) accounting: the submit-rate window, concurrency
slots, in-flight and queued counts. Everything is computed from timestamps when asked, so no
timer runs per task.

A task is *in flight* from its submit until its (simulated) terminal time, and *queued* until
its start time. Both sets are dicts with a min-heap of (time, task id) beside them; entries
whose time has passed are dropped lazily, and a cancelled task is removed from the dict at
once (its stale heap entry is skipped when it surfaces).

Queueing providers (WaveSpeed, BytePlus) fix a task's start when it is submitted: a ledger's
concurrency slots are a heap of (time the slot frees, task occupying it until then), and a
task starts once a slot of its account and, if its model has a limit, a slot of its model at
the account are free (first come, first served). Of the slots free by its start it takes the
one freed last, and a new one (while fewer than the limit exist) only if none is, so a task
held back by its model's limit leaves earlier-freed account slots to others. A
simplification: the slot such a task takes idles from when it freed (a new one: from now)
until the task starts, and no other task can use that gap, so the account may run below its
limit while both limits bind (neither limit is ever exceeded). A task cancelled while queued
gives its slot back (free from its planned start, since nothing is planned behind it on that
slot); tasks already planned keep their times, as timelines are fixed.

The most tasks *running* at once (started, not finished: what a queueing provider's
concurrency limit counts) is swept from (start, end) intervals when asked, not counted per
event. Every instant before `now` is final by then: a later submit starts no earlier than
it is made, and a cancel shortens a run only from its own time. So a sweep folds the
instants since the previous sweep into the peak and keeps only the intervals still unfinished
at `now`. A ledger whose stats are never asked sweeps itself whenever its intervals reach
twice what the last sweep kept (at least `SWEEP_AT`): memory stays within about twice the
tasks in flight, and each interval is sorted a bounded number of times on average.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class _ExpiringSet:
    """Task ids, each leaving the set at its own time."""

    until: dict[str, float] = field(default_factory=dict)
    heap: list[tuple[float, str]] = field(default_factory=list)

    def add(self, task_id: str, until: float) -> None:
        self.until[task_id] = until
        heapq.heappush(self.heap, (until, task_id))

    def discard(self, task_id: str) -> None:
        self.until.pop(task_id, None)

    def count(self, now: float) -> int:
        heap, until = self.heap, self.until
        while heap and heap[0][0] <= now:
            when, task_id = heapq.heappop(heap)
            if until.get(task_id) == when:
                del until[task_id]
        return len(until)


SWEEP_AT = 4096  # intervals a ledger collects before it sweeps unasked


@dataclass(slots=True)
class _RunPeak:
    """The most tasks running at once, from their (start, end) intervals (half-open: a task
    ending as another starts is not running beside it)."""

    runs: dict[str, tuple[float, float]] = field(default_factory=dict)  # unswept, unfinished
    swept_until: float = -math.inf
    peak: int = 0
    kept: int = 0  # intervals the last sweep kept

    def add(self, task_id: str, start: float, end: float, now: float) -> None:
        if end > start:  # a task expiring before its start never runs
            self.runs[task_id] = (start, end)
        if len(self.runs) >= max(SWEEP_AT, 2 * self.kept):
            self.sweep(now)

    def cut(self, task_id: str, now: float) -> None:
        """The task ended at `now` (cancelled): it runs no longer, or never if not started."""
        run = self.runs.get(task_id)
        if run is None:
            return
        start, end = run
        if now <= start:
            del self.runs[task_id]
        else:
            self.runs[task_id] = (start, min(end, now))

    def max_running(self, now: float) -> int:
        self.sweep(now)
        return self.peak

    def sweep(self, now: float) -> None:
        """Fold the instants in [swept_until, now) into the peak."""
        since = self.swept_until
        if now <= since:
            return
        events: list[tuple[float, int]] = []
        for start, end in self.runs.values():
            if start < now and end > since:
                events.append((max(start, since), 1))
                if end < now:
                    events.append((end, -1))
        events.sort()  # at one instant, ends (-1) before starts (+1)
        running, peak = 0, self.peak
        for _, delta in events:
            running += delta
            peak = max(peak, running)
        self.peak = peak
        self.runs = {task_id: run for task_id, run in self.runs.items() if run[1] > now}
        self.swept_until, self.kept = now, len(self.runs)


@dataclass(slots=True)
class KeyLedger:
    """What one account, or one model at an account, has in progress and how fast it has
    been submitting."""

    submit_times: deque[float] = field(default_factory=deque)
    max_submits_per_window: int = 0
    in_flight: _ExpiringSet = field(default_factory=_ExpiringSet)
    queued: _ExpiringSet = field(default_factory=_ExpiringSet)
    max_in_flight: int = 0
    running: _RunPeak = field(default_factory=_RunPeak)
    # heap of (free time, occupant task id); queueing providers only
    slot_ends: list[tuple[float, str]] = field(default_factory=list)

    def submits_in_window(self, now: float, window_s: float) -> int:
        times = self.submit_times
        while times and times[0] <= now - window_s:
            times.popleft()
        return len(times)

    def slot_free(self, concurrency: int | None) -> float:
        """The earliest time one of `concurrency` slots is free (-inf: one is free already,
        or there is no limit). A task starts no earlier; then it must `take_slot`."""
        ends = self.slot_ends
        if concurrency is None:
            ends.clear()
            return -math.inf
        while len(ends) > concurrency:  # the limit shrank at runtime
            heapq.heappop(ends)
        return ends[0][0] if len(ends) == concurrency else -math.inf

    def take_slot(self, task_id: str, start: float, end: float, concurrency: int | None) -> None:
        """Occupy a slot from `start` (not before `slot_free`) until `end`: of the slots free
        by `start`, the one freed last, so slots freed earlier stay for tasks that can start
        earlier; a new slot only when none is free by then. (A task may start after
        `slot_free` when another limit, its model's, holds it back.)"""
        if concurrency is None:
            return
        ends = self.slot_ends
        latest = max((i for i, slot in enumerate(ends) if slot[0] <= start),
                     key=lambda i: ends[i][0], default=None)
        if latest is None:  # there is room for one more: `slot_free` was -inf
            heapq.heappush(ends, (end, task_id))
        else:
            ends[latest] = (end, task_id)
            heapq.heapify(ends)

    def admit(self, task_id: str, now: float, start: float, end: float, window_s: float) -> None:
        """Record an accepted submit."""
        self.submit_times.append(now)
        self.max_submits_per_window = max(
            self.max_submits_per_window, self.submits_in_window(now, window_s)
        )
        self.in_flight.add(task_id, end)
        if start > now:
            self.queued.add(task_id, start)
        self.max_in_flight = max(self.max_in_flight, self.in_flight.count(now))
        self.running.add(task_id, start, end, now)

    def max_running(self, now: float) -> int:
        """The most tasks running at once until `now`."""
        return self.running.max_running(now)

    def release(self, task_id: str, start: float, now: float) -> None:
        """A task planned to start at `start` ended early, at `now` (cancelled while queued):
        it leaves the counts and gives back its slot, unless another task is planned on it
        already."""
        self.in_flight.discard(task_id)
        self.queued.discard(task_id)
        self.running.cut(task_id, now)
        ends = self.slot_ends
        for i, (_, occupant) in enumerate(ends):
            if occupant == task_id:
                ends[i] = (start, "")
                heapq.heapify(ends)
                break
