"""A small time series per batch, for the chart on its dashboard page.

Key (under the store's prefix):
    series:{bid}    list of samples, oldest first; each `t c1 c2 …` (space-separated), with
                    the batch's counters (`SERIES_FIELDS`) at time t: cumulative ones
                    (succeeded, failed …, rate_limited) and gauges (in_flight, pending …)

The scheduler samples every active batch from its sweep (`sample`), in one Lua call that
reads the batch hash and its 429 counter (`metrics:batch:{bid}` field `rate_limited`).
The list stays bounded over any life: a new sample replaces the last one while that one
is less than `step` after the one before it (so the newest is always current and every
other gap is at least `step`), where `step` grows with the batch's age (age ÷ half
the cap, never under `min_step_s`); past `cap` samples every second one is dropped (the
first and last kept). So a 5-minute batch has 5-second resolution, an overnight one still
at most `cap` points spread over its whole life — about 10 KB per batch at most.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from genbatch.models import OPEN_COUNTERS, TERMINAL_COUNTERS, Counter
from genbatch.store import scripts

# Counters of a batch sampled into its series, in this order after the time.
SERIES_COUNTERS: tuple[Counter, ...] = (*TERMINAL_COUNTERS, *OPEN_COUNTERS)
SERIES_FIELDS: tuple[str, ...] = (*SERIES_COUNTERS, "rate_limited")
MAX_POINTS = 240
MIN_STEP_S = 5.0

SAMPLE = scripts.load("sample_series")


@dataclass(frozen=True, slots=True)
class Point:
    """One sample: when, and each of SERIES_FIELDS at that time."""

    t: float
    values: dict[str, int]

    @property
    def done(self) -> int:
        """Items in a terminal state (cumulative)."""
        return sum(self.values.get(s, 0) for s in SERIES_FIELDS[:5])


class Series:
    """The per-batch time series (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str = "gb:", *,
                 cap: int = MAX_POINTS, min_step_s: float = MIN_STEP_S) -> None:
        self.r = client
        self.prefix = prefix
        self.cap = cap
        self.min_step_s = min_step_s
        self._sample = client.register_script(SAMPLE)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def sample(self, batch_ids: Sequence[str], now: float,
               min_step_s: float | None = None) -> None:
        """Record the current counters of each batch (one round trip); samples at least
        `min_step_s` apart (default: the series' own)."""
        step = self.min_step_s if min_step_s is None else min_step_s
        pipe = self.r.pipeline(transaction=False)
        for bid in batch_ids:
            self._sample(keys=[self._key("series", bid), self._key("batch", bid),
                               self._key("metrics", "batch", bid)],
                         args=[repr(now), step, self.cap, *SERIES_FIELDS[:-1]],
                         client=pipe)
        pipe.execute()

    def read(self, batch_id: str) -> list[Point]:
        raw: list[str] = self.r.lrange(self._key("series", batch_id), 0, -1)  # type: ignore[assignment]
        return [parse_point(p) for p in raw]


def parse_point(text: str) -> Point:
    t, *values = text.split()
    return Point(float(t), {f: int(float(v)) for f, v in zip(SERIES_FIELDS, values,
                                                             strict=False)})
