"""Why a batch waits: the processes and accounts its open items depend on, in words.

Read from heartbeats (`store/heartbeats.py`) and account health (`store/health.py`), for
`status`, `watch` and the dashboard. Each reason is one line a person can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from genbatch.config import PROVIDER_NAMES
from genbatch.records import Batch
from genbatch.store import JobStore
from genbatch.store.health import AccountHealth
from genbatch.store.heartbeats import Beat


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The state of the parts a batch needs, and what is missing, as sentences."""

    reasons: tuple[str, ...]
    accounts: tuple[AccountHealth, ...]
    workers: tuple[Beat, ...]
    scheduler: Beat | None


def batch_accounts(store: JobStore, batch: Batch) -> list[str]:
    """The accounts a batch has work waiting at (its queues), its default provider and its
    fallback, in provider order."""
    wanted = set(store.queued_accounts(batch.id, PROVIDER_NAMES))
    wanted.update(p for p in (batch.get("provider"), batch.fallback.partition(":")[0]) if p)
    return [p for p in PROVIDER_NAMES if p in wanted]


def diagnose(store: JobStore, batch: Batch) -> Diagnosis:
    accounts = batch_accounts(store, batch)
    health = store.health.get_many(accounts)
    workers = tuple(store.heartbeats.workers())
    scheduler = store.heartbeats.scheduler()
    reasons = waiting_reasons(batch, health, workers, scheduler) if not batch.finished else ()
    return Diagnosis(tuple(reasons), tuple(health), workers, scheduler)


def waiting_reasons(batch: Batch, health: Sequence[AccountHealth], workers: Sequence[Beat],
                    scheduler: Beat | None) -> list[str]:
    """What holds the batch's open items back, most basic first."""
    reasons: list[str] = []
    pending = batch.count("pending")
    if scheduler is None and batch.open_items:
        reasons.append("no scheduler running: nothing is dispatched or polled "
                       "(start `genbatch scheduler`)")
    if not workers and batch.open_items:
        reasons.append("no worker running: nothing is submitted, polled or downloaded "
                       "(start `genbatch worker`)")
    elif pending:
        held = {key for w in workers for key in w.keys}
        for h in health:
            if h.account not in held:
                reasons.append(f"no worker holds a key for {h.account} (set "
                               f"GENBATCH_{h.account.upper()}_API_KEY on a worker)")
    for h in health:
        if h.state == "paused":
            reasons.append(f"account {h.account} is paused: {h.reason}"
                           + (f"; {h.fix}" if h.fix else ""))
        elif h.state == "degraded":
            reasons.append(f"account {h.account} is degraded: {h.reason}")
    return reasons
