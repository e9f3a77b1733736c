"""When to poll next: pure functions, so the schedule is easy to test and reason about."""

from __future__ import annotations

import random

from genbatch.config import Settings
from genbatch.models import GenerationRequest

# Re-polls of a generation that is due come this share of its typical time apart (never
# sooner than the provider allows), three times, then back off: the spacing scales with the
# model, so a 2-minute generation is not polled as often as a 20-second one and a job takes
# about 2-3 polls at any length.
REPOLL_SHARE = 0.15
REPOLLS_BEFORE_BACKOFF = 3
EARLY = 0.8  # first poll at this share of the learned generation time
# ... at the learned mean itself on an account that queues ahead (worker/queue_ahead.py): a
# task done and not seen yet holds none of the provider's slots there (a task queued behind
# it takes its slot), so polling early would buy nothing but polls.
EARLY_QUEUED = 1.0
# While a model's generation time is not learned yet, a running task is re-polled this share
# of its age apart: it is seen done at most this share of its run late, at any length.
LEARNING_SHARE = 0.25


def first_poll_delay(typical_s: float, eta_s: float | None, settings: Settings, *,
                     learned: bool = False) -> float:
    """Seconds from submit to the first poll: when the generation is likely done.

    The provider's ETA wins; a time learned from this model's finished items is trusted as
    it is (a model that takes five minutes is not polled every minute); a model not learned
    yet is polled at its typical time, at the latest after `first_poll_s`, so it is learned
    from early."""
    if eta_s and eta_s > 0:
        guess = _clamp(eta_s, settings)
    elif learned:
        guess = max(settings.poll_min_interval_s, typical_s)
    else:
        guess = _clamp(min(typical_s, settings.first_poll_s), settings)
    return guess / settings.time_factor


def next_poll_delay(
    polls: int, eta_s: float | None, settings: Settings, rng: random.Random | None = None,
    typical_s: float = 0.0, age_s: float | None = None, draining: bool = False,
) -> float:
    """Seconds to the next poll: the provider's ETA if it gives one, else `REPOLL_SHARE` of
    the generation's typical time (`typical_s`; at least the minimum interval), three
    times, then exponential backoff, with ±10 % jitter, within [min, max] interval. Given
    the task's age (`age_s`, unscaled seconds since submit), the backoff grows no further
    than `LEARNING_SHARE` of it; and when nothing waits for the provider any more
    (`draining`: the batch's last tasks, whose end is the batch's end) it grows only with
    how far the task is past its typical time, not with the polls: the backoff saw a
    batch's last task (35 s against 20 s typical) 7 s after its end."""
    if eta_s and eta_s > 0:
        base = eta_s
    else:
        # The generation is due (the first poll came when it was likely done).
        step = max(settings.poll_min_interval_s, REPOLL_SHARE * typical_s)
        base = step * (1.5 ** max(polls - REPOLLS_BEFORE_BACKOFF, 0))
        if age_s is not None and draining:
            base = max(step, LEARNING_SHARE * (age_s - typical_s))
        elif age_s is not None:
            base = min(base, max(step, LEARNING_SHARE * age_s))
    jitter = (rng or random).uniform(0.9, 1.1)
    return _clamp(base * jitter, settings) / settings.time_factor


def learning_poll_delay(age_s: float, settings: Settings,
                        rng: random.Random | None = None) -> float:
    """Seconds to the next poll of a running task whose model's generation time is not
    learned yet (`age_s`: unscaled seconds since its submit): `LEARNING_SHARE` of its age,
    ±10 % jitter, within [min, max] interval. Nothing else times it: re-polls by the
    documented typical time (two minutes for Kling) came 18 s apart and the first poll at
    `first_poll_s`, so 20 s generations were seen 8 s late and every slot of a provider that
    queues nothing idled meanwhile. The first task seen done teaches the model's time, and
    the others are polled by it from their next poll (worker/steps.py)."""
    jitter = (rng or random).uniform(0.9, 1.1)
    return _clamp(LEARNING_SHARE * age_s * jitter, settings) / settings.time_factor


def progress_eta_s(before: float | None, before_at: float | None, progress: float | None,
                   now: float, settings: Settings) -> float | None:
    """Seconds (unscaled, like a provider's ETA) until a running task is likely done, from
    how far its progress (0..100) moved since the previous poll (Runway, Novita report
    one); None without two readings that moved. Without it, a generation much longer than
    the typical one is re-polled with backoff and seen long after it ended: Runway's last
    task (35 s, against 20 s typical) was seen 12 s late, 4 % of the whole run."""
    if before is None or before_at is None or progress is None or now <= before_at:
        return None
    if not 0.0 < before < progress < 100.0:
        return None
    per_s = (progress - before) / (now - before_at)
    return (100.0 - progress) / per_s * settings.time_factor


def queued_poll_delay(typical_s: float, settings: Settings,
                      rng: random.Random | None = None) -> float:
    """Seconds to the next poll of a task its provider still queues (over the account's
    concurrency, see queue_ahead.py): once it starts it needs a whole generation, so re-polls
    15 % of a generation apart would only count its wait. Not before `EARLY` x its typical
    time, ±10 % jitter, within [min, max] interval."""
    jitter = (rng or random).uniform(0.9, 1.1)
    return _clamp(EARLY * typical_s * jitter, settings) / settings.time_factor


def list_poll_interval(typical_s: float, slots: int, settings: Settings) -> float:
    """Seconds (scaled) between two listings of an account with `slots` tasks of about
    `typical_s` (unscaled) each at a time (its concurrency, or more in flight): about two
    listings per task that ends when every slot is busy (`slots` end every `typical_s`),
    no more than one re-poll spacing apart (`REPOLL_SHARE` of the typical time, see
    next_poll_delay), never below `list_poll_s`. One listing sees every task: with 20 tasks
    of 20 s in flight that is two listings a second, an end seen about 0.55 s late (the
    listing's own time included) for about 1.6 requests per task, where each task's own
    polls took 2.3 and saw it 3.3 s late.
    The cadence stays while fewer run (a batch's last tasks): each of those ends the batch
    as late as it is seen."""
    spacing = max(settings.poll_min_interval_s, REPOLL_SHARE * typical_s)
    wanted = typical_s / (2.0 * max(slots, 1))
    return max(settings.list_poll_s, min(spacing, wanted)) / settings.time_factor


def safety_poll_delay(settings: Settings, rng: random.Random | None = None) -> float:
    """Seconds to the next poll of an item whose provider will call back (webhooks on): a
    slow safety net for a lost callback, ±10 % jitter, not capped by the maximum interval."""
    jitter = (rng or random).uniform(0.9, 1.1)
    return settings.webhook_safety_poll_s * jitter / settings.time_factor


def retry_delay(attempt: int, settings: Settings, cap_s: float = 60.0) -> float:
    """Backoff for a failed download or a transient poll error (attempt counts from 1)."""
    return min(cap_s, 2.0 ** max(attempt, 1)) / settings.time_factor


def _clamp(seconds: float, settings: Settings) -> float:
    return max(settings.poll_min_interval_s, min(settings.poll_max_interval_s, seconds))


def deadline_s(request: GenerationRequest, settings: Settings) -> float:
    """How long after submit an unfinished task ends `expired`: its own expiry (or
    GENBATCH_ITEM_DEADLINE_S) and ten minutes' grace."""
    limit = float(request.execution_expires_after or settings.item_deadline_s)
    return (limit + 600.0) / settings.time_factor
