"""How the worker treats a provider account that fails as an account, not per request.

Every submit or poll failure that says something about the account (`failure_class`: a
connect error, an auth or balance refusal, a 5xx, a 429) is counted in the account's health
(`genbatch/store/health.py`). What follows:

- connect errors: the account backs off exponentially (2 s doubling, capped by
  GENBATCH_ACCOUNT_BACKOFF_MAX_S) instead of a submit every half second, and after
  GENBATCH_ACCOUNT_DEGRADE_AFTER in a row it shows `degraded` with the error;
- auth and balance refusals (nothing was created): the item goes back to the head of its
  queue (where another account of the provider may take it) instead of failing — or to
  the batch's `--fallback` — and after GENBATCH_ACCOUNT_PAUSE_AFTER in a row the account
  is `paused`: dispatch skips it, the batch waits and says why, and one item is let
  through every GENBATCH_ACCOUNT_PROBE_S (a probe) until `genbatch accounts resume` or a
  probe succeeds;
- a worker without the account's key: the same as an auth refusal, naming the worker.

Successes clear the streaks; each process writes one at most once per heartbeat per account
unless it saw that account fail, so a healthy account costs no extra Redis round trip.
"""

from __future__ import annotations

import logging
import time

from genbatch.errors import ProviderError, RateLimited, RetryableProviderError, SlotFull
from genbatch.models import ItemState
from genbatch.providers import accounts as provider_accounts
from genbatch.providers.failures import FailureClass
from genbatch.records import Item
from genbatch.store.health import AccountHealth
from genbatch.worker import failover
from genbatch.worker.dispatch import refill
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)
BACKOFF_BASE_S = 2.0
# After a "slot full" refusal (Kling's 1303: the account's concurrency is used up) the
# account rests this long, Kling's own advice ("at least 1 s"), unless one of its tasks is
# seen to end first; then one submit tries again. For SLOT_FULL_S after the last refusal
# the account takes one submit at a time (a success sends the next at once): each freed
# slot is found within a rest by one request, not by ten offered and nine refused.
SLOT_REST_S = 1.0
SLOT_FULL_S = 60.0


def note_failure(rt: Runtime, account: str, cls: FailureClass, error: str) -> AccountHealth:
    """Count a failure of the account; log when it changes the account's state."""
    s = rt.settings
    before = rt.store.health.get(account).state
    health = rt.store.health.record_failure(
        account, cls.value, error, rt.now(), degrade_after=s.account_degrade_after,
        pause_after=s.account_pause_after, probe_s=s.account_probe_s / s.time_factor,
        key_hint=provider_accounts.key_hint(account),
        base_hint=provider_accounts.base_url_hint(account))
    rt.health_seen[account] = 0.0  # the next success must clear it
    if health.state != before:
        log.warning("account %s is %s: %s%s", account, health.state, health.reason,
                    f" — {health.fix}" if health.fix else "")
    return health


def note_success(rt: Runtime, account: str) -> None:
    """The account worked. Written only when this process saw it fail or a heartbeat has
    passed since its last check (another process may have recorded failures)."""
    now = time.monotonic()
    if now - rt.health_seen.get(account, -1e9) < rt.settings.heartbeat_s:
        return
    rt.health_seen[account] = now
    rt.store.health.record_success(account, rt.now())


def backoff_s(rt: Runtime, exc: RetryableProviderError, health: AccountHealth | None) -> float:
    """How long the account rests after a request that created nothing (in real seconds:
    the caller scales it). A 429 says how long itself; a connect error doubles per failure."""
    if isinstance(exc, RateLimited):
        return exc.retry_after or BACKOFF_BASE_S
    if isinstance(exc, SlotFull):
        return SLOT_REST_S
    streak = health.failures.get(FailureClass.CONNECT.value, 0) if health else 0
    if streak <= 1:
        return BACKOFF_BASE_S
    return float(min(rt.settings.account_backoff_max_s, BACKOFF_BASE_S * 2 ** (streak - 1)))


def requeue(rt: Runtime, item: Item, iid: str, states: list[ItemState], reason: str,
            rest_s: float, *, slot_rest: bool = False) -> str:
    """Nothing was created: the item goes back to the head of its queue, no failure counted,
    and the account rests `rest_s` (real seconds). A `slot_rest` (the account's concurrency
    was full) ends early when one of its tasks ends (`dispatch.refill`): waiting on after a
    slot came free would leave it idle."""
    moved = rt.store.items.transition(iid, states, ItemState.PENDING, timer="-",
                                      fields={"last_error": reason[:500]}, incr={"not_created": 1},
                                      queue="front")
    if moved.applied and slot_rest:
        rt.store.queues.set_slot_rest(item.account, rest_s / rt.settings.time_factor,
                                      SLOT_FULL_S / rt.settings.time_factor)
    elif moved.applied:
        rt.store.queues.set_cooldown(item.account, rest_s / rt.settings.time_factor)
    return "requeued" if moved.applied else "skipped"


def refused(rt: Runtime, item: Item, iid: str, state: ItemState, exc: ProviderError,
            cls: FailureClass) -> str:
    """An auth or balance refusal (nothing created): to the batch's fallback if it has one,
    else back to the queue; the account's health counts it and may pause it."""
    moved = failover.fail_over(rt, iid, [state], exc.code, exc.message)
    if moved.moved == "failed_over":
        refill(rt, moved.origin)
        refill(rt, moved.target)
    note_failure(rt, item.account, cls, f"{exc.code}: {exc.message}")
    if moved.moved:
        return moved.moved
    return requeue(rt, item, iid, [state], f"{exc.code}: {exc.message}", BACKOFF_BASE_S)


def no_key(rt: Runtime, item: Item, iid: str, message: str) -> str:
    """This worker holds no key for the item's account: counted as an auth failure naming
    the worker, the item back on its queue (another worker, or a fixed one, takes it)."""
    note_failure(rt, item.account, FailureClass.AUTH, f"{message} (worker {rt.name})")
    return requeue(rt, item, iid, [ItemState.DISPATCHED], message, BACKOFF_BASE_S)

