"""What the CLI shows: batch tables, results tables, and the live progress of a batch."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from genbatch.console.health import diagnose
from genbatch.models import BATCH_COUNTERS, TERMINAL_COUNTERS, BatchStatus, Counter
from genbatch.records import Batch
from genbatch.store import JobStore, budget
from genbatch.worker import failover, notify

STATE_COLUMNS = tuple(c for c in BATCH_COUNTERS if c is not Counter.TOTAL)
DONE = tuple(c for c in STATE_COLUMNS if c in TERMINAL_COUNTERS)


def counts(batch: Mapping[str, str]) -> dict[str, int]:
    b = Batch.view(batch)
    return {k: b.count(k) for k in BATCH_COUNTERS}


def done_count(batch: Mapping[str, str]) -> int:
    c = counts(batch)
    return sum(c[k] for k in DONE)


def shown_status(batch: Mapping[str, str], *, count: bool = True) -> str:
    """The batch's status; `budget_exhausted` while its budget holds pending items back;
    `cancelling` while a cancelled batch's running items finish; `settling N ambiguous`
    (`settling` without `count`: a stable word for --json) while, every other item done, it
    waits for its ambiguous items to settle or their window to close (worker/settling.py)."""
    b = Batch.view(batch)
    if b.cancel_requested and b.status in (BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING):
        return "cancelling"
    if budget.stopped(batch):
        return "budget_exhausted"
    ambiguous = b.count(Counter.AMBIGUOUS)
    if b.status is BatchStatus.IN_PROGRESS and not b.open_items and ambiguous:
        return f"settling {ambiguous} ambiguous" if count else "settling"
    return batch.get("status", "")


def batch_summary(batch: Mapping[str, str]) -> dict[str, object]:
    c = counts(batch)
    created = Batch.view(batch).created_at or 0.0
    return {
        "id": batch.get("id"), "status": shown_status(batch, count=False),
        "created_at": datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds"),
        "manifest": batch.get("manifest"), "priority": batch.get("priority") or "normal",
        "tier": batch.get("tier") or None,
        "expires_after": int(batch["expires_after"]) if batch.get("expires_after") else None,
        **c,
        "results_jsonl": batch.get("results_jsonl"), "results_csv": batch.get("results_csv"),
        "errors_jsonl": batch.get("errors_jsonl"), "notify": notify.delivery_summary(batch),
        "budget": budget.summary(batch), "failover": failover.fallback_summary(batch),
        # items a Redis restart may have lost a submit of (worker/recovery.py)
        "possibly_paid_twice": int(batch.get("possibly_paid_twice") or 0),
    }


def served_by_line(hosts: Mapping[str, Mapping[str, int]]) -> str:
    """`host-a 412 submitted, 410 downloaded; host-b …`: what each host's workers did for a
    batch (store.batches.served_by), busiest first; "" before any did anything."""
    return "; ".join(f"{host} {steps.get('submits', 0)} submitted, "
                     f"{steps.get('downloads', 0)} downloaded" for host, steps in hosts.items())


def batches_table(batches: Sequence[Mapping[str, str]], width: int = 120) -> Table:
    """Newest first. Batch ids are never cut: at a narrow `width` the state columns that
    are zero everywhere go first, then the rest fold into one `open / done` column."""
    rows = [counts(b) for b in batches]
    states = [k for k in STATE_COLUMNS if any(c[k] for c in rows)] or [Counter.PENDING]
    id_width = max((len(b.get("id", "")) for b in batches), default=5)
    wide = id_width + 16 + 6 + 7 * len(states) + 26 <= width
    table = Table(title="batches (newest first)", expand=False)
    table.add_column("batch", no_wrap=True, min_width=id_width)
    table.add_column("status", no_wrap=True)
    table.add_column("total", justify="right")
    for k in states if wide else ["open / done"]:
        table.add_column(k.replace("_", " "), justify="right", overflow="fold")
    table.add_column("spent $ (est.) / budget", overflow="fold")
    for b, c in zip(batches, rows, strict=True):
        cells = [str(c[k]) for k in states] if wide else \
            [f"{sum(c[k] for k in STATE_COLUMNS if k not in DONE)} / {done_count(b)}"]
        table.add_row(b.get("id", ""), shown_status(b), str(c["total"]), *cells, spend_text(b))
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

    On a terminal it is a rich progress bar with counts, the time since the batch was
    created and an ETA at its rate so far; without one (CI, pipes) a plain line every few
    seconds. Whenever what the batch waits on changes (no worker, a paused account …), a
    line says so above the bar.
    """
    batch = store.batches.get(batch_id)
    reasons = _Reasons(store, console)
    if console.is_terminal:
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[counts]}"), TextColumn("{task.fields[elapsed]}"),
                   TextColumn("ETA {task.fields[eta]}"))
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(batch_id, total=batch.total, counts="", elapsed="",
                                     eta="?")
            while True:
                batch = store.batches.get(batch_id)
                done = done_count(batch)
                progress.update(task, completed=done, counts=_short_counts(batch),
                                elapsed=clock(since_created(batch)), eta=eta(batch))
                reasons.check(batch)
                if _finished(batch) or (stop and stop()):
                    return batch
                time.sleep(poll_s)
    last = 0.0
    while True:
        batch = store.batches.get(batch_id)
        reasons.check(batch)
        if time.monotonic() - last > 5 or _finished(batch):
            print(f"{batch_id}: {done_count(batch)}/{batch.total} done, "
                  f"{_short_counts(batch)}, status {shown_status(batch)}", file=sys.stderr,
                  flush=True)
            last = time.monotonic()
        if _finished(batch) or (stop and stop()):
            return batch
        time.sleep(poll_s)


def since_created(batch: Batch) -> float:
    return max(0.0, time.time() - (batch.created_at or time.time()))


def eta(batch: Batch) -> str:
    """Time left at the batch's completion rate since it was created ("?" before the first
    item ends)."""
    done, elapsed = done_count(batch), since_created(batch)
    if done <= 0 or elapsed <= 0 or batch.finished:
        return "?" if not batch.finished else "0:00:00"
    return clock((batch.total - done) * elapsed / done)


def clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _Reasons:
    """Prints what the batch waits on, when it changes (checked every few seconds)."""

    def __init__(self, store: JobStore, console: Console, every_s: float = 2.0) -> None:
        self.store, self.console, self.every_s = store, console, every_s
        self.shown: tuple[str, ...] = ()
        self.at = -1e9

    def check(self, batch: Batch) -> None:
        if time.monotonic() - self.at < self.every_s:
            return
        self.at = time.monotonic()
        reasons = diagnose(self.store, batch).reasons
        if reasons != self.shown:
            for line in reasons:
                self.console.print(f"[yellow]waiting:[/] {line}", highlight=False)
            if self.shown and not reasons:
                self.console.print("[green]no longer waiting[/]", highlight=False)
            self.shown = reasons


def _finished(batch: Batch) -> bool:
    """Completed, cancelled, or stopped by its budget with nothing left running."""
    return batch.finished or (budget.stopped(batch) and batch.count(Counter.IN_FLIGHT) == 0
                              and batch.count(Counter.DOWNLOADING) == 0)


def _short_counts(batch: Batch) -> str:
    c = counts(batch)
    parts = [f"{k.replace('_', ' ')} {c[k]}" for k in STATE_COLUMNS if c[k]]
    return ", ".join(parts)
