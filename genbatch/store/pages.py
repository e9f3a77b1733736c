"""Pages of a batch's items, filtered and searched inside Redis.

Reads `item:{bid}:{seq}` (no key of its own). Items are numbered 1..total in manifest order,
so a page is a walk over sequence numbers from a cursor: one Lua call (SCAN_ITEMS) reads
four fields of each item it passes (state, provider, model, custom_id), keeps those that
match the filter, and stops at a full page or after `budget` items, then one pipelined
HGETALL fetches the page. A page of a 100k-item batch therefore never loads the batch: an
unfiltered page reads `limit` items; a filter that matches rarely reads at most `budget`
items per request and says where it stopped, so the next request goes on from there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from genbatch.records import Item
from genbatch.store import scripts

SCAN_BUDGET = 10_000  # most items one request looks at (a few ms of Redis time)

SCAN_ITEMS = scripts.load("scan_items")


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """Which items a page shows: any of `states`, one provider and model, and a custom_id
    containing `search` (case-insensitive for ASCII letters). Empty = no condition."""

    states: tuple[str, ...] = ()
    provider: str = ""
    model: str = ""
    search: str = ""

    @property
    def active(self) -> bool:
        return bool(self.states or self.provider or self.model or self.search)

    def args(self) -> list[str]:
        needle = "".join(c.lower() if c.isascii() else c for c in self.search)
        return [",".join(self.states), self.provider, self.model, needle]


@dataclass(frozen=True, slots=True)
class Page:
    """Items in manifest order, and where the walk can go on.

    `next_after`: pass as `after` for the next page (None: the walk reached the end).
    `prev_before`: pass as `before` for the page before (None: nothing before).
    `scanned_to`: the last sequence number looked at; when the page is short and
    `next_after` is set, the scan budget ran out there (go on to find more).
    """

    items: list[Item] = field(default_factory=list)
    next_after: int | None = None
    prev_before: int | None = None
    scanned_to: int = 0


class Pages:
    """Server-side paging over a batch's items (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str = "gb:",
                 budget: int = SCAN_BUDGET) -> None:
        self.r = client
        self.prefix = prefix
        self.budget = budget
        self._scan = client.register_script(SCAN_ITEMS)

    def page(self, batch_id: str, total: int, flt: ItemFilter, limit: int, *,
             after: int = 0, before: int | None = None) -> Page:
        """Up to `limit` matching items after seq `after` (or, with `before`, the last ones
        before that seq)."""
        if before is not None:
            start, stop, direction = min(before - 1, total), 1, -1
        else:
            start, stop, direction = max(after, 0) + 1, total, 1
        nxt, *seqs = self._scan(args=[self.prefix, batch_id, start, stop, direction, limit,
                                      max(self.budget, limit), *flt.args()])
        found = [int(s) for s in seqs]
        walked_to = int(nxt) - direction  # the last seq looked at
        if direction < 0:
            found.reverse()
            last = found[-1] if found else start
            return Page(self.fetch(batch_id, found),
                        next_after=last if last < total else None,
                        prev_before=(found[0] if found else walked_to) if walked_to > 1 else None,
                        scanned_to=walked_to)
        first = found[0] if found else start
        return Page(self.fetch(batch_id, found),
                    next_after=walked_to if walked_to < total else None,
                    prev_before=first if first > 1 else None, scanned_to=walked_to)

    def fetch(self, batch_id: str, seqs: Iterable[int]) -> list[Item]:
        """The items with these sequence numbers (missing ones left out), in that order."""
        pipe = self.r.pipeline(transaction=False)
        for seq in seqs:
            pipe.hgetall(f"{self.prefix}item:{batch_id}:{seq}")
        return [Item(rec) for rec in pipe.execute() if rec]
