"""The outbox of batch-finished events (`submit --notify URL`, `genbatch/worker/notify.py`).

Keys (under the store's prefix):
    notify                   zset batch id -> when its next delivery attempt is due (a
                             lease while an attempt runs; removed when delivered or given up)
    batch:{bid}              the event itself and its delivery state, in the batch's hash:
                             notify_for (the finish it belongs to), notify_event_id,
                             notify_event (JSON body), notify_status, notify_attempts,
                             notify_error, notify_done_at
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from genbatch.models import NotifyStatus


class Outbox:
    """Due times and persisted bodies of webhook-out events."""

    def __init__(self, client: redis.Redis, prefix: str = "gb:") -> None:
        self.r = client
        self.prefix = prefix
        self.key = f"{prefix}notify"

    def schedule(self, batch_id: str, due: float) -> None:
        self.r.zadd(self.key, {batch_id: due})

    def unschedule(self, batch_id: str) -> None:
        self.r.zrem(self.key, batch_id)

    def claim_due(self, now: float, lease_until: float, max_n: int) -> list[str]:
        """Batches whose delivery is due, each moved to `lease_until` (never earlier: a
        later retry is not pulled forward)."""
        due: list[str] = self.r.zrangebyscore(  # type: ignore[assignment]
            self.key, "-inf", now, start=0, num=max_n)
        if due:
            pipe = self.r.pipeline(transaction=False)
            for bid in due:
                pipe.zadd(self.key, {bid: lease_until}, xx=True, gt=True)
            pipe.execute()
        return due

    def count_attempt(self, batch_id: str) -> int:
        """One more delivery attempt of the batch's event; returns how many so far."""
        return int(self.r.hincrby(f"{self.prefix}batch:{batch_id}", "notify_attempts", 1))

    def persisted_event(self, batch_id: str, finished_at: str,
                        build: Callable[[], tuple[str, str]]) -> tuple[str, bytes]:
        """The event of the finish at `finished_at`: the stored one, or a new one from
        `build()` (event id, JSON body) stored before it is returned, so every attempt of
        one finish sends the same event."""
        key = f"{self.prefix}batch:{batch_id}"
        with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    stored = pipe.hmget(key, "notify_for", "notify_event_id", "notify_event")
                    if stored[0] == finished_at and stored[1] and stored[2]:
                        pipe.unwatch()
                        return str(stored[1]), str(stored[2]).encode()
                    event_id, body = build()
                    pipe.multi()
                    pipe.hset(key, mapping={
                        "notify_for": finished_at, "notify_event_id": event_id,
                        "notify_event": body, "notify_status": NotifyStatus.PENDING,
                        "notify_attempts": "0", "notify_error": "", "notify_done_at": "",
                    })
                    pipe.execute()
                    return event_id, body.encode()
                except redis.WatchError:
                    continue
