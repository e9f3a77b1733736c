"""`genbatch status BATCH`: one batch in detail — counts, money, options, what it waits on,
its accounts, its most frequent errors and where its outputs are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table

from genbatch.console.health import Diagnosis, health_table
from genbatch.console.views import (
    STATE_COLUMNS,
    clock,
    counts,
    eta,
    served_by_line,
    shown_status,
    since_created,
)
from genbatch.errors import GenbatchError
from genbatch.models import Counter
from genbatch.providers import provider_model_id
from genbatch.records import Batch
from genbatch.store import budget


@dataclass(frozen=True)
class ErrorCount:
    """One kind of error in a batch and how many items ended with it."""

    code: str
    message: str
    count: int


COLOURS = {Counter.SUCCEEDED: "green", Counter.FAILED: "red", Counter.EXPIRED: "magenta",
           Counter.CANCELLED: "bright_black", Counter.AMBIGUOUS: "yellow",
           Counter.PARENT_FAILED: "red"}


def batch_detail(batch: Batch, diagnosis: Diagnosis, errors: Sequence[ErrorCount],
                 served_by: Mapping[str, Mapping[str, int]] | None = None) -> Group:
    facts = _facts(batch)
    if served_by:  # which hosts' workers submitted and downloaded its items
        facts.add_row("served by", escape(served_by_line(served_by)))
    parts: list[RenderableType] = [facts]
    twice = int(batch.get("possibly_paid_twice") or 0)
    if twice:
        parts.append(f"[red]possibly paid twice:[/] {twice} items (a Redis restart may have "
                     "lost their submit; `possibly_paid_twice` in results and errors.jsonl)")
    if diagnosis.durability:
        parts.append(f"[bold]durability[/]  {diagnosis.durability}")
    if diagnosis.reasons:
        parts.append("\n".join(f"[yellow]waiting:[/] {r}" for r in diagnosis.reasons))
    if diagnosis.accounts:
        parts.append(health_table(diagnosis.accounts))
    if errors:
        parts.append(_errors(errors))
    outputs = [f"{name.replace('_', '.')}: {batch[name]}" for name in
               ("results_jsonl", "results_csv", "errors_jsonl") if batch.get(name)]
    if outputs:
        parts.append("\n".join(outputs))
    return Group(*parts)


def _facts(batch: Batch) -> Table:
    c = counts(batch)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("batch", batch.id)
    grid.add_row("status", shown_status(batch))
    grid.add_row("manifest", batch.get("manifest", ""))
    if batch.default_provider and batch.default_model:  # --provider / --model defaults
        grid.add_row("model", _model(batch.default_provider, batch.default_model))
    grid.add_row("items", f"{c['total']} — " + ", ".join(
        f"[{COLOURS.get(k, 'white')}]{k.replace('_', ' ')} {c[k]}[/]"
        for k in STATE_COLUMNS if c[k]))
    grid.add_row("time", f"{clock(since_created(batch))} since created, ETA {eta(batch)}")
    money = budget.summary(batch)
    spend = f"${money['spent_usd']:.2f} spent (estimate of the same items " \
            f"${money['spent_estimate_usd']:.2f})"
    if money["reserved_usd"]:
        spend += f", ${money['reserved_usd']:.2f} reserved"
    if money["budget_usd"] is not None:
        spend += f", budget ${money['budget_usd']:.2f}"
    grid.add_row("cost", spend)
    options = [f"priority {batch.priority}"]
    options += [f"{label} {batch[key]}" for key, label in
                (("tier", "tier"), ("expires_after", "expires after"),
                 ("fallback", "fallback")) if batch.get(key)]
    if batch.notify_url:  # its path or query may hold a token: the host only
        options.append(f"notify {urlsplit(batch.notify_url).hostname or '?'}")
    grid.add_row("options", ", ".join(options))
    return grid


def _model(provider: str, model: str) -> str:
    """`provider model`, with the provider's own id when it differs."""
    try:
        wire = provider_model_id(provider, model, None)
    except GenbatchError:
        wire = model
    return f"{provider} {model}" + (f" ({provider}'s id: {wire})" if wire != model else "")


def _errors(errors: Sequence[ErrorCount]) -> Table:
    table = Table(title="most frequent errors", expand=False)
    table.add_column("items", justify="right", no_wrap=True)
    table.add_column("code", no_wrap=True)
    table.add_column("message", overflow="fold")
    for e in errors:
        table.add_row(str(e.count), e.code, e.message)
    return table

