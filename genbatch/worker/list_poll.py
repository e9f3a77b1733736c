"""Polling a whole account in one request, where its provider lists the account's tasks with
their status and video (Capability.LIST_POLL: Kling's Query Task (List)).

A provider that queues nothing (Kling) leaves the slot of a task that ended idle until the
task is seen, and each poll of each task is a request. One listing shows every task of the
account: the scheduler gives each such account with tasks in flight a turn every
`polling.list_poll_interval` (about two listings per task that ends while every slot is
busy, the same cadence while fewer are, about GENBATCH_LIST_POLL_S apart at the most often;
one grant of the account's poll budget each), and a worker lists the newest tasks
(PAGE_PER_IN_FLIGHT x those in flight, at least PAGE_MIN) and moves each of ours that ended
as its own poll would have. A listed task is the provider's answer to our own authenticated
request, not a hint like an unsigned callback: it is applied as it is. The tasks' own polls
stay as a safety net (GENBATCH_WEBHOOK_SAFETY_POLL_S apart, as with callbacks), for a task
the listing missed (off its page, or the listing failed).

Whose task is whose: the owners book (store/reconcile.py) records each task's item at
submit; a task of another client, or of an earlier attempt, is left alone.
"""

from __future__ import annotations

import logging

from genbatch import providers
from genbatch.errors import ConfigError, ProviderError
from genbatch.providers import accounts as provider_accounts
from genbatch.store.limits import rates_for
from genbatch.worker import callbacks
from genbatch.worker.dispatch import fastest_learned
from genbatch.worker.polling import list_poll_interval
from genbatch.worker.runtime import Runtime
from genbatch.worker.steps import apply_poll

log = logging.getLogger(__name__)
# Tasks listed: newest first, so a task in flight is on the page only if fewer tasks were
# created after it than the page holds; a long one has several waves created after it.
PAGE_MIN = 100
PAGE_PER_IN_FLIGHT = 4


def turns(rt: Runtime) -> list[str]:
    """The accounts to list now (the scheduler's tick): each list-polled account with tasks
    in flight whose turn came and whose poll budget grants one request."""
    now, due, tick = rt.now(), [], rt.settings.scheduler_tick_s
    for provider in providers.names():
        if not callbacks.list_polled(rt.settings, provider):
            continue
        for account in provider_accounts.accounts(rt.settings, provider):
            in_flight = rt.store.queues.in_flight(account.label)
            if not in_flight:
                continue
            every = list_poll_interval(_typical(rt, provider),
                                       max(in_flight, account.max_in_flight), rt.settings)
            # a turn that ends between two ticks is taken at the nearer one, not always at
            # the later: the listings come `every` apart on average
            if not rt.store.locks.turn(f"listpoll:{account.label}",
                                       max(every - tick / 2, tick / 2)):
                continue
            granted, _ = rt.store.limits.take(account.label, "poll", 1,
                                              rates_for(rt.settings, account)["poll"], now)
            if granted:
                due.append(account.label)
    return due


def list_account(rt: Runtime, account: str) -> str:
    """List `account`'s newest tasks and move each of ours that ended; how many moved."""
    found = provider_accounts.find_account(rt.settings, account)
    if found is None:
        return "unknown account"
    provider_name = found.name
    in_flight = rt.store.queues.in_flight(account)
    model = next(iter(providers.model_specs(provider_name)))
    try:
        listed = rt.provider(account).recent(model, max(PAGE_MIN,
                                                         PAGE_PER_IN_FLIGHT * in_flight))
    except (ProviderError, ConfigError) as exc:  # the tasks' own polls stay the safety net
        log.debug("listing account %s failed: %s", account, exc)
        return "listing refused"
    now = rt.now()
    ended = [(remote_id, result) for remote_id, result in listed if result.status.terminal]
    owners = rt.store.reconcile.owners(account, [(remote_id, now) for remote_id, _ in ended])
    # ours (another client's task, or one older than the owners book keeps, has no owner)
    mine = [(owners[remote_id], remote_id, result) for remote_id, result in ended
            if remote_id in owners]
    waiting = rt.store.items.awaiting([(iid, remote_id) for iid, remote_id, _ in mine])
    moved = 0
    for (iid, _, result), waits in zip(mine, waiting, strict=True):
        if waits:  # not seen already, nor an earlier attempt's task
            item = rt.store.items.get(iid)
            moved += apply_poll(rt, item, iid, result, item.polls + 1, listed=True) != "skipped"
    return f"{moved} moved"


def _typical(rt: Runtime, provider: str) -> float:
    """The provider's shortest learned generation time (dispatch's cached reading); before
    any is learned, the shortest its models document."""
    return fastest_learned(rt, provider) or min(
        spec.typical_seconds for spec in providers.model_specs(provider).values())
