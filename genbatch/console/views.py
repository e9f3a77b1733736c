"""What the CLI shows: batch tables, results tables, and the live progress of a batch."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from genbatch.models import BATCH_COUNTERS, TERMINAL_STATES
from genbatch.records import Batch
from genbatch.store import JobStore, budget
from genbatch.worker import failover, notify

STATE_COLUMNS = tuple(c for c in BATCH_COUNTERS if c != "total")
DONE = tuple(c for c in STATE_COLUMNS if c in TERMINAL_STATES)


def counts(batch: Mapping[str, str]) -> dict[str, int]:
    b = Batch.view(batch)
    return {k: b.count(k) for k in ("total", *STATE_COLUMNS)}


def done_count(batch: Mapping[str, str]) -> int:
    c = counts(batch)
    return sum(c[k] for k in DONE)


def shown_status(batch: Mapping[str, str]) -> str:
    """The batch's status, or `budget_exhausted` while its budget holds pending items."""
    return "budget_exhausted" if budget.stopped(batch) else batch.get("status", "")


def batch_summary(batch: Mapping[str, str]) -> dict[str, object]:
    c = counts(batch)
    created = Batch.view(batch).created_at or 0.0
    return {
        "id": batch.get("id"), "status": shown_status(batch),
        "created_at": datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds"),
        "manifest": batch.get("manifest"), "priority": batch.get("priority") or "normal",
        "tier": batch.get("tier") or None,
        "expires_after": int(batch["expires_after"]) if batch.get("expires_after") else None,
        **c,
        "results_jsonl": batch.get("results_jsonl"), "results_csv": batch.get("results_csv"),
        "errors_jsonl": batch.get("errors_jsonl"), "notify": notify.delivery_summary(batch),
        "budget": budget.summary(batch), "failover": failover.fallback_summary(batch),
    }


def batches_table(batches: Sequence[Mapping[str, str]]) -> Table:
    table = Table("batch", "status", "total", *[c.replace("_", " ") for c in STATE_COLUMNS],
                  "spent $ (est.) / budget", title="batches (newest first)")
    for b in batches:
        c = counts(b)
        table.add_row(b.get("id", ""), shown_status(b), str(c["total"]),
                      *[str(c[k]) for k in STATE_COLUMNS], spend_text(b))
    return table


def spend_text(batch: Mapping[str, str]) -> str:
    """`spent (estimate of the same items)`, then `/ budget` and what is reserved."""
    s = budget.summary(batch)
    text = f"{s['spent_usd']:.2f} ({s['spent_estimate_usd']:.2f})"
    if s["budget_usd"] is not None:
        text += f" / {s['budget_usd']:.2f}"
        if s["reserved_usd"]:
            text += f", {s['reserved_usd']:.2f} reserved"
    return text


def results_table(rows: list[dict[str, object]], limit: int = 50) -> Table:
    table = Table("custom_id", "status", "provider", "model", "bytes", "cost $", "output / error",
                  title=f"results (first {min(limit, len(rows))} of {len(rows)})")
    for r in rows[:limit]:
        uri = r.get("output_uri")
        where = str(uri).rsplit("/", 1)[-1] if uri else f"{r.get('error_code')}: " \
            f"{r.get('error_message')}"
        cost = r.get("cost_usd")
        table.add_row(str(r.get("custom_id")), str(r.get("status")), str(r.get("provider")),
                      str(r.get("provider_model") or r.get("model")), str(r.get("bytes") or ""),
                      f"{cost:.3f}" if isinstance(cost, float) else "", str(where))
    return table


def watch_batch(store: JobStore, batch_id: str, console: Console,
                poll_s: float = 0.5, stop: Callable[[], bool] | None = None) -> Batch:
    """Show live progress until the batch completes; returns the final batch record.

    On a terminal it is a rich progress bar with counts and ETA; without one (CI, pipes) a
    plain line every few seconds.
    """
    batch = store.get_batch(batch_id)
    total = batch.total
    if console.is_terminal:
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                   TextColumn("ETA {task.fields[eta]}"))
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(batch_id, total=total, counts="", eta="?")
            rate = _Rate()
            while True:
                batch = store.get_batch(batch_id)
                done = done_count(batch)
                progress.update(task, completed=done, counts=_short_counts(batch),
                                eta=rate.eta(done, total))
                if _finished(batch) or (stop and stop()):
                    return batch
                time.sleep(poll_s)
    last = 0.0
    while True:
        batch = store.get_batch(batch_id)
        if time.monotonic() - last > 5 or _finished(batch):
            print(f"{batch_id}: {done_count(batch)}/{total} done, {_short_counts(batch)}, "
                  f"status {shown_status(batch)}", file=sys.stderr, flush=True)
            last = time.monotonic()
        if _finished(batch) or (stop and stop()):
            return batch
        time.sleep(poll_s)


def _finished(batch: Batch) -> bool:
    """Completed, cancelled, or stopped by its budget with nothing left running."""
    return batch.finished or (budget.stopped(batch) and batch.count("in_flight") == 0
                              and batch.count("downloading") == 0)


def _short_counts(batch: Batch) -> str:
    c = counts(batch)
    parts = [f"{k.replace('_', ' ')} {c[k]}" for k in STATE_COLUMNS if c[k]]
    return ", ".join(parts)


class _Rate:
    """ETA from the completion rate since the watch began."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.d0: int | None = None

    def eta(self, done: int, total: int) -> str:
        if self.d0 is None:
            self.d0 = done
        elapsed = time.monotonic() - self.t0
        gained = done - self.d0
        if gained <= 0 or elapsed <= 0:
            return "?"
        left = (total - done) * elapsed / gained
        return time.strftime("%H:%M:%S", time.gmtime(left))
