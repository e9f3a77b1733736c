"""Poll timing: pure functions, no clock."""

from __future__ import annotations

import math
import random

import pytest

from genbatch.config import Settings
from genbatch.models import ItemState
from genbatch.store import JobStore
from genbatch.worker.polling import (
    first_poll_delay,
    learning_poll_delay,
    next_poll_delay,
    queued_poll_delay,
)
from genbatch.worker.queue_ahead import queue_wait_s
from tests.dispatching import dispatch_items

S = Settings(poll_min_interval_s=5, poll_max_interval_s=60, first_poll_s=30)


def _submitting(store: JobStore, bid: str, provider: str, model: str, n: int) -> list[str]:
    """`n` items of one batch at `provider`, dispatched and now submitting (their ids)."""
    store.ingest.create(bid, {}, created_at=1.0)
    store.ingest.add_items(bid, [{"seq": str(i), "state": "pending", "provider": provider,
                                  "model": model, "req": "{}"} for i in range(1, n + 1)])
    store.ingest.commit(bid, [provider])
    ids = [f"{bid}:{i}" for i in range(1, n + 1)]
    assert dispatch_items(store, provider, bid, 5, 5, 1e12) == ids
    for iid in ids:
        store.items.transition(iid, [ItemState.DISPATCHED], ItemState.SUBMITTING)
    return ids


def test_first_poll_when_likely_done_within_bounds() -> None:
    assert first_poll_delay(20.0, None, S) == 20.0  # typical time of a model not learned yet
    assert first_poll_delay(90.0, None, S) == 30.0  # capped by GENBATCH_FIRST_POLL_S
    assert first_poll_delay(1.0, None, S) == 5.0  # never sooner than the provider allows
    assert first_poll_delay(20.0, 12.0, S) == 12.0  # the provider's ETA wins


def test_a_learned_time_is_trusted_beyond_the_first_poll_cap() -> None:
    """A model learned to take 5 minutes is first polled near then, not after 30 s."""
    assert first_poll_delay(240.0, None, S, learned=True) == 240.0
    assert first_poll_delay(2.0, None, S, learned=True) == 5.0  # still never too soon


def test_backoff_with_jitter_never_below_min_nor_above_max() -> None:
    rng = random.Random(1)
    delays = [[next_poll_delay(p, None, S, rng) for p in range(1, 12)] for _ in range(50)]
    assert all(5.0 <= d <= 60.0 for row in delays for d in row)
    assert max(row[-1] for row in delays) == 60.0
    means = [sum(row[i] for row in delays) / 50 for i in range(11)]
    assert means[3] > means[2] * 1.2  # backs off after three polls at the minimum
    assert len({round(row[3], 6) for row in delays}) > 10  # jittered


def test_repoll_spacing_scales_with_the_generation_time() -> None:
    """Re-polls come 15 % of the typical time apart (at least the provider's minimum), so a
    long generation is not polled every 5 s; with ±10 % jitter."""
    rng = random.Random(2)
    short = [next_poll_delay(1, None, S, rng, typical_s=20.0) for _ in range(200)]
    long = [next_poll_delay(1, None, S, rng, typical_s=200.0) for _ in range(200)]
    assert min(short) == 5.0 and max(short) <= 5.5
    assert min(long) >= 0.9 * 30.0 and max(long) <= 1.1 * 30.0


def test_polls_per_job_stay_about_two_to_three_at_any_length() -> None:
    """The schedule (first poll at 0.8 x the learned time, then the re-polls) on lognormal
    generation times (sigma 0.3) of 20 s to 5 min: at most 3 polls per job on average.
    (Longer ones reach the 60 s maximum interval and take more.)"""
    rng = random.Random(3)
    for mean in (20.0, 60.0, 120.0, 300.0):
        polls = 0
        for _ in range(2000):
            took = rng.lognormvariate(math.log(mean) - 0.045, 0.3)
            t, n = first_poll_delay(0.8 * mean, None, S, learned=True), 1
            while t < took:
                t += next_poll_delay(n, None, S, rng, typical_s=mean)
                n += 1
            polls += n
        assert polls / 2000 <= 3.0, (mean, polls / 2000)


