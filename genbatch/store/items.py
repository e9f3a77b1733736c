"""Item records and their state machine: `item:{bid}:{seq}` hashes and the `timers` zset.

Every state change of an item is a compare-and-set through `lua/transition.lua`
(`Items.transition`), which moves the batch's counters, the account's in-flight count and
the item's timer in the same atomic step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

from genbatch.errors import NotFoundError
from genbatch.models import ItemState
from genbatch.records import Item, parse_state
from genbatch.store import scripts

TimerArg = float | Literal["-"] | None  # None keep, "-" remove, float = due time
ANY_OPEN: Literal["*"] = "*"  # `allowed` of a transition: any state but a terminal one


def item_id(batch_id: str, seq: int) -> str:
    return f"{batch_id}:{seq}"


def as_mapping(mapping: Mapping[str, Any]) -> Any:
    """redis-py's Mapping types are invariant in the key; our keys are always str."""
    return mapping


@dataclass(frozen=True, slots=True)
class Transition:
    """Outcome of a compare-and-set: did it apply, what the state was, items left open."""

    applied: bool
    previous: ItemState | None
    open_items: int  # open items left in the batch after the move; -1 when not applied
    provider: str = ""  # the item's provider before the move (when applied)
    account: str = ""  # and its account there (the provider's name before dispatch)


class Items:
    """Item records: read, change fields, and move through states (TRANSITION)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r = client
        self._prefix = prefix
        self._transition = client.register_script(scripts.TRANSITION)

    def _key(self, iid: str) -> str:
        return f"{self._prefix}item:{iid}"

    def get(self, iid: str) -> Item:
        rec: dict[str, str] = self._r.hgetall(self._key(iid))  # type: ignore[assignment]
        if not rec:
            raise NotFoundError(f"no item {iid!r} in the job store")
        return Item(rec)

    def awaiting(self, tasks: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (item id, remote task id): whether the item still waits for that task
        (submitted, with that task as its current attempt's); one round trip, two fields
        each, for a listing of many tasks most of which ended long ago."""
        pipe = self._r.pipeline(transaction=False)
        for iid, _ in tasks:
            pipe.hmget(self._key(iid), ["state", "remote_id"])
        return [parse_state(state) is ItemState.SUBMITTED and remote == remote_id
                for (state, remote), (_, remote_id) in zip(pipe.execute(), tasks, strict=True)]

    def children(self, iid: str) -> list[int]:
        """The seqs of the item's chained children (its `children` field; chains): one
        field read, for the hot path where almost every item has none."""
        value = self._r.hget(self._key(iid), "children")
        return [int(s) for s in str(value).split(",") if s] if value else []

    def of_batch(self, batch_id: str, total: int, chunk: int = 500) -> Iterator[Item]:
        """Every item of a batch in manifest order, fetched `chunk` at a time."""
        for start in range(1, total + 1, chunk):
            pipe = self._r.pipeline(transaction=False)
            for seq in range(start, min(start + chunk, total + 1)):
                pipe.hgetall(self._key(item_id(batch_id, seq)))
            for rec in pipe.execute():
                if rec:
                    yield Item(rec)

    def set_fields(self, items: Mapping[str, Mapping[str, str]]) -> None:
        """Set fields of several items (item id -> fields) in one round trip."""
        pipe = self._r.pipeline(transaction=False)
        for iid, fields in items.items():
            pipe.hset(self._key(iid), mapping=as_mapping(fields))
        pipe.execute()

    def set_timer(self, iid: str, due: float) -> None:
        self._r.zadd(f"{self._prefix}timers", {iid: due})

    def transition(
        self,
        iid: str,
        allowed: Sequence[ItemState] | ItemState | Literal["*"],
        new: ItemState,
        *,
        timer: TimerArg = None,
        fields: Mapping[str, Any] | None = None,
        incr: Mapping[str, int] | None = None,
        queue: Literal["front", "back"] | None = None,
    ) -> Transition:
        """Compare-and-set the item's state, moving batch counters in the same step.

        `allowed` lists the states the item may be in (ANY_OPEN "*" = any non-terminal);
        `timer` is None (keep), "-" (remove) or the next due time. With `queue` and `new`
        = pending, the item also goes onto the front or back of its provider's pending
        list (its `provider` after `fields` apply) in the same atomic step. `incr` adds to
        the item's fields, to its batch's for a name `batch:<field>`, or to the batch's
        work per host for `hosts:<step>:<host>` (`Batches.served_by`). Returns whether it
        applied.
        """
        allowed_arg = allowed if isinstance(allowed, str) else ",".join(allowed)
        timer_arg = "" if timer is None else (timer if isinstance(timer, str) else repr(timer))
        args: list[Any] = [iid, self._prefix, allowed_arg, new.value, timer_arg,
                           len(fields or {})]
        for f, v in (fields or {}).items():
            args += [f, "" if v is None else str(v)]
        args.append(len(incr or {}))
        for f, d in (incr or {}).items():
            args += [f, d]
        args.append(queue or "")
        res = self._transition(keys=[self._key(iid), f"{self._prefix}timers"], args=args)
        status, previous, open_items = int(res[0]), parse_state(str(res[1])), int(res[2])
        if status == -1:
            raise NotFoundError(f"no item {iid!r} in the job store")
        return Transition(status == 1, previous, open_items,
                          str(res[3]) if len(res) > 3 else "",
                          str(res[4]) if len(res) > 4 else "")
