"""Raw looks at the job store's keys, for tests, benchmarks and debugging only.

genbatch's own parts never use this (tests/test_layers.py checks it): they call the named
methods of the other modules. A test uses it to see what those methods left in Redis (a
timer, a pending list, a round-robin) or to set up a record as an older genbatch or a
crash would have left it. The key layout is documented in store/__init__.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from genbatch.models import BatchStatus, ItemState
from genbatch.store.items import as_mapping, item_id


class Debug:
    """Raw reads and writes of the store's keys (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client  # for what has no name here (Celery's lists, INFO, …)
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def keys(self, *parts: str) -> list[str]:
        """Keys matching a pattern (`"item", "b1", "*"`), under the prefix."""
        return sorted(self.client.scan_iter(self.key(*parts)))

    def batch_keys(self, batch_id: str, providers: tuple[str, ...] = ("*",)) -> list[str]:
        """What is left in Redis of a batch: its hash, items, pending lists, id check."""
        found = [k for k in (self.key("batch", batch_id), self.key("ids", batch_id))
                 if self.client.exists(k)]
        found += self.keys("item", batch_id, "*")
        for provider in providers:
            found += self.keys(ItemState.PENDING, provider, batch_id)
        return found

    def timer(self, iid: str) -> float | None:
        """When the scheduler must next act on the item (None: no timer)."""
        return self.client.zscore(self.key("timers"), iid)

    def timers_due(self, until: float) -> int:
        return int(self.client.zcount(self.key("timers"), "-inf", until))

    def pending(self, provider: str, batch_id: str) -> list[str]:
        """The ids on the batch's pending list for `provider`, head first."""
        return self.client.lrange(  # type: ignore[return-value]
            self.key(ItemState.PENDING, provider, batch_id), 0, -1)

    def queued(self, provider: str) -> set[str]:
        """The batches on `provider`'s queues set (those with a pending list there)."""
        return self.client.smembers(self.key("queues", provider))  # type: ignore[return-value]

    def ring(self, provider: str, priority: str) -> list[str]:
        """`provider`'s round-robin of batches of one priority."""
        return self.client.lrange(  # type: ignore[return-value]
            self.key("ring", provider, priority), 0, -1)

    def drop_queues(self, provider: str, batch_id: str | None = None,
                    priority: str | None = None) -> None:
        """Take a batch off `provider`'s queues set, or drop one of its rings, behind the
        scripts' back (as a crash or an older genbatch left them)."""
        if batch_id is not None:
            self.client.srem(self.key("queues", provider), batch_id)
        if priority is not None:
            self.client.delete(self.key("ring", provider, priority))

    def validating(self) -> set[str]:
        """The batches still being ingested."""
        return self.client.smembers(self.key(BatchStatus.VALIDATING))  # type: ignore[return-value]

    def notify_due(self, batch_id: str) -> float | None:
        """When the batch's finished event is due for delivery (None: not in the outbox)."""
        return self.client.zscore(self.key("notify"), batch_id)

    def notify_ids(self) -> list[str]:
        return self.client.zrange(self.key("notify"), 0, -1)  # type: ignore[return-value]

    def set_notify_due(self, due: Mapping[str, float]) -> None:
        self.client.zadd(self.key("notify"), as_mapping(due))

    def set_item(self, iid: str, fields: Mapping[str, Any]) -> None:
        """Write an item's fields as they are, no transition (a record set up by hand)."""
        self.client.hset(self.key("item", iid), mapping=as_mapping(fields))

    def set_batch(self, batch_id: str, fields: Mapping[str, Any]) -> None:
        self.client.hset(self.key("batch", batch_id), mapping=as_mapping(fields))

    def set_health(self, account: str, fields: Mapping[str, Any]) -> None:
        self.client.hset(self.key("health", account), mapping=as_mapping(fields))

    def item_field(self, batch_id: str, seq: int, field: str) -> str | None:
        return self.client.hget(self.key("item", item_id(batch_id, seq)), field)  # type: ignore[return-value]
