"""When to poll next: pure functions, so the schedule is easy to test and reason about."""

from __future__ import annotations

import random

from genbatch.config import Settings


def first_poll_delay(typical_s: float, eta_s: float | None, settings: Settings) -> float:
    """Seconds from submit to the first poll: when the generation is likely done."""
    guess = eta_s if eta_s and eta_s > 0 else min(typical_s, settings.first_poll_s)
    return _clamp(guess, settings) / settings.time_factor


def next_poll_delay(
    polls: int, eta_s: float | None, settings: Settings, rng: random.Random | None = None
) -> float:
    """Seconds to the next poll: the provider's ETA if it gives one, else exponential
    backoff from the minimum interval, with ±10 % jitter, within [min, max] interval."""
    if eta_s and eta_s > 0:
        base = eta_s
    else:
        # The generation is due (the first poll came when it was likely done): re-poll at
        # the minimum interval twice, then back off.
        base = settings.poll_min_interval_s * (1.5 ** max(polls - 2, 0))
    jitter = (rng or random).uniform(0.9, 1.1)
    return _clamp(base * jitter, settings) / settings.time_factor


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
