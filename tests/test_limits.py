"""The Redis GCRA limiter and AIMD, on a real Redis, with `now` passed explicitly."""

from __future__ import annotations

from collections import deque

import pytest

from genbatch.config import Settings
from genbatch.store import JobStore
from genbatch.store.limits import Limits, Rate, rates_for

RATE = Rate(rpm=120, period=60.0, burst=1.0, recover_s=120.0)


@pytest.fixture
def limits(store: JobStore) -> Limits:
    return Limits(store.r, store.prefix)


def test_burst_then_steady_interval(limits: Limits) -> None:
    iv = (60.0 * 1.01 + 1.0) / 120
    granted, wait = limits.take("novita", "submit", 100, RATE, now=1000.0)
    assert granted == 2  # one now plus the burst tolerance (1 s) worth
    assert wait == pytest.approx(2 * iv - 1.0)
    assert limits.take("novita", "submit", 100, RATE, now=1000.0)[0] == 0
    # Then one per interval, and idle time is not banked beyond the burst.
    now = 1000.0 + 2 * iv - 1.0
    assert [limits.take("novita", "submit", 100, RATE, now + i * iv)[0]
            for i in range(10)] == [1] * 10
    assert limits.take("novita", "submit", 100, RATE, now=5000.0)[0] == 2


def test_no_sliding_minute_sees_more_than_rpm(limits: Limits) -> None:
    """Taking greedily every 0.3 s for five minutes: every 60 s window holds ≤ rpm grants."""
    times: list[float] = []
    now = 0.0
    while now < 300:
        k, _ = limits.take("highwayapi", "submit", 50, RATE, now)
        times += [now] * k
        now += 0.3
    window: deque[float] = deque()
    worst = 0
    for t in times:
        window.append(t)
        while window[0] <= t - 60.0:
            window.popleft()
        worst = max(worst, len(window))
    assert worst <= 120
    assert len(times) >= 120 * 5 * 60 / 61.6 - 2  # and the budget is used, not wasted


def test_buckets_are_separate_per_account_and_kind(limits: Limits) -> None:
    assert limits.take("novita", "submit", 5, RATE, 0.0)[0] == 2
    assert limits.take("novita", "poll", 5, RATE, 0.0)[0] == 2
    assert limits.take("wavespeed", "submit", 5, RATE, 0.0)[0] == 2


def test_refund_gives_unused_grants_back(limits: Limits) -> None:
    assert limits.take("novita", "submit", 2, RATE, 0.0)[0] == 2
    limits.refund("novita", "submit", 2, 0.0)
    assert limits.take("novita", "submit", 5, RATE, 0.0)[0] == 2


def test_aimd_halves_once_per_hold_and_recovers_linearly(limits: Limits) -> None:
    kw = {"beta": 0.5, "min_factor": 0.05, "hold": 10.0, "recover_s": 120.0}
    assert limits.decrease("novita", "submit", 100.0, **kw) == 0.5
    # The same burst of 429s does not cut again (1 s of recovery shows).
    assert limits.decrease("novita", "submit", 101.0, **kw) == pytest.approx(0.5 + 1 / 120)
    assert limits.decrease("novita", "submit", 111.0, **kw) == pytest.approx(
        (0.5 + 11 / 120) * 0.5)
    f0 = limits.factor("novita", "submit", 111.0, 120.0)
    assert limits.factor("novita", "submit", 141.0, 120.0) == pytest.approx(f0 + 30 / 120)
    assert limits.factor("novita", "submit", 1000.0, 120.0) == 1.0


def test_aimd_floor_and_slower_grants(limits: Limits) -> None:
    kw = {"beta": 0.5, "min_factor": 0.25, "hold": 0.0, "recover_s": 1e9}
    for t in range(5):
        limits.decrease("novita", "submit", float(t), **kw)
    assert limits.factor("novita", "submit", 5.0, 1e9) == pytest.approx(0.25)
    slow = Rate(rpm=120, period=60.0, burst=1.0, recover_s=1e9)
    got = sum(limits.take("novita", "submit", 100, slow, 10.0 + s)[0] for s in range(60))
    assert got == pytest.approx(30 * 60 / 61.6, abs=1.5)  # a quarter of 120/min


def test_decrease_pause_blocks_grants(limits: Limits) -> None:
    limits.decrease("novita", "submit", 0.0, beta=0.5, min_factor=0.1, hold=0.0,
                    recover_s=120.0, pause=5.0)
    assert limits.take("novita", "submit", 5, RATE, 3.0)[0] == 0
    assert limits.take("novita", "submit", 5, RATE, 5.0)[0] >= 1


def test_claim_due_polls_within_budget_others_unlimited(store: JobStore,
                                                        limits: Limits) -> None:
    for i in range(10):
        store.r.hset(store.k("item", f"b:{i}"), mapping={"state": "submitted",
                                                         "provider": "novita"})
        store.set_timer(f"b:{i}", 1.0)
    for i in range(3):
        store.r.hset(store.k("item", f"d:{i}"), mapping={"state": "downloading",
                                                         "provider": "novita"})
        store.set_timer(f"d:{i}", 1.0)
    rate = Rate(rpm=60, period=60.0, burst=2.0, recover_s=120.0)
    got = limits.claim_due(10.0, 100.0, 100, {"novita": rate})
    polls = [i for i, s in got if s == "submitted"]
    assert len(polls) == 2  # 1 now + what 2 s of burst covers at one per ~1.04 s
    assert sorted(i for i, s in got if s == "downloading") == ["d:0", "d:1", "d:2"]
    assert ("", "novita") in got  # the account whose poll budget held polls back
    # The rest stay due and come out as the budget refills.
    assert store.r.zcount(store.k("timers"), "-inf", 10.0) == 8
    later = limits.claim_due(10.0 + 62.6 / 60 * 2 + 1e-6, 100.0, 100, {"novita": rate})
    assert len([i for i, _ in later if i]) == 2


def test_settings_rates() -> None:
    s = Settings(time_factor=10, wavespeed_submit_rpm=2, scheduler_tick_s=0.5)  # type: ignore[arg-type]
    r = rates_for(s, "wavespeed")
    assert (r["submit"].rpm, r["submit"].period, r["submit"].burst) == (2, 6.0, 1.0)
    assert r["poll"].rpm == s.wavespeed_poll_rpm
