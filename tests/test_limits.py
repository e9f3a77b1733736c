"""The Redis sliding-window limiter and AIMD, on a real Redis, with `now` passed explicitly."""

from __future__ import annotations

from collections import deque
from itertools import pairwise

import pytest

from genbatch.config import Settings
from genbatch.models import ItemState
from genbatch.providers.accounts import env_account
from genbatch.store import JobStore
from genbatch.store.limits import Limits, Rate, rates_for

RATE = Rate(rpm=120, period=60.0, recover_s=120.0)
WINDOW = 60.0 * 1.01  # the period stretched by the 1 % jitter margin


@pytest.fixture
def limits(store: JobStore) -> Limits:
    return Limits(store.debug.client, store.prefix)


def test_a_full_minute_at_once_then_as_grants_age_out(limits: Limits) -> None:
    granted, wait = limits.take("novita", "submit", 100, RATE, now=1000.0)
    assert (granted, wait) == (100, 0.0)  # room in the window: all at once, no spacing
    granted, wait = limits.take("novita", "submit", 100, RATE, now=1010.0)
    assert granted == 20
    assert wait == pytest.approx(WINDOW - 10.0)  # the first 100 age out together
    assert limits.take("novita", "submit", 1, RATE, now=1000.0 + WINDOW - 0.01)[0] == 0
    assert limits.take("novita", "submit", 200, RATE, now=1000.0 + WINDOW + 1e-6)[0] == 100
    assert limits.take("novita", "submit", 200, RATE, now=1010.0 + WINDOW + 1e-6)[0] == 20


def test_wait_names_when_the_next_grant_comes(limits: Limits) -> None:
    for t in range(120):
        assert limits.take("novita", "submit", 1, RATE, now=float(t) / 4)[0] == 1
    granted, wait = limits.take("novita", "submit", 1, RATE, now=30.0)
    assert granted == 0 and wait == pytest.approx(WINDOW - 30.0)
    assert limits.take("novita", "submit", 5, RATE, now=WINDOW + 0.3)[0] == 2


