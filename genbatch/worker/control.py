"""Operations on a running or finished batch: cancel and retry.

Both work item by item through the same compare-and-set transitions as the workers, so they
are safe to run while workers run, and safe to repeat.
"""

from __future__ import annotations

from dataclasses import dataclass

from genbatch import providers
from genbatch.errors import GenbatchError
from genbatch.models import BatchStatus, Counter, ItemState
from genbatch.records import Item
from genbatch.store.budget import set_budget
from genbatch.store.history import attempt_reset
from genbatch.worker import chains
from genbatch.worker.runtime import Runtime
from genbatch.worker.steps import finalize_batch, finish

RETRYABLE_STATES: tuple[str, ...] = (ItemState.FAILED, ItemState.EXPIRED, ItemState.AMBIGUOUS)
NOT_SUBMITTED = (ItemState.WAITING, ItemState.PENDING, ItemState.DISPATCHED)
STILL_RUNNING = (ItemState.SUBMITTING, ItemState.SUBMITTED, ItemState.DOWNLOADING)

@dataclass
class CancelReport:
    already: str | None = None  # the batch's status when it had already finished
    cancelled: int = 0  # items that will never be submitted
    cancelled_remote: int = 0  # remote tasks cancelled at the provider
    finishing: int = 0  # items already running that will still be downloaded


def cancel_batch(rt: Runtime, batch_id: str) -> CancelReport:
    """Stop dispatching, cancel what the provider lets us, keep finished outputs.

    Items still pending never start. Remote tasks still queued at a provider that supports
    cancel (BytePlus) are cancelled there. Generations already running are paid for: they
    finish and are downloaded. The batch ends `cancelled` with its output manifests.
    """
    batch = rt.store.batches.get(batch_id)
    if batch.finished:
        return CancelReport(already=batch["status"])
    rt.store.batches.set_fields(batch_id, {"cancel_requested": repr(rt.now())})
    rt.store.queues.unqueue(batch_id, providers.names())
    report = CancelReport()
    for item in rt.store.items.of_batch(batch_id, batch.total):
        state = item.state
        if state in NOT_SUBMITTED:
            moved = finish(rt, item.id, [state], ItemState.CANCELLED, ItemState.CANCELLED,
                           "the batch was cancelled before this item was submitted")
            report.cancelled += moved == ItemState.CANCELLED
        elif state is ItemState.SUBMITTED and _cancel_remote(rt, item):
            moved = finish(rt, item.id, [state], ItemState.CANCELLED, ItemState.CANCELLED,
                           "cancelled at the provider while still queued")
            report.cancelled_remote += moved == ItemState.CANCELLED
        elif state in STILL_RUNNING:
            report.finishing += 1
    finalize_batch(rt, batch_id)  # does nothing while items are still finishing
    return report


def _cancel_remote(rt: Runtime, item: Item) -> bool:
    try:
        return rt.provider(item.account).cancel(item.model, item.remote_id)
    except GenbatchError:
        return False


@dataclass
class RetryReport:
    requeued: int = 0
    invalid_rows: int = 0  # failed at validation: fix the row and use submit --resume
    continued: int = 0  # pending items held by the budget that may dispatch again
    redownload: int = 0  # their task succeeded (paid): downloaded again, not regenerated
    chained: int = 0  # parent_failed shots waiting again for their retried parent


def retry_batch(rt: Runtime, batch_id: str, states: tuple[str, ...],
                budget_usd: float | None = None, *, regenerate: bool = False) -> RetryReport:
    """Put the batch's items in `states` back to pending, recording each past attempt;
    an item whose task succeeded (paid) but whose video was not stored is downloaded again
    instead (asking the provider for a fresh URL), unless `regenerate`. With `budget_usd`,
    first set the batch's budget (never below spent + reserved) and let the pending items it
    held back dispatch again."""
    unknown = set(states) - set(RETRYABLE_STATES)
    if unknown:
        raise GenbatchError(f"cannot retry items in state {sorted(unknown)[0]!r}")
    batch = rt.store.batches.get(batch_id)
    if batch.status is BatchStatus.VALIDATING:
        raise GenbatchError(f"batch {batch_id} never finished validating; submit it again")
    report = RetryReport()
    if budget_usd is not None:
        set_budget(rt.store, batch_id, budget_usd, providers.names())
        report.continued = batch.count(Counter.PENDING)
    if not states:
        return report
    reopened = False
    for item in rt.store.items.of_batch(batch_id, batch.total):
        if item.state is None or item.state not in states:
            continue
        if item.error_code == "invalid_row":
            report.invalid_rows += 1
            continue
        if not reopened:  # before the first item is queued, so it can finish normally
            rt.store.batches.reopen(batch_id)
            reopened = True
        if not regenerate and paid_output(item):
            moved = _redownload(rt, item)
            report.redownload += moved
        elif chains.waits_for_frame(item):  # never got its parent's frame: wait for it
            moved = chains.rewait(rt, item, attempt_reset(item))
            report.requeued += moved
        else:  # back to pending and onto its queue in one step: no item stranded
            moved = int(rt.store.items.transition(
                item.id, [item.state], ItemState.PENDING, timer="-",
                fields=attempt_reset(item), queue="back").applied)
            report.requeued += moved
        if moved:
            report.chained += chains.reopen_children(rt, item)  # parent_failed: wait again
    return report


def paid_output(item: Item) -> bool:
    """The item's task succeeded at the provider (it was paid for): its video may still be
    fetched, so retry downloads it rather than generating it again."""
    return item.state is ItemState.FAILED and bool(item.remote_id and item.generated_at is not None)


def _redownload(rt: Runtime, item: Item) -> int:
    """failed → downloading, asking the provider for a fresh URL first."""
    moved = rt.store.items.transition(item.id, [ItemState.FAILED], ItemState.DOWNLOADING,
                                      timer=rt.now(), fields={
                                    "dl_repoll": "1", "url_repolls": 0, "dl_attempts": 0,
                                    "error_code": "", "error_message": "", "finished_at": ""})
    if moved.applied:
        rt.enqueue("download", item.id)
    return int(moved.applied)