def test_a_model_not_learned_yet_is_polled_a_quarter_of_the_tasks_age_apart() -> None:
    """Nothing to time it by: the re-polls grow with the task's age, so whatever its length
    it is seen done at most about a quarter of its run late; within [min, max]."""
    rng = random.Random(4)
    at_40 = [learning_poll_delay(40.0, S, rng) for _ in range(200)]
    assert min(at_40) >= 0.9 * 10.0 and max(at_40) <= 1.1 * 10.0
    assert len({round(d, 6) for d in at_40}) > 10  # jittered
    assert learning_poll_delay(8.0, S, rng) == 5.0  # never below the minimum interval
    assert learning_poll_delay(1000.0, S, rng) == 60.0  # nor above the maximum
    assert learning_poll_delay(40.0, Settings(poll_min_interval_s=5, time_factor=10),
                               rng) <= 1.1  # scaled like every wait


def test_the_backoff_grows_no_further_than_a_quarter_of_the_tasks_age() -> None:
    rng = random.Random(5)
    plain = next_poll_delay(10, None, S, rng, typical_s=20.0)  # 5 x 1.5^7 = 85: the max
    assert plain == 60.0
    capped = [next_poll_delay(10, None, S, rng, typical_s=20.0, age_s=40.0)
              for _ in range(50)]
    assert all(9.0 <= d <= 11.0 for d in capped)  # a quarter of 40 s


def test_a_draining_provider_s_last_tasks_are_not_backed_off_by_their_poll_count() -> None:
    """Nothing waits for the provider: the batch ends with its last task, so a task past
    its typical time is re-polled by how far past it is, not 1.5x longer each poll."""
    rng = random.Random(6)
    backed_off = [next_poll_delay(6, None, S, rng, typical_s=20.0, age_s=32.0)
                  for _ in range(50)]
    draining = [next_poll_delay(6, None, S, rng, typical_s=20.0, age_s=32.0, draining=True)
                for _ in range(50)]
    assert min(backed_off) >= 0.9 * 8.0  # min(5 x 1.5^3, 32 / 4)
    assert all(4.5 <= d <= 5.5 for d in draining)  # 12 s past typical: the re-poll step
    far_past = next_poll_delay(6, None, S, rng, typical_s=20.0, age_s=220.0, draining=True)
    assert 0.9 * 50.0 <= far_past <= 1.1 * 50.0  # a stuck task still backs off


def test_time_factor_divides_every_wait() -> None:
    fast = Settings(time_factor=10, first_poll_s=30)
    assert first_poll_delay(20.0, None, fast) == 2.0


def test_generation_times_are_learned_per_tier() -> None:
    """A flex task may queue for hours: its time must not move the default tier's polls."""
    from genbatch.worker.steps import _gen_key

    assert _gen_key("m", None) == _gen_key("m", "default") == "m"
    assert _gen_key("m", "flex") == "m@flex"


def test_a_task_still_queued_is_polled_after_most_of_a_generation() -> None:
    s = Settings(poll_min_interval_s=5.0, poll_max_interval_s=60.0)
    rng = random.Random(1)
    delays = [queued_poll_delay(20.0, s, rng) for _ in range(50)]
    assert all(0.8 * 20 * 0.9 <= d <= 0.8 * 20 * 1.1 for d in delays)  # not 15 % apart
    assert queued_poll_delay(3.0, s, rng) == 5.0  # never below the minimum interval


def test_the_expected_queue_wait_counts_the_tasks_ahead_less_those_unseen() -> None:
    s = Settings(poll_min_interval_s=5.0)
    # C=20, T=20 s: unseen finished ≈ 20 x 5 / 40 = 2.5; 30 in flight: 7.5 ahead, 1 s each
    assert math.isclose(queue_wait_s(30, 20, 20.0, s), 7.5)
    assert queue_wait_s(20, 20, 20.0, s) == 0.0  # within the concurrency: starts at once
    assert queue_wait_s(22, 20, 20.0, s) == 0.0  # fewer ahead than already finished
    assert queue_wait_s(30, 0, 20.0, s) == 0.0


