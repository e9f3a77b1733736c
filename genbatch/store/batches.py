"""Batch records once ingested: `batch:{bid}` hashes, the `batches` zset and `active` set.

A batch's status moves by compare-and-set (`lua/batch_status.lua`); its budget moves in
Lua too (RAISE_BUDGET, RESUME_IF_ROOM: see store/budget.py). How a batch is created and
made visible to the dispatcher is the ingest path's (store/writer.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import redis

from genbatch.errors import NotFoundError
from genbatch.models import (
    BATCH_COUNTERS,
    FINISHED_STATUSES,
    STATE_COUNTER,
    BatchStatus,
    Counter,
)
from genbatch.records import Batch
from genbatch.store import scripts
from genbatch.store.items import Items, as_mapping

# The steps `served_by` counts per host (`hosts:{bid}` fields `<step>:<host>`).
SUBMITS, DOWNLOADS = "submits", "downloads"


def host_count(step: str, host: str) -> str:
    """The TRANSITION `incr` name that counts one item's `step` for `host`."""
    return f"hosts:{step}:{host}"


class Batches:
    """Batch records: read, list, change status and fields, budget."""

    def __init__(self, client: redis.Redis, prefix: str, items: Items) -> None:
        self._r = client
        self._prefix = prefix
        self._items = items
        self._batch_cas = client.register_script(scripts.BATCH_STATUS)
        self._raise_budget = client.register_script(scripts.RAISE_BUDGET)
        self._resume_if_room = client.register_script(scripts.RESUME_IF_ROOM)

    def _key(self, batch_id: str) -> str:
        return f"{self._prefix}batch:{batch_id}"

    def get(self, batch_id: str) -> Batch:
        rec: dict[str, str] = self._r.hgetall(self._key(batch_id))  # type: ignore[assignment]
        if not rec:
            raise NotFoundError(f"no batch {batch_id!r} in the job store")
        return Batch(rec)

    def get_many(self, batch_ids: Sequence[str], chunk: int = 500) -> Iterator[Batch]:
        """The batches that still exist of `batch_ids`, `chunk` per round trip."""
        for start in range(0, len(batch_ids), chunk):
            pipe = self._r.pipeline(transaction=False)
            for bid in batch_ids[start:start + chunk]:
                pipe.hgetall(self._key(bid))
            yield from (Batch(rec) for rec in pipe.execute() if rec)

    def exists(self, batch_id: str) -> bool:
        return bool(self._r.exists(self._key(batch_id)))

    def recent(self, limit: int = 20) -> list[Batch]:
        """The last `limit` batches created, newest first."""
        ids: list[str] = self._r.zrevrange(  # type: ignore[assignment]
            f"{self._prefix}batches", 0, limit - 1)
        pipe = self._r.pipeline(transaction=False)
        for bid in ids:
            pipe.hgetall(self._key(bid))
        return [Batch(rec) for rec in pipe.execute() if rec]

    def active(self) -> list[str]:
        """Ids of the batches not yet completed."""
        return sorted(self._r.smembers(f"{self._prefix}active"))  # type: ignore[arg-type]

    def deactivate(self, batch_id: str) -> None:
        self._r.srem(f"{self._prefix}active", batch_id)

    def fields(self, batch_ids: Sequence[str],
               fields: Sequence[str]) -> list[list[str | None]]:
        """`fields` of each batch (None where unset), in one round trip."""
        pipe = self._r.pipeline(transaction=False)
        for bid in batch_ids:
            pipe.hmget(self._key(bid), list(fields))
        return list(pipe.execute())

    def set_fields(self, batch_id: str, fields: Mapping[str, str]) -> None:
        self._r.hset(self._key(batch_id), mapping=as_mapping(fields))

    def add(self, batch_id: str, field: str, n: int = 1) -> int:
        """Add `n` to a counter of the batch that no item state keeps (`late_adoptions`)."""
        return int(self._r.hincrby(self._key(batch_id), field, n))

    def cas(
        self, batch_id: str, allowed: Sequence[BatchStatus], new: BatchStatus,
        fields: Mapping[str, str] | None = None,
    ) -> tuple[bool, BatchStatus | None]:
        """Compare-and-set the batch's status (and set `fields` when it applies); returns
        whether it applied and the status it was in."""
        args: list[Any] = [",".join(allowed), new.value, len(fields or {})]
        for f, v in (fields or {}).items():
            args += [f, v]
        res = self._batch_cas(keys=[self._key(batch_id)], args=args)
        if int(res[0]) == -1:
            raise NotFoundError(f"no batch {batch_id!r} in the job store")
        previous = str(res[1])
        return int(res[0]) == 1, (BatchStatus(previous)
                                  if previous in BatchStatus._value2member_map_ else None)

    def reopen(self, batch_id: str) -> bool:
        """Make a finished or cancelled batch run again (for retry)."""
        ok, _ = self.cas(batch_id, [*FINISHED_STATUSES, BatchStatus.FINALIZING,
                                    BatchStatus.IN_PROGRESS], BatchStatus.IN_PROGRESS)
        if ok:
            pipe = self._r.pipeline(transaction=True)
            pipe.hdel(self._key(batch_id), "cancel_requested", "finished_at")
            pipe.sadd(f"{self._prefix}active", batch_id)
            pipe.execute()
        return ok

    def set_budget(self, batch_id: str, budget_usd: float,
                   providers: Sequence[str]) -> tuple[bool, int, int]:
        """Set the batch's budget and let it dispatch again (RAISE_BUDGET); refused when
        below spent + reserved. Returns (applied, spent, reserved), money in micro-USD."""
        res = self._raise_budget(keys=[self._key(batch_id)],
                                 args=[self._prefix, batch_id, repr(budget_usd), *providers])
        if int(res[0]) == -1:
            raise NotFoundError(f"no batch {batch_id!r} in the job store")
        return int(res[0]) == 1, int(res[1]), int(res[2])

    def resume_if_room(self, batch_id: str, providers: Sequence[str]) -> bool:
        """Continue a batch stopped by its budget if released reservations left room for
        its next item (RESUME_IF_ROOM); returns whether it did."""
        res = self._resume_if_room(keys=[self._key(batch_id)],
                                   args=[self._prefix, batch_id, *providers])
        return int(res) > 0

    def served_by(self, batch_id: str) -> dict[str, dict[str, int]]:
        """Host -> {step: items} of a batch, the hosts that submitted most first: which
        machines' workers submitted and downloaded its items (counted by TRANSITION as each
        step applied, so a step repeated after a killed worker counts once, for the host that
        finished it; an item retried later counts again)."""
        raw: dict[str, str] = self._r.hgetall(  # type: ignore[assignment]
            f"{self._prefix}hosts:{batch_id}")
        hosts: dict[str, dict[str, int]] = {}
        for field, count in raw.items():
            step, _, host = field.partition(":")
            hosts.setdefault(host, {})[step] = int(count)
        return dict(sorted(hosts.items(), key=lambda h: (-h[1].get(SUBMITS, 0), h[0])))

    def recount(self, batch_id: str) -> dict[Counter, int]:
        """Counters recomputed from the item records (for tests: they must equal the
        batch's own)."""
        batch = self.get(batch_id)
        counts = dict.fromkeys(BATCH_COUNTERS, 0)
        for item in self._items.of_batch(batch_id, batch.total):
            counts[Counter.TOTAL] += 1
            if item.state is not None:
                counts[STATE_COUNTER[item.state]] += 1
        return counts
