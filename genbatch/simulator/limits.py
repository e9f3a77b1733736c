"""Per-API-key accounting: the submit-rate window, concurrency slots, in-flight and queued
counts. Everything is computed from timestamps when asked, so no timer runs per task.

A task is *in flight* from its submit until its (simulated) terminal time, and *queued* until
its start time. Both sets are dicts with a min-heap of (time, task id) beside them; entries
whose time has passed are dropped lazily, and a cancelled task is removed from the dict at
once (its stale heap entry is skipped when it surfaces).
"""

from __future__ import annotations

import heapq
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


@dataclass(slots=True)
class KeyLedger:
    """What one API key has in progress and how fast it has been submitting."""

    submit_times: deque[float] = field(default_factory=deque)
    max_submits_per_window: int = 0
    in_flight: _ExpiringSet = field(default_factory=_ExpiringSet)
    queued: _ExpiringSet = field(default_factory=_ExpiringSet)
    max_in_flight: int = 0
    slot_ends: list[float] = field(default_factory=list)  # heap; WaveSpeed-style queueing only

    def submits_in_window(self, now: float, window_s: float) -> int:
        times = self.submit_times
        while times and times[0] <= now - window_s:
            times.popleft()
        return len(times)

    def slot_start(self, ready: float, concurrency: int | None) -> float:
        """When a task ready at `ready` gets a generation slot (first come, first served).

        The caller must `take_slot(end)` with the task's end time afterwards.
        """
        if concurrency is None:
            self.slot_ends.clear()
            return ready
        ends = self.slot_ends
        while len(ends) > concurrency:  # the limit shrank at runtime
            heapq.heappop(ends)
        if len(ends) < concurrency:
            return ready
        return max(ready, heapq.heappop(ends))

    def take_slot(self, end: float, concurrency: int | None) -> None:
        if concurrency is not None:
            heapq.heappush(self.slot_ends, end)

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

    def release(self, task_id: str) -> None:
        """A task ended early (cancelled)."""
        self.in_flight.discard(task_id)
        self.queued.discard(task_id)