def test_no_sliding_minute_sees_more_than_rpm(limits: Limits) -> None:
    """Taking greedily at uneven times for five minutes: every 60 s window holds ≤ rpm
    grants, and the whole budget is used."""
    times: list[float] = []
    now = 0.0
    step = 0
    while now < 300:
        k, _ = limits.take("highwayapi", "submit", 7 + step % 40, RATE, now)
        times += [now] * k
        step += 1
        now += 0.05 + (step % 13) * 0.11
    window: deque[float] = deque()
    worst = 0
    for t in times:
        window.append(t)
        while window[0] <= t - 60.0:
            window.popleft()
        worst = max(worst, len(window))
    assert worst == 120
    assert len(times) >= 120 * (300 // WINDOW)


def test_buckets_are_separate_per_account_and_kind(limits: Limits) -> None:
    one = Rate(rpm=2, period=60.0, recover_s=120.0)
    assert limits.take("novita", "submit", 5, one, 0.0)[0] == 2
    assert limits.take("novita", "poll", 5, one, 0.0)[0] == 2
    assert limits.take("wavespeed", "submit", 5, one, 0.0)[0] == 2
    assert limits.take("novita", "submit", 5, one, 1.0)[0] == 0


def test_refund_gives_unused_grants_back(limits: Limits) -> None:
    assert limits.take("novita", "submit", 100, RATE, 0.0)[0] == 100
    limits.refund("novita", "submit", 30)
    assert limits.take("novita", "submit", 100, RATE, 1.0)[0] == 50


def test_refund_gives_back_the_spacing_after_a_429_too(limits: Limits) -> None:
    rate = Rate(rpm=120, period=60.0, recover_s=1e9, tolerance=2.0)
    limits.decrease("novita", "submit", 0.0, beta=0.5, min_factor=0.1, hold=0.0,
                    recover_s=1e9)
    granted, _ = limits.take("novita", "submit", 10, rate, 1.0)
    assert granted == 2  # what two seconds of slack cover at one per ~1.01 s
    limits.refund("novita", "submit", 2)
    assert limits.take("novita", "submit", 10, rate, 1.0)[0] == 2  # not held back by them


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
    slow = Rate(rpm=120, period=60.0, recover_s=1e9)
    times = [10.0 + t / 100 for t in range(6000)
             if limits.take("novita", "submit", 100, slow, 10.0 + t / 100)[0]]
    assert 29 <= len(times) <= 30  # a quarter of 120 a minute, spaced evenly
    assert min(b - a for a, b in pairwise(times)) >= WINDOW / 30 - 1e-6


def test_decrease_pause_blocks_grants(limits: Limits) -> None:
    limits.decrease("novita", "submit", 0.0, beta=0.5, min_factor=0.1, hold=0.0,
                    recover_s=120.0, pause=5.0)
    granted, wait = limits.take("novita", "submit", 5, RATE, 3.0)
    assert granted == 0 and wait == pytest.approx(2.0)
    assert limits.take("novita", "submit", 5, RATE, 5.0)[0] == 1  # and spaced from then on


def test_claim_due_polls_within_budget_others_unlimited(store: JobStore,
                                                        limits: Limits) -> None:
    for i in range(10):
        store.debug.set_item(f"b:{i}", {"state": ItemState.SUBMITTED, "provider": "novita"})
        store.items.set_timer(f"b:{i}", 1.0)
    for i in range(3):
        store.debug.set_item(f"d:{i}", {"state": ItemState.DOWNLOADING, "provider": "novita"})
        store.items.set_timer(f"d:{i}", 1.0)
    rate = Rate(rpm=2, period=60.0, recover_s=120.0)
    got = limits.claim_due(10.0, 100.0, 100, {"novita": rate})
    polls = [i for i, s in got if s == "submitted"]
    assert len(polls) == 2  # the minute's whole poll budget
    assert sorted(i for i, s in got if s == "downloading") == ["d:0", "d:1", "d:2"]
    assert ("", "novita") in got  # the account whose poll budget held polls back
    # The rest stay due and come out as the budget refills.
    assert store.debug.timers_due(10.0) == 8
    assert not [i for i, _ in limits.claim_due(30.0, 100.0, 100, {"novita": rate}) if i]
    later = limits.claim_due(10.0 + WINDOW + 1e-6, 100.0, 100, {"novita": rate})
    assert len([i for i, _ in later if i]) == 2


def test_settings_rates() -> None:
    s = Settings(time_factor=10, wavespeed_submit_rpm=2, scheduler_tick_s=0.5)
    r = rates_for(s, env_account(s, "wavespeed"))
    assert (r["submit"].rpm, r["submit"].period, r["submit"].tolerance) == (2, 6.0, 1.0)
    assert r["poll"].rpm == env_account(s, "wavespeed").poll_rpm == 120


def test_after_a_429_grants_are_spaced_until_the_rate_recovers(limits: Limits) -> None:
    """A provider that objected to a burst does not get another: while the AIMD factor is
    below 1, one grant per window / (rpm * f); bursts come back once it has recovered."""
    rate = Rate(rpm=120, period=60.0, recover_s=60.0)
    limits.decrease("novita", "submit", 0.0, beta=0.5, min_factor=0.1, hold=0.0,
                    recover_s=60.0, pause=1.0)
    granted, wait = limits.take("novita", "submit", 20, rate, 1.0)
    f = 0.5 + 1.0 / 60
    assert granted == 1 and wait == pytest.approx(WINDOW / (120 * f))
    assert limits.take("novita", "submit", 20, rate, 1.0 + wait / 2)[0] == 0
    assert limits.take("novita", "submit", 20, rate, 1.0 + wait)[0] == 1
    assert limits.take("novita", "submit", 100, rate, 200.0)[0] == 100  # recovered: a burst


def test_a_fast_account_gets_a_ticks_worth_of_spaced_grants_per_call(limits: Limits) -> None:
    """Spacing after a 429 must not cap a fast account at one grant per scheduler tick:
    each call gets what its tolerance (two ticks) covers at the reduced rate."""
    rate = Rate(rpm=60000, period=60.0, recover_s=1e9, tolerance=1.0)
    limits.decrease("highwayapi", "poll", 0.0, beta=0.5, min_factor=0.1, hold=0.0,
                    recover_s=1e9)
    iv = WINDOW / 30000
    first, _ = limits.take("highwayapi", "poll", 5000, rate, 1.0)
    assert first == int(1.0 / iv) + 1
    second, _ = limits.take("highwayapi", "poll", 5000, rate, 1.5)
    assert second == pytest.approx(0.5 / iv, abs=1)  # then the rate, not more
