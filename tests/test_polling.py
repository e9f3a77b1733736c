"""Poll timing: pure functions, no clock."""

from __future__ import annotations

import random

from genbatch.config import Settings
from genbatch.worker.polling import first_poll_delay, next_poll_delay

S = Settings(poll_min_interval_s=5, poll_max_interval_s=60, first_poll_s=30)


def test_first_poll_when_likely_done_within_bounds() -> None:
    assert first_poll_delay(20.0, None, S) == 20.0  # learned or typical time
    assert first_poll_delay(90.0, None, S) == 30.0  # capped by GENBATCH_FIRST_POLL_S
    assert first_poll_delay(1.0, None, S) == 5.0  # never sooner than the provider allows
    assert first_poll_delay(20.0, 12.0, S) == 12.0  # the provider's ETA wins


def test_backoff_with_jitter_never_below_min_nor_above_max() -> None:
    rng = random.Random(1)
    delays = [[next_poll_delay(p, None, S, rng) for p in range(1, 12)] for _ in range(50)]
    assert all(5.0 <= d <= 60.0 for row in delays for d in row)
    assert max(row[-1] for row in delays) == 60.0
    means = [sum(row[i] for row in delays) / 50 for i in range(11)]
    assert means[2] > means[1] * 1.2  # backs off after two polls at the minimum
    assert len({round(row[3], 6) for row in delays}) > 10  # jittered


def test_time_factor_divides_every_wait() -> None:
    fast = Settings(time_factor=10, first_poll_s=30)
    assert first_poll_delay(20.0, None, fast) == 2.0
