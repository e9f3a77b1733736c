"""Acting on a batch: `cancel`, `retry`, `reconcile` and `notify`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from genbatch.cli.shared import BatchArg, JsonOpt, emit, out
from genbatch.client import DEFAULT_RETRY_STATES, Client
from genbatch.client.as_json import cancel_json, retry_json
from genbatch.models import ItemState


def cancel(batch: BatchArg, as_json: JsonOpt = False) -> None:
    """Stop a batch: nothing new is submitted, queued BytePlus tasks are cancelled, running
    generations finish and are kept; the output manifests are written."""
    report = Client().cancel(batch)
    if as_json:
        emit(cancel_json(batch, report))
        return
    if report.already:
        out.print(f"batch {batch} is already {report.already}; nothing to cancel")
        return
    out.print(f"batch {batch}: {report.cancelled} items cancelled before submit, "
              f"{report.cancelled_remote} cancelled at the provider, {report.finishing} "
              "already running will finish and be kept")


def retry(
    batch: BatchArg,
    failed: Annotated[bool, typer.Option("--failed", help="retry failed items")] = False,
    expired: Annotated[bool, typer.Option("--expired", help="retry expired items")] = False,
    ambiguous: Annotated[bool, typer.Option(
        "--ambiguous", help="retry items whose submit outcome is unknown (may pay twice)")
    ] = False,
    budget: Annotated[float | None, typer.Option(
        metavar="USD", help="set the batch's budget (at least spent + reserved) and continue "
        "the items it held back; alone, retries no failed items", show_default=False)
    ] = None,
    regenerate: Annotated[bool, typer.Option(
        "--regenerate", help="generate again (and pay again) items whose task succeeded but "
        "whose video was not stored, instead of downloading them again")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Resubmit a batch's failed (default: failed and expired) items, in the same batch
    (a paid video that was not stored is downloaded again); with --budget, continue a
    batch stopped by its budget."""
    states = tuple(s for s, on in ((ItemState.FAILED, failed), (ItemState.EXPIRED, expired),
                                   (ItemState.AMBIGUOUS, ambiguous)) if on)
    if not states and budget is None:
        states = DEFAULT_RETRY_STATES
    report = Client().retry(batch, states, budget_usd=budget, regenerate=regenerate)
    if as_json:
        emit(retry_json(batch, states, budget, report))
        return
    if budget is not None:
        out.print(f"batch {batch}: budget ${budget:.2f}, {report.continued} pending items "
                  "may dispatch again")
    if states:
        out.print(f"batch {batch}: {report.requeued} items ({', '.join(states)}) queued again"
                  + (f", {report.redownload} paid videos downloaded again"
                     if report.redownload else "")
                  + (f", {report.chained} chained shots waiting for them again"
                     if report.chained else "")
                  + (f"; {report.invalid_rows} invalid rows skipped (fix them and submit "
                     "again)" if report.invalid_rows else ""))


def reconcile(batch: BatchArg) -> None:
    """Settle a batch's ambiguous items from the providers' task lists (WaveSpeed,
    BytePlus): adopt the task that was created (reopening a finished batch), resubmit when
    none was, report the rest, tasks found after an item's window closed, and any task
    created in the batch's time (its first submit to its last, with a margin) that no item
    owns."""
    report = Client().reconcile(batch)
    for iid, task in report.adopted:
        out.print(f"adopted   {iid}: task {task}", highlight=False)
    for iid in report.resubmitted:
        out.print(f"resubmit  {iid}: no task was created; queued again", highlight=False)
    for iid, why in report.left:
        out.print(f"ambiguous {iid}: {why}", highlight=False)
    for iid, task in report.late:
        out.print(f"late      {iid}: task {task} found after its reconciliation window "
                  "closed (billed; not adopted)", highlight=False)
    for provider, task in report.orphans:
        out.print(f"unowned   {provider} task {task}: created in this batch's time, owned "
                  "by no item (billed; not downloaded)", highlight=False)
    out.print(f"batch {batch}: {len(report.adopted)} adopted, {len(report.resubmitted)} "
              f"resubmitted, {len(report.left)} left ambiguous, {len(report.late)} found "
              f"late, {len(report.orphans)} unowned tasks{_span(report.span)}",
              highlight=False)


def _span(span: tuple[float, float] | None) -> str:
    """The batch's time that unowned tasks were looked for in."""
    if span is None:
        return " (nothing was submitted)"
    start, end = (datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S") for t in span)
    return f" (created {start} to {end} UTC)"


def notify(batch: BatchArg, as_json: JsonOpt = False) -> None:
    """Send a finished batch's --notify event again (after its receiver was down longer
    than the retries); the event keeps its id."""
    event_id = Client().resend_notify(batch)
    if as_json:
        emit({"batch_id": batch, "event_id": event_id or None})
        return
    out.print(f"batch {batch}: event {event_id or '(new)'} queued for delivery; "
              f"`genbatch status {batch} --json` shows how it went", highlight=False)
