"""`max_running` (the most tasks started and not finished at once) per account, and the
per-model measures under `by_model`."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from genbatch.simulator import limits
from genbatch.simulator.limits import KeyLedger
from tests.simulator.helpers import BP_MODEL, KEY, FakeClock, Sim, byteplus_body, novita_body

NOVITA_SUBMIT = "/v3/async/seedance-v1.5-pro-i2v"
BP_TASKS = "/api/v3/contents/generations/tasks"
BP_OTHER = "seedance-1-0-pro-250528"


def test_max_running_counts_started_tasks_only(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    # 1 s queued, then 10 s running; no limit.
    sim = local(time_factor=1, latency_mean_s=10, queue_delay_s=1)
    with sim.client() as client:
        for i in range(3):
            assert client.post(NOVITA_SUBMIT, json=novita_body(seed=i)).status_code == 200
        before = sim.stats()
        clock.advance(2)
        during = sim.stats()
        clock.advance(20)
        client.post(NOVITA_SUBMIT, json=novita_body(seed=9))
        clock.advance(20)
        after = sim.stats()
    assert before["max_in_flight"]["novita"][KEY] == 3
    assert before["max_running"]["novita"][KEY] == 0  # all three still queued
    assert during["max_running"]["novita"][KEY] == 3
    assert after["max_running"]["novita"][KEY] == 3  # a peak is kept


def test_max_running_stays_within_a_queueing_providers_concurrency(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    # Two slots, five tasks of 10 s: runs 1-11, 1-11, 11-21, 11-21, 21-31. A task starting
    # as another ends does not run beside it.
    sim = local(time_factor=1, latency_mean_s=10, queue_delay_s=1, concurrency=2)
    with sim.client() as client:
        for i in range(5):
            assert client.post(BP_TASKS, json=byteplus_body(seed=i)).status_code == 200
        at_once = sim.stats()
        clock.advance(15)
        mid = sim.stats()
        clock.advance(20)
        done = sim.stats()
    assert at_once["queued"]["byteplus"][KEY] == 5
    assert at_once["max_in_flight"]["byteplus"][KEY] == 5
    assert at_once["max_running"]["byteplus"][KEY] == 0
    assert mid["queued"]["byteplus"][KEY] == 1 and mid["max_running"]["byteplus"][KEY] == 2
    assert done["max_running"]["byteplus"][KEY] == 2
    assert done["tasks_by_status"] == {"succeeded": 5}


def test_a_task_cancelled_while_queued_never_ran(
    local: Callable[..., Sim], clock: FakeClock
) -> None:
    sim = local(time_factor=1, latency_mean_s=10, queue_delay_s=5)
    with sim.client() as client:
        ids = [client.post(BP_TASKS, json=byteplus_body(seed=i)).json()["id"] for i in range(2)]
        clock.advance(1)
        assert client.delete(f"{BP_TASKS}/{ids[1]}").status_code == 200
        clock.advance(10)
    stats = sim.stats()
    assert stats["max_running"]["byteplus"][KEY] == 1
    assert stats["max_in_flight"]["byteplus"][KEY] == 2


def test_measures_per_model(local: Callable[..., Sim], clock: FakeClock) -> None:
    # The key runs 3 at once; BP_MODEL only 1, and 2 submits a minute.
    sim = local(time_factor=1, latency_mean_s=10, queue_delay_s=1, concurrency=3,
                model_limits={BP_MODEL: {"concurrency": 1, "rpm": 2}})
    with sim.client() as client:
        codes = [client.post(BP_TASKS, json=byteplus_body(seed=i)).status_code
                 for i in range(3)]
        codes += [client.post(BP_TASKS, json=byteplus_body(model=BP_OTHER, seed=i)).status_code
                  for i in range(3)]
        clock.advance(2)
        stats = sim.stats()
    assert codes == [200, 200, 429, 200, 200, 200]
    assert stats["by_model"] == {"byteplus": {KEY: {
        BP_MODEL: {"in_flight": 2, "max_in_flight": 2, "queued": 1, "max_running": 1,
                   "max_submits_per_minute": 2},
        # BP_MODEL's first and BP_OTHER's first two hold the key's three slots: BP_OTHER's
        # third waits for one.
        BP_OTHER: {"in_flight": 3, "max_in_flight": 3, "queued": 1, "max_running": 2,
                   "max_submits_per_minute": 3},
    }}}
    assert stats["max_running"]["byteplus"][KEY] == 3
    assert stats["max_submits_per_minute"]["byteplus"][KEY] == 5


def test_reset_forgets_the_per_model_measures(sim: Sim) -> None:
    with sim.client() as client:
        client.post(BP_TASKS, json=byteplus_body())
        assert set(sim.stats()["by_model"]["byteplus"][KEY]) == {BP_MODEL}
        sim.control.post("/_sim/reset")
    stats = sim.stats()
    assert stats["by_model"] == {} and stats["max_running"] == {}


@pytest.mark.parametrize("seed", range(5))
def test_the_running_peak_matches_a_brute_force_count(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random submits, cancels and stats reads, with unasked sweeps every few submits."""
    monkeypatch.setattr(limits, "SWEEP_AT", 7)
    rng = random.Random(seed)
    ledger, runs, now = KeyLedger(), {}, 0.0
    for n in range(400):
        now += rng.choice((0.0, rng.random()))
        start = now + rng.choice((0.0, rng.random() * 3))
        end = start + rng.choice((1.0, rng.random() * 5))
        task_id = f"t{n}"
        ledger.admit(task_id, now, start, end, 60.0)
        runs[task_id] = (start, end)
        queued = [t for t, (s, _) in runs.items() if s > now]
        if queued and rng.random() < 0.1:  # cancel a queued task
            cancelled = rng.choice(queued)
            ledger.release(cancelled, runs.pop(cancelled)[0], now)
        if rng.random() < 0.05:
            assert ledger.max_running(now) == brute_force_peak(runs, now)
    assert ledger.max_running(now + 100) == brute_force_peak(runs, now + 100)
    assert len(ledger.running.runs) == 0


def brute_force_peak(runs: dict[str, tuple[float, float]], now: float) -> int:
    """The most intervals holding any instant before `now` (a peak is at some start)."""
    return max((sum(1 for s, e in runs.values() if s <= t < e)
                for t, _ in runs.values() if t < now), default=0)
