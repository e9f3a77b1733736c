"""Reads for the metrics scrape (`genbatch/metrics.py`): due timers, open items, and the
backlog of Celery's queues in the broker (the same Redis; kombu's keys are not under our
prefix and are only read here)."""

from __future__ import annotations

from collections.abc import Sequence

import redis

# kombu's Redis transport: a queue's priority lists are `<queue>\x06\x16<step>`.
_KOMBU_PRIORITY_SEP = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (3, 6, 9)  # step 0 is the plain list


class Monitor:
    def __init__(self, client: redis.Redis, prefix: str = "gb:") -> None:
        self.r = client
        self.prefix = prefix

    def k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def timers_due(self, now: float) -> tuple[float | None, int]:
        """(when the oldest due timer was due, how many are due) at `now`."""
        key = self.k("timers")
        oldest = self.r.zrangebyscore(key, "-inf", now, start=0, num=1, withscores=True)
        n: int = self.r.zcount(key, "-inf", now)
        return (float(oldest[0][1]) if oldest else None), n

    def timed_item_starts(self, max_n: int) -> list[tuple[str | None, str | None]]:
        """(submitted_at, deadline) of up to `max_n` items with a timer (open items)."""
        ids = self.r.zrange(self.k("timers"), 0, max_n - 1)
        pipe = self.r.pipeline(transaction=False)
        for iid in ids:
            pipe.hmget(self.k("item", str(iid)), "submitted_at", "deadline")
        return [(s, d) for s, d in pipe.execute()]

    def celery_backlog(self, queues: Sequence[str]) -> tuple[dict[str, int], int]:
        """Messages waiting in each Celery queue (kombu keeps a queue as a plain list plus
        one list per priority step, named `queue\\x06\\x16<step>`; they are not under our
        prefix), and messages delivered but not yet acknowledged (kombu's `unacked` hash)."""
        steps = ("", *(f"{_KOMBU_PRIORITY_SEP}{step}" for step in _KOMBU_PRIORITY_STEPS))
        pipe = self.r.pipeline(transaction=False)
        for q in queues:
            for step in steps:
                pipe.llen(f"{q}{step}")
        pipe.hlen("unacked")
        *lengths, unacked = pipe.execute()
        per = len(steps)
        return ({q: sum(lengths[i * per:(i + 1) * per]) for i, q in enumerate(queues)},
                int(unacked))
