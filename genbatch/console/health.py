"""Why a batch waits, and the health of accounts and processes, in words and tables.

Read from heartbeats (`store/heartbeats.py`) and account health (`store/health.py`), for
`status`, `watch` and the dashboard. Each reason is one line a person can act on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.table import Table

from genbatch import providers
from genbatch.models import Counter
from genbatch.providers.accounts import key_hint
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
    durability: str = ""  # what guards submit records, and the last Redis restart


def durability(store: JobStore) -> str:
    """The durability in force (as the scheduler last read it) and the last restart."""
    line = store.restarts.durability() or "not read yet (no scheduler has run)"
    last = store.restarts.last()
    if last is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(last.at))
        line += f"; last Redis restart {when}: {last.state}"
        if last.before:
            line += f" (before it: {last.before})"
        if last.flagged:
            line += f", {last.flagged} items flagged possibly paid twice"
    return line


def batch_accounts(store: JobStore, batch: Batch,
                   accounts_of: Callable[[str], Sequence[str]] | None = None) -> list[str]:
    """The accounts of the providers a batch has work waiting at (its queues), of its
    default provider and of its fallback, in provider order. `accounts_of` names a
    provider's accounts (default: the one named after the provider)."""
    wanted = set(store.queues.queued_providers(batch.id, providers.names()))
    wanted.update(p for p in (batch.default_provider, batch.fallback.partition(":")[0]) if p)
    names = accounts_of or (lambda provider: [provider])
    return [a for p in providers.names() if p in wanted for a in names(p)]


def diagnose(store: JobStore, batch: Batch,
             accounts_of: Callable[[str], Sequence[str]] | None = None) -> Diagnosis:
    accounts = batch_accounts(store, batch, accounts_of)
    health = store.health.get_many(accounts)
    workers = tuple(store.heartbeats.workers())
    scheduler = store.heartbeats.scheduler()
    reasons = waiting_reasons(batch, health, workers, scheduler) if not batch.finished else ()
    return Diagnosis(tuple(reasons), tuple(health), workers, scheduler, durability(store))


def waiting_reasons(batch: Batch, health: Sequence[AccountHealth], workers: Sequence[Beat],
                    scheduler: Beat | None) -> list[str]:
    """What holds the batch's open items back, most basic first."""
    reasons: list[str] = []
    pending = batch.count(Counter.PENDING)
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
                               f"{key_hint(h.account)} on a worker)")
    for h in health:
        if h.state == "paused":
            reasons.append(f"account {h.account} is paused: {h.reason}"
                           + (f"; {h.fix}" if h.fix else ""))
        elif h.state == "degraded":
            reasons.append(f"account {h.account} is degraded: {h.reason}"
                           + (f"; {h.fix}" if h.fix else ""))
    return reasons


def health_table(health: Sequence[AccountHealth], load: Sequence[tuple[int, int]] = (),
                 holders: Sequence[Beat] | None = None) -> Table:
    """One row per account: state, since when, in flight / concurrency (WaveSpeed and
    BytePlus run up to their queue-ahead above it), workers holding its key,
    failure streaks, and why (with the fix for a paused account)."""
    table = Table(title="accounts", expand=False)
    table.add_column("account", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("since", no_wrap=True)
    if load:
        table.add_column("in flight", justify="right", no_wrap=True)
    if holders is not None:
        table.add_column("keys on", justify="right", no_wrap=True)
    table.add_column("failing", overflow="fold")
    table.add_column("why / fix", overflow="fold", ratio=1)
    for n, h in enumerate(health):
        colour = {"ok": "green", "degraded": "yellow", "paused": "red"}.get(h.state, "white")
        cells = [h.account, f"[{colour}]{h.state}[/]", _ago(h.since)]
        if load:
            cells.append(f"{load[n][0]}/{load[n][1]}")
        if holders is not None:
            cells.append(str(sum(h.account in w.keys for w in holders)))
        cells.append(", ".join(f"{c} x{k}" for c, k in h.failures.items()) or "-")
        why = h.reason or (f"last error {_ago(h.last_error_at)} ago: {h.last_error}"
                           if h.last_error else "")
        cells.append(why + (f"\n{h.fix}" if h.fix else ""))
        table.add_row(*cells)
    return table


def processes_lines(workers: Sequence[Beat], scheduler: Beat | None) -> list[str]:
    """`scheduler: …` and one line per worker (queues and the providers whose key it holds:
    names only)."""
    lines = [f"scheduler: {scheduler.name} (beat {_ago(scheduler.at)} ago)" if scheduler
             else "scheduler: none running (start `genbatch scheduler`)"]
    if not workers:
        lines.append("workers: none running (start `genbatch worker`)")
    for w in workers:
        lines.append(f"worker {w.name}: keys for {', '.join(w.keys) or 'no provider'}")
    return lines


def _ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    s = max(0, int(time.time() - ts))
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"