def test_a_stated_run_time_is_learned_and_a_queued_task_polled_late(redis_url: str) -> None:
    """WaveSpeed's `timings.inference` is learned as it is (its queue time left out); a
    poll that finds the task still queued comes back after most of a generation."""
    import time

    from genbatch.models import PollResult, TaskStatus
    from genbatch.worker.runtime import Runtime
    from genbatch.worker.steps import apply_poll

    store = JobStore.from_url(redis_url)
    model = "seedance-v1.5-pro-i2v"
    now = time.time()
    for iid in _submitting(store, "b", "wavespeed", model, 2):
        store.items.transition(iid, [ItemState.SUBMITTING], ItemState.SUBMITTED,
                               fields={"submitted_at": now - 30, "typical_s": 40.0})
    rt = Runtime(Settings(redis_url=redis_url, poll_min_interval_s=5.0),
                 enqueue=lambda kind, ident: None)

    done = PollResult(TaskStatus.SUCCEEDED, "completed", video_url="https://v/x.mp4",
                      run_s=12.5)
    assert apply_poll(rt, store.items.get("b:1"), "b:1", done, 1) == "downloading"
    assert store.gen_times.typical("wavespeed", model) == 12.5  # not the 30 s it took

    queued = PollResult(TaskStatus.QUEUED, "created")
    assert apply_poll(rt, store.items.get("b:2"), "b:2", queued, 1) == "running"
    due = float(store.items.get("b:2")["poll_due"]) - time.time()
    assert 0.8 * 40 * 0.85 <= due <= 0.8 * 40 * 1.1  # not a re-poll 15 % of it later


def test_the_wait_at_a_provider_that_queues_is_not_learned_as_generation(
        redis_url: str) -> None:
    """Runway states no run time: a task held THROTTLED before it ran is learned net of the
    wait expected at its submit (`queue_wait_s`), on a first-poll hit as on a later one."""
    import time

    from genbatch.models import PollResult, TaskStatus
    from genbatch.worker.runtime import Runtime
    from genbatch.worker.steps import apply_poll

    store = JobStore.from_url(redis_url)
    model = "gen4_turbo"
    assert _submitting(store, "r", "runway", model, 1) == ["r:1"]
    now = time.time()
    # Due 26 s after its submit: 10 s of expected wait, then 0.8 x a 20 s generation.
    store.items.transition("r:1", [ItemState.SUBMITTING], ItemState.SUBMITTED,
                           fields={"submitted_at": now - 26, "first_poll_s": 26.0,
                                   "queue_wait_s": 10.0, "typical_s": 20.0})
    rt = Runtime(Settings(redis_url=redis_url), enqueue=lambda kind, ident: None)
    done = PollResult(TaskStatus.SUCCEEDED, "SUCCEEDED", video_url="https://v/x.mp4")
    assert apply_poll(rt, store.items.get("r:1"), "r:1", done, 1) == "downloading"
    learned = store.gen_times.typical("runway", model)
    assert learned is not None
    assert math.isclose(learned, 0.85 * 16.0, rel_tol=1e-6)  # not 26 x 0.85 = 22.1


