"""How long a batch waits for its ambiguous items, and what a task found after that is.

An ambiguous item may still settle: its provider's task list or lookup may show its task
(worker/reconcile.py), or its attempt's callback may name it (worker/hints.py). Its batch
stays open — shown as `settling` — until each such item has settled (adopted, resubmitted,
or left final by reconciliation) or its **reconciliation window** has closed, whichever
comes first. The window is GENBATCH_RECONCILE_DEADLINE_S from the start of its submit; for
an item only a callback can settle (a provider without a task list), at most the item's
deadline too: by then its task, if there is one, has finished and called back. Then the
batch finishes with the item final as `ambiguous`.

A task found for an item after its window closed (a late callback, a scheduled look) is
**recorded, not adopted**: the item keeps its state and its batch stays finished; the item's
`late_task` names the task (`late_found_at`, `late_how`: when and how it was found), which
is owned by the item (so it is never reported as unowned), the batch counts it in
`late_adoptions`, and `genbatch reconcile` lists it. That task exists and is billed: the
operator decides (`genbatch reconcile` adopts it on request, reopening the batch; `genbatch
retry --ambiguous` submits again).
"""

from __future__ import annotations

import logging

from genbatch import providers
from genbatch.models import BatchStatus
from genbatch.records import Item
from genbatch.worker.callbacks import callback_url
from genbatch.worker.polling import deadline_s
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)
# The batch is finishing or finished: nothing may reopen it without being asked to.
FINISHING = (BatchStatus.FINALIZING, BatchStatus.COMPLETED, BatchStatus.CANCELLED)


def by_listing(provider: str) -> bool:
    """The provider can show an ambiguous submit's task: a task list or a lookup by id."""
    return providers.can_list(provider) or providers.can_lookup(provider)


def by_callback(rt: Runtime, item: Item) -> bool:
    """The item's last attempt was sent with a callback URL, which may yet name its task."""
    return callback_url(rt.settings, item.provider, item.id, item.attempts) is not None


def window_end(rt: Runtime, item: Item) -> float:
    """When the item's reconciliation window closes (see the module docstring)."""
    started = item.submit_started_at or item.finished_at or 0.0
    end = started + rt.settings.reconcile_deadline_s / rt.settings.time_factor
    if not by_listing(item.provider):
        end = min(end, started + deadline_s(item.request, rt.settings))
    return end


def closed(rt: Runtime, item: Item) -> bool:
    """Whether a task found for the item now comes too late to change it: its window was
    closed (by its last look, which may itself still adopt), or its batch is finishing."""
    if item.settle_closed_at is not None:
        return True
    return rt.store.batches.get(item.batch_id).status in FINISHING


def close(rt: Runtime, item: Item, now: float) -> None:
    """The item's window closed (or reconciliation gave up): it is final as ambiguous, and
    its batch no longer waits for it."""
    rt.store.reconcile.unschedule(item.id)
    rt.store.reconcile.mark_known(item.account, item.id)
    rt.store.items.set_fields({item.id: {"settle_closed_at": repr(now)}})
    rt.enqueue("finalize", item.batch_id)  # does nothing while items are open


def record_late(rt: Runtime, item: Item, task_id: str, now: float, note: str) -> str:
    """A task found for `item` after its window: owned and noted, nothing else changes."""
    rt.store.reconcile.own(item.account, task_id, item.id, now)
    if item.late_task == task_id:
        return "late"
    rt.store.items.set_fields({item.id: {"late_task": task_id, "late_found_at": repr(now),
                                         "late_how": note[:200]}})
    rt.store.batches.add(item.batch_id, "late_adoptions")
    log.warning("item %s: %s after its reconciliation window closed; recorded, not adopted "
                "(`genbatch reconcile %s`)", item.id, note, item.batch_id)
    return "late"
