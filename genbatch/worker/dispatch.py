"""Dispatch: move pending items of one provider account to `dispatched` and send their
submit tasks, within the account's in-flight cap and submit budget.

Order: priority first (high, normal, low), then round-robin across the batches of one
priority, so a 100k-row batch cannot starve a 10-row one. The round-robin position lives in
Redis (`rr:{provider}:{priority}`), so every process that dispatches shares it.

Two callers: the scheduler's tick, for every account, and a worker the moment it frees a
slot (a generation finished), for that account only — so a freed slot is refilled one
Celery hop later instead of at the next tick. Both may run at once: the in-flight cap
(DISPATCH) and the submit budget (sliding window) are each taken atomically in Redis, and a batch's
queue is dropped only when Redis says its list is empty.
"""

from __future__ import annotations

import logging

from genbatch import metrics
from genbatch.models import PRIORITIES
from genbatch.store.limits import Limits, rates_for
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)


def dispatch_account(rt: Runtime, provider: str, limits: Limits | None = None) -> int:
    """As many submits for `provider` as its in-flight cap and submit budget allow now;
    returns how many were dispatched."""
    store = rt.store
    batches = store.queued_batches(provider)
    if not batches:
        return 0
    if store.in_cooldown(provider):
        metrics.record_limiter_wait(store, provider)
        return 0
    limit = rt.settings.provider(provider).max_in_flight
    free = min(limit - store.in_flight(provider), rt.settings.dispatch_batch_size)
    if free <= 0:
        return 0
    now = rt.now()
    if store.health.get(provider).state == "paused":  # one probe per interval, else nothing
        if not store.health.claim_probe(provider, now, rt.settings.account_probe_s
                                        / rt.settings.time_factor):
            return 0
        free = 1
    limits = limits or store.limits
    granted, _ = limits.take(provider, "submit", free, rates_for(rt.settings, provider)["submit"],
                             now)
    if granted < free:  # the submit rate, not the in-flight cap, holds it back
        metrics.record_limiter_wait(store, provider)
    used = _feed(rt, provider, batches, limit, granted, now + rt.settings.task_lease_s) \
        if granted else 0
    limits.refund(provider, "submit", granted - used)
    return used


def _priority_groups(rt: Runtime, batches: list[str]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {p: [] for p in PRIORITIES}
    for bid, (prio,) in zip(batches, rt.store.batch_fields(batches, ["priority"]),
                            strict=True):
        groups[prio if prio in groups else "normal"].append(bid)
    return [(p, groups[p]) for p in PRIORITIES if groups[p]]


def _feed(rt: Runtime, provider: str, batches: list[str], limit: int, budget: int,
          lease_until: float) -> int:
    """Hand `budget` submits to the queued batches; returns how many were dispatched."""
    store, used = rt.store, 0
    for prio, group in _priority_groups(rt, batches):
        start = store.rr_position(provider, prio) % len(group)
        order = group[start:] + group[:start]
        served = 0
        first_pass = True
        while used < budget and order:
            share = max(1, (budget - used) // len(order))
            keep: list[str] = []
            for bid in order:
                if used >= budget:
                    keep.append(bid)
                    continue
                want = min(share, budget - used)
                ids = store.dispatch(provider, bid, limit, want, lease_until)
                for iid in ids:
                    rt.enqueue("submit", iid)
                used += len(ids)
                served += int(first_pass and bool(ids))
                if len(ids) == want:
                    keep.append(bid)
                else:
                    store.drop_queue_if_empty(provider, bid)
                    # Items left and still queued: the in-flight cap is reached. (A batch
                    # stopped by its budget has left the queue: go on with the others.)
                    if store.still_queued(provider, bid):
                        store.advance_rr(provider, prio, max(served, 1))
                        return used
            order = keep
            first_pass = False
        store.advance_rr(provider, prio, max(served, 1))
        if used >= budget:
            break
    return used


def refill(rt: Runtime, provider: str) -> None:
    """A generation slot of `provider` just came free: dispatch into it now rather than at
    the scheduler's next tick (the tick stays the safety net, so a failure here is only
    logged)."""
    if not rt.settings.dispatch_on_free or not provider:
        return
    try:
        dispatch_account(rt, provider)
    except Exception as exc:  # the item's own transition already happened
        log.warning("dispatch after a freed %s slot failed (the scheduler will retry): %s",
                    provider, type(exc).__name__)
