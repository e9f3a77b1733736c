"""What reconciling ambiguous submits needs from Redis: who owns each remote task, and which
ambiguous items are due for another look (`genbatch/worker/reconcile.py`).

Keys (under the store's prefix):
    owners:{provider}:{day}   hash remote task id -> item id, per UTC day of the submit,
                              kept 9 days (the providers' task lists reach back 7)
    reconcile                 zset item id -> when to look at the ambiguous item again
    reconciling:{bid}         set of the batch's ambiguous items that may still settle:
                              the batch is not finalized while it holds any (each leaves
                              when it settles or its window closes: worker/settling.py)
    ambiguous:{provider}      zset item id -> when its submit started, of every submit whose
                              outcome is not known yet (kept 9 days): a task in a window
                              two of them share cannot be told whose it is

An item's task is recorded as owned before the item is marked submitted, so a crash in
between leaves a task owned by the item whose submit then ends `ambiguous` — and that item
adopts it.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

DAY = 86_400
KEEP_S = 9 * DAY


class ReconcileBook:
    def __init__(self, client: redis.Redis, prefix: str = "gb:") -> None:
        self.r = client
        self.prefix = prefix
        self.due_key = f"{prefix}reconcile"

    def _owners(self, provider: str, when: float) -> str:
        return f"{self.prefix}owners:{provider}:{int(when // DAY)}"

    def own(self, provider: str, remote_id: str, iid: str, now: float) -> None:
        key = self._owners(provider, now)
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(key, remote_id, iid)
        pipe.expire(key, KEEP_S)
        pipe.execute()

    def owners(self, provider: str, tasks: Sequence[tuple[str, float]]) -> dict[str, str]:
        """Owner item of each (remote id, created at) that has one: looked up in the day
        buckets around its creation (the provider's clock may differ from ours)."""
        pipe = self.r.pipeline(transaction=False)
        for remote_id, created in tasks:
            for day in (-1, 0, 1):
                pipe.hget(self._owners(provider, created + day * DAY), remote_id)
        found = pipe.execute()
        owners: dict[str, str] = {}
        for n, (remote_id, _) in enumerate(tasks):
            hit = next((str(v) for v in found[n * 3:n * 3 + 3] if v), None)
            if hit is not None:
                owners[remote_id] = hit
        return owners

    def mark_unknown(self, provider: str, iid: str, started: float) -> None:
        key = f"{self.prefix}ambiguous:{provider}"
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(key, {iid: started})
        pipe.zremrangebyscore(key, "-inf", started - KEEP_S)
        pipe.execute()

    def mark_known(self, provider: str, iid: str) -> None:
        self.r.zrem(f"{self.prefix}ambiguous:{provider}", iid)

    def unknown_between(self, provider: str, start: float, end: float) -> list[str]:
        """Items whose submit outcome is unknown and whose submit started in [start, end]."""
        found: list[str] = self.r.zrangebyscore(  # type: ignore[assignment]
            f"{self.prefix}ambiguous:{provider}", start, end)
        return found

    def schedule(self, iid: str, due: float, *, hold: bool = False) -> None:
        """Look at `iid` at `due`; with `hold`, its batch waits until it is unscheduled."""
        pipe = self.r.pipeline(transaction=True)
        pipe.zadd(self.due_key, {iid: due})
        if hold:
            pipe.sadd(self._holding(iid), iid)
        pipe.execute()

    def holding(self, batch_id: str) -> int:
        return int(self.r.scard(f"{self.prefix}reconciling:{batch_id}"))

    def unschedule(self, iid: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(self.due_key, iid)
        pipe.srem(self._holding(iid), iid)
        pipe.execute()

    def _holding(self, iid: str) -> str:
        return f"{self.prefix}reconciling:{iid.rsplit(':', 1)[0]}"

    def claim_due(self, now: float, lease_until: float, max_n: int) -> list[str]:
        """Items due for a look, each moved to `lease_until` (a lost task is re-sent)."""
        due: list[str] = self.r.zrangebyscore(  # type: ignore[assignment]
            self.due_key, "-inf", now, start=0, num=max_n)
        if due:
            pipe = self.r.pipeline(transaction=False)
            for iid in due:
                pipe.zadd(self.due_key, {iid: lease_until}, xx=True)
            pipe.execute()
        return due
