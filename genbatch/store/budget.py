"""The budget cap of a batch (`submit --budget USD`): what is spent, reserved and left.

The money moves inside the job store's Lua scripts, in integer micro-dollars, so it is
exact under any number of dispatchers and workers:

- DISPATCH reserves an item's estimate (`est_cost`) on the batch before the item leaves
  `pending`; when `spent + reserved + estimate` would pass `budget_usd` the item stays at
  the head of its queue, the batch gets `budget_exhausted` and leaves that account's
  round-robin (so it holds up no other batch).
- TRANSITION settles an item when its attempt ends (back to `pending`, or a terminal state):
  the reservation is released, and the cost of a generation the provider finished (its
  reported usage, else the estimate) is added to `spent`, even when the download later
  fails. An `ambiguous` submit may have been billed: its reservation is counted as spent.
- RAISE_BUDGET sets a new budget (never below spent + reserved), clears
  `budget_exhausted` and puts the batch back on its accounts' queues.

- RESUME_IF_ROOM (the scheduler's sweep) continues a stopped batch once released
  reservations (items that failed unbilled) leave room for the next queued item.

A batch stopped by its budget keeps its pending items, so it never finalizes; `retry
--budget` or `submit --resume --budget` continues it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from genbatch.errors import GenbatchError
from genbatch.models import BatchStatus, Counter
from genbatch.store import JobStore

MICRO = 1_000_000


def usd(micro: str | int | None) -> float:
    """Micro-dollars (as stored) → USD."""
    return int(micro or 0) / MICRO


def stopped(batch: Mapping[str, str]) -> bool:
    """Dispatch of this batch is stopped by its budget: pending items wait for a raise."""
    return (bool(batch.get("budget_exhausted")) and batch.get("status") == BatchStatus.IN_PROGRESS
            and int(batch.get(Counter.PENDING) or 0) > 0)


def summary(batch: Mapping[str, str]) -> dict[str, Any]:
    """Spend of a batch, in USD: `spent_usd` (billed as far as we know) against
    `spent_estimate_usd` (the estimate of the same items), `reserved_usd` (estimates of
    items in flight), and with a budget: `budget_usd`, `left_usd`, `exhausted`."""
    budget = float(batch["budget_usd"]) if batch.get("budget_usd") else None
    spent, reserved = usd(batch.get("spent_micro")), usd(batch.get("reserved_micro"))
    return {
        "budget_usd": budget,
        "spent_usd": round(spent, 6),
        "spent_estimate_usd": round(usd(batch.get("spent_est_micro")), 6),
        "reserved_usd": round(reserved, 6),
        "left_usd": None if budget is None else round(budget - spent - reserved, 6),
        "exhausted": stopped(batch),
    }


def unpriced_message(n: int) -> str:
    """Why `--budget` refuses a manifest: a cap cannot hold rows it cannot price."""
    return (f"--budget needs a price estimate for every row, and {n} rows have none "
            "(see `submit --dry-run`); submit them without --budget or in a batch of their own")


def check_budget(budget_usd: float) -> None:
    """A budget is a positive amount of USD (submit --budget, retry/resume --budget)."""
    if not budget_usd > 0:
        raise GenbatchError(f"--budget must be a positive amount in USD (got {budget_usd})")


def set_budget(store: JobStore, batch_id: str, budget_usd: float,
               providers: Sequence[str]) -> None:
    """Give the batch a (new) budget and let it dispatch again; a clear error when the
    amount is below what it has already spent and reserved."""
    check_budget(budget_usd)
    ok, spent, reserved = store.batches.set_budget(batch_id, budget_usd, providers)
    if not ok:
        raise GenbatchError(
            f"--budget {budget_usd:.2f} is below what batch {batch_id} has already spent "
            f"(${usd(spent):.2f}) plus reserved for items in flight (${usd(reserved):.2f}); "
            f"give at least ${usd(spent + reserved):.2f}")
