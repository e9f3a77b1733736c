"""`genbatch reconcile BATCH`: settle the batch's ambiguous items now, and find the tasks
its accounts created in the batch's time that no item owns.

The batch's time is its submits' span: from its first submit's start to its last submit's
end, GENBATCH_RECONCILE_MARGIN_S wider on each side (the providers' clocks may differ from
ours). A task outside it is not this batch's, whatever its model: a finished batch asked
days later does not report the tasks other job stores on the same account created since.
Tasks found for its items after their reconciliation window are listed as late
(worker/settling.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from genbatch import providers
from genbatch.errors import GenbatchError, ProviderError
from genbatch.models import ItemState
from genbatch.records import Item
from genbatch.worker.reconcile import reconcile_item
from genbatch.worker.runtime import Runtime


@dataclass
class BatchReport:
    """What `genbatch reconcile BATCH` did to each ambiguous item, and the tasks the
    accounts created in the batch's time that no item owns (after a Redis restart that lost
    writes, those are paid tasks genbatch forgot)."""

    adopted: list[tuple[str, str]]  # (item id, task id)
    resubmitted: list[str]
    left: list[tuple[str, str]]  # (item id, why)
    orphans: list[tuple[str, str]]  # (account, task id)
    late: list[tuple[str, str]] = field(default_factory=list)  # (item id, task id)
    span: tuple[float, float] | None = None  # the window tasks were looked for in


def reconcile_batch(rt: Runtime, batch_id: str) -> BatchReport:
    batch = rt.store.batches.get(batch_id)
    report = BatchReport([], [], [], [])
    kinds: dict[tuple[str, str, str], Item] = {}  # (account, model, resolution) -> an item
    span = _Span(rt.settings.submit_timeout_s + rt.settings.connect_timeout_s)
    for item in rt.store.items.of_batch(batch_id, batch.total):
        span.see(item)
        if item.provider and item.has_request and providers.can_list(item.provider):
            kinds.setdefault((item.account, item.model, item.request.resolution or ""), item)
        if item.state is not ItemState.AMBIGUOUS:
            continue
        if item.late_task:
            report.late.append((item.id, item.late_task))
        verdict = reconcile_item(rt, item.id, on_demand=True)
        if verdict.outcome == "adopted":
            report.adopted.append((item.id, verdict.detail))
        elif verdict.outcome == "resubmitted":
            report.resubmitted.append(item.id)
        else:
            report.left.append((item.id, verdict.detail))
    if span.first <= span.last:
        margin = rt.settings.reconcile_margin_s
        report.span = (span.first - margin, span.last + margin)
        _orphans(rt, report, kinds, *report.span)
    return report


def _orphans(rt: Runtime, report: BatchReport, kinds: dict[tuple[str, str, str], Item],
             start: float, end: float) -> None:
    """Tasks created in [start, end] by the accounts, of the batch's kinds, owned by none."""
    for (account, _, _), item in sorted(kinds.items()):
        try:
            listing = rt.provider(account).list_tasks(item.model, item.request, since=start)
        except (ProviderError, GenbatchError, ValueError) as exc:
            report.left.append(("-", f"{account}: the task list could not be read ({exc})"))
            continue
        tasks = [t for t in listing.tasks if start <= t.created_at <= end]
        owners = rt.store.reconcile.owners(account, [(t.id, t.created_at) for t in tasks])
        report.orphans += [(account, t.id) for t in tasks if t.id not in owners]


@dataclass
class _Span:
    """The batch's submits: the first one's start and the last one's end."""

    longest: float  # how long a submit may take (its timeouts)
    first: float = math.inf
    last: float = -math.inf

    def see(self, item: Item) -> None:
        starts = [_float(e.get("submitted_at")) for e in _past(item)]
        starts.append(item.submit_started_at)
        for start in starts:
            if start is not None:
                self.first = min(self.first, start)
        start = item.submit_started_at
        if start is not None:
            # answered then (an adopted item's submitted_at is when it was adopted: later)
            end = min(item.submitted_at or math.inf, start + self.longest)
            self.last = max(self.last, max(end, start))


def _past(item: Item) -> list[dict[str, object]]:
    try:
        return [e for e in item.history if isinstance(e, dict)]
    except ValueError:
        return []


def _float(value: object) -> float | None:
    try:
        return float(str(value)) if value not in (None, "") else None
    except ValueError:
        return None