def test_a_task_queued_behind_others_before_anything_was_learned_is_an_upper_bound(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a time is learned no wait is expected, yet a task submitted beyond Runway's
    concurrency waited THROTTLED for an unknown time: its span only bounds its generation
    from above, so it is learned only when below the current estimate."""
    import time

    from genbatch.models import GenerationRequest, PollResult, TaskStatus
    from genbatch.worker.runtime import Runtime
    from genbatch.worker.steps import _submitted, apply_poll

    monkeypatch.setenv("GENBATCH_RUNWAY_MAX_IN_FLIGHT", "1")
    store = JobStore.from_url(redis_url)
    model = "gen4_turbo"
    request = GenerationRequest(image="https://img/x.png", ratio="1280:720")
    _submitting(store, "w", "runway", model, 2)  # 2 in flight at a concurrency of 1
    rt = Runtime(Settings(redis_url=redis_url), enqueue=lambda kind, ident: None)
    now = time.time()
    for iid, spent in (("w:1", 60.0), ("w:2", 16.0)):
        item = store.items.get(iid)
        assert _submitted(rt, item, iid, request, f"t-{iid}", webhook=False,
                          now=now - spent) == ItemState.SUBMITTED
        store.items.set_fields({iid: {"polled_at": str(now - 2.0)}})  # then seen running
        assert store.items.get(iid).wait_unknown
    done = PollResult(TaskStatus.SUCCEEDED, "SUCCEEDED", video_url="https://v/x.mp4")
    assert apply_poll(rt, store.items.get("w:1"), "w:1", done, 2) == "downloading"
    assert store.gen_times.typical("runway", model) is None  # 59 s: over Runway's 45 s
    assert apply_poll(rt, store.items.get("w:2"), "w:2", done, 2) == "downloading"
    learned = store.gen_times.typical("runway", model)
    assert learned is not None and math.isclose(learned, 15.0, abs_tol=0.5)


def test_a_running_task_is_polled_when_its_progress_says_it_ends() -> None:
    """Two readings of its progress tell when a running task ends: a generation much longer
    than the typical one is polled then, not with backoff long after."""
    from genbatch.worker.polling import progress_eta_s

    s = Settings(time_factor=10.0)
    eta = progress_eta_s(40.0, 100.0, 60.0, 101.0, s)  # 20 points in 1 s of wall clock
    assert eta is not None and math.isclose(eta, 2.0 * 10.0)  # 2 s more, in provider time
    assert progress_eta_s(None, 100.0, 60.0, 101.0, s) is None  # one reading tells nothing
    assert progress_eta_s(60.0, 100.0, 60.0, 101.0, s) is None  # it did not move
    assert progress_eta_s(0.0, 100.0, 60.0, 101.0, s) is None  # it had not started
    soon = progress_eta_s(40.0, 100.0, 60.0, 101.0, S)  # 2 s more, at S's own time
    assert next_poll_delay(6, soon, S, random.Random(1)) <= 5.5  # the minimum interval
    assert next_poll_delay(6, None, S, random.Random(1), typical_s=20.0) > 15.0  # backoff


def test_a_wave_submitted_before_anything_was_learned_is_polled_by_age_then_by_what_is_learned(
        redis_url: str) -> None:
    """Kling's documented two minutes would space re-polls 18 s apart: until the model's time
    is learned a running task is re-polled a quarter of its age apart; once the first task
    of the wave teaches a time, the others are polled by it (and no longer `learning`)."""
    import time

    from genbatch.models import PollResult, TaskStatus
    from genbatch.worker.runtime import Runtime
    from genbatch.worker.steps import apply_poll

    store = JobStore.from_url(redis_url)
    model = "kling-v2-1"
    now = time.time()
    for iid, age in zip(_submitting(store, "w", "kling", model, 2), (40.0, 2.0), strict=True):
        store.items.transition(iid, [ItemState.SUBMITTING], ItemState.SUBMITTED,
                               fields={"submitted_at": now - age, "typical_s": 120.0,
                                       "learning": 1})
    rt = Runtime(Settings(redis_url=redis_url, poll_min_interval_s=5.0),
                 enqueue=lambda kind, ident: None)
    running = PollResult(TaskStatus.RUNNING, "processing")

    def due(iid: str) -> float:
        return float(store.items.get(iid)["poll_due"]) - time.time()

    assert apply_poll(rt, store.items.get("w:1"), "w:1", running, 2) == "running"
    assert 0.25 * 40 * 0.85 <= due("w:1") <= 0.25 * 40 * 1.1  # not 18 s (15 % of 120)
    assert store.items.get("w:1").learning

    store.gen_times.observe("kling", model, 20.0)  # a first task of the wave was seen done
    assert apply_poll(rt, store.items.get("w:2"), "w:2", running, 2) == "running"
    item = store.items.get("w:2")
    assert not item.learning and item.typical_s == 20.0
    assert 0.8 * 20 - 2 - 1 <= due("w:2") <= 0.8 * 20 - 2  # at 0.8 x the learned 20 s


def test_the_first_samples_are_averaged_plainly_then_weighted(redis_url: str) -> None:
    """The first tasks seen done are a wave's fastest: weighted at 0.1 from the first one on
    they held the learned time low long after; the first ten are a plain mean, then each
    new sample moves it by a tenth."""

    times = JobStore.from_url(redis_url).gen_times
    for seconds in (12.0, 16.0, 20.0, 24.0, 28.0):
        times.observe("fal", "m", seconds)
    assert times.typical("fal", "m") == 20.0
    for _ in range(5):
        times.observe("fal", "m", 20.0)
    assert times.typical("fal", "m") == 20.0  # ten samples, mean 20
    times.observe("fal", "m", 30.0)
    assert math.isclose(times.typical("fal", "m") or 0.0, 21.0)  # 20 + 0.1 x 10
    assert times.typical("fal", "other") is None and times.fastest("fal") == 21.0
