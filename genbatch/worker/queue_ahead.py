"""How far an account's in-flight cap may run ahead of its concurrency.

A provider that queues over-concurrency tasks (WaveSpeed documents it; BytePlus has a
`queued` state) starts a waiting task the moment a slot frees, while genbatch only learns
that a slot freed at its next poll of the finished task. Without tasks waiting at the
provider, each slot idles from a generation's end to that poll, about one poll spacing p
per generation of length T: a share p / T of the quota (10-20 % measured,
docs/performance.md). Keeping about C x 2p / T tasks queued at the provider covers it: those
start at once while genbatch catches up. The learned generation time sizes it (short
generations need more ahead), GENBATCH_QUEUE_AHEAD_MAX (or the account's `queue_ahead_max`)
bounds it, and providers whose over-concurrency behaviour is unknown (Novita, HighwayAPI)
get none.
"""

from __future__ import annotations

import math

from genbatch.config import ProviderSettings, Settings
from genbatch.worker.polling import REPOLL_SHARE


def queue_ahead(concurrency: int, bound: int, typical_s: float | None,
                settings: Settings) -> int:
    """Tasks to keep queued at the provider beyond `concurrency` for generations of about
    `typical_s` seconds, at most `bound`; `bound` itself while no generation time is learned
    (the first wave's polls come late, at GENBATCH_FIRST_POLL_S: without tasks waiting, the
    slots it frees meanwhile would idle)."""
    if bound <= 0:
        return 0
    if typical_s is None or typical_s <= 0:
        return bound
    spacing = max(settings.poll_min_interval_s, REPOLL_SHARE * typical_s)
    return min(bound, math.ceil(concurrency * 2.0 * spacing / typical_s))


def queue_wait_s(in_flight: int, concurrency: int, typical_s: float,
                 settings: Settings) -> float:
    """Seconds a task just submitted to an account with `in_flight` tasks (itself included)
    is expected to wait at the provider before it starts: the tasks ahead of it beyond the
    concurrency, less those already finished that genbatch has not seen yet (about half a
    poll spacing's worth of slots), one slot freeing every typical_s / concurrency. Its
    polls count from when it is likely to start, not from its submit."""
    if concurrency <= 0 or typical_s <= 0:
        return 0.0
    spacing = max(settings.poll_min_interval_s, REPOLL_SHARE * typical_s)
    unseen = concurrency * spacing / (2.0 * typical_s)
    return max(0.0, in_flight - concurrency - unseen) * typical_s / concurrency


def in_flight_cap(account: ProviderSettings, typical_s: float | None,
                  settings: Settings) -> int:
    """The account's in-flight cap: its concurrency plus what may wait at the provider."""
    return account.max_in_flight + queue_ahead(account.max_in_flight,
                                               account.queue_ahead_max, typical_s, settings)
