"""Dispatch: move pending items of one provider to `dispatched` at its accounts and send
their submit tasks, within each account's in-flight cap, submit rate and per-model limits.

Order: priority first (high, normal, low), then round-robin across the batches of one
priority, so a 100k-row batch cannot starve a 10-row one; each item goes to the account
with the most free slots that can take its model (store/lua/dispatch.lua). The round-robin
is a list per provider and priority in Redis, so every process that dispatches shares it
and a call costs what it dispatches, however many batches wait.

Accounts: every account of the provider (settings.accounts, re-read when the accounts file
changes) except drained ones, backing-off ones (a 429 or connect error set their cooldown),
and paused ones (one probe per GENBATCH_ACCOUNT_PROBE_S). A degraded account is treated
like a paused one while another account of the provider is ok: its pending work goes to
the others, and a probe tells when it healed.

Two callers: the scheduler's tick, for every provider, and a worker the moment it frees a
slot (a generation finished), for that provider only — so a freed slot is refilled one
Celery hop later instead of at the next tick. Both may run at once: the whole decision is
one Lua call.
"""

from __future__ import annotations

import logging
import time

from genbatch import metrics
from genbatch.config import ProviderSettings
from genbatch.errors import GenbatchError
from genbatch.providers import accounts as provider_accounts
from genbatch.providers import get_spec
from genbatch.store import DispatchAccount
from genbatch.store.health import AccountHealth
from genbatch.store.limits import rates_for
from genbatch.worker.queue_ahead import in_flight_cap
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)
TYPICAL_TTL_S = 10.0  # how long a process trusts its reading of the learned times


def dispatch_provider(rt: Runtime, provider: str) -> int:
    """As many submits for `provider` as its accounts' caps and rates allow now; returns
    how many were dispatched."""
    store = rt.store
    if not store.queues.has_queued(provider) or store.restarts.fenced():
        return 0  # nothing waits, or a Redis restart is being recovered from (recovery.py)
    accounts = [a for a in provider_accounts.accounts(rt.settings, provider) if not a.drain]
    if not accounts:
        return 0
    now = rt.now()
    usable = _usable(rt, accounts, now)
    if not usable:
        return 0
    typical = fastest_learned(rt, provider)
    chosen = [DispatchAccount(
        a.label, in_flight_cap(a, typical, rt.settings), a.submit_rpm, probe,
        tuple((_model_name(provider, m), lim.max_in_flight, lim.submit_rpm)
              for m, lim in a.models))
        for a, probe in usable]
    rate = rates_for(rt.settings, usable[0][0])["submit"]
    done = store.queues.dispatch(provider, chosen, rt.settings.dispatch_batch_size, now,
                                 now + rt.settings.task_lease_s, rate)
    for iid, _account in done.items:
        rt.enqueue("submit", iid)
    for account in done.rate_limited:
        metrics.record_limiter_wait(store, account)
    return len(done.items)


def _model_name(provider: str, model: str) -> str:
    """The genbatch name items carry for `model` (the accounts file may give the provider's
    own id, e.g. BytePlus's dated `seedance-1-5-pro-251215`)."""
    try:
        return get_spec(provider, model).name
    except GenbatchError:
        return model


def _usable(rt: Runtime, accounts: list[ProviderSettings],
            now: float) -> list[tuple[ProviderSettings, bool]]:
    """The accounts that may take work now, each with whether it takes only a probe (one
    item): a paused account's, or one whose concurrency was found full lately (each submit
    there tells whether a slot came free; see accounts.SLOT_FULL_S)."""
    store = rt.store
    names = [a.label for a in accounts]
    healths = store.health.get_many(names)
    rests = store.queues.rests(names)
    some_ok = any(h.state == "ok" and not cool
                  for h, (cool, _full) in zip(healths, rests, strict=True))
    probe_s = rt.settings.account_probe_s / rt.settings.time_factor
    out: list[tuple[ProviderSettings, bool]] = []
    for account, health, (cool, full) in zip(accounts, healths, rests, strict=True):
        if cool:
            metrics.record_limiter_wait(store, account.label)
        elif _resting(health, some_ok):
            if store.health.claim_probe(account.label, now, probe_s):
                out.append((account, True))
        else:
            out.append((account, full))
    return out


def _resting(health: AccountHealth, some_ok: bool) -> bool:
    return health.state == "paused" or (health.state == "degraded" and some_ok)


def fastest_learned(rt: Runtime, provider: str) -> float | None:
    """The provider's shortest learned generation time (None before any is learned),
    re-read at most every TYPICAL_TTL_S."""
    key = f"typical:{provider}"
    seen = rt.recent.get(key)
    if seen is not None and time.monotonic() - seen[0] < TYPICAL_TTL_S:
        return seen[1] or None
    learned = rt.store.gen_times.fastest(provider)
    rt.recent[key] = (time.monotonic(), learned or 0.0)
    return learned


def refill(rt: Runtime, provider: str, account: str = "") -> None:
    """A generation slot of `provider` (at `account`, when known) just came free: dispatch
    into it now rather than at the scheduler's next tick (the tick stays the safety net, so
    a failure here is only logged). The account's rest after a "slot full" refusal ends
    here: the slot it waited for is this one."""
    try:
        if account:
            rt.store.queues.end_slot_rest(account)
        if rt.settings.dispatch_on_free and provider:
            dispatch_provider(rt, provider)
    except Exception as exc:  # the item's own transition already happened
        log.warning("dispatch after a freed %s slot failed (the scheduler will retry): %s",
                    provider, type(exc).__name__)
