"""Counters of what happens inside workers, for Prometheus (`genbatch/metrics.py` reads them).

Keys (under the store's prefix):
    metrics:{name}           hash: one field per provider account (or `account:kind`),
                             added to with HINCRBY / HINCRBYFLOAT by every worker process
    metrics:batch:{bid}      hash: spend_usd, spend_estimate_usd of a batch's stored videos

The process serving `/metrics` keeps no state of its own: every count lives here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis


class Counters:
    """Additive counters in Redis, shared by every process."""

    def __init__(self, client: redis.Redis, prefix: str = "gb:") -> None:
        self.r = client
        self.prefix = prefix

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(("metrics", *parts))

    def add(self, name: str, field: str, amount: float = 1) -> None:
        """Add `amount` to counter `name` for `field` (integers stay integers)."""
        if isinstance(amount, int):
            self.r.hincrby(self._key(name), field, amount)
        else:
            self.r.hincrbyfloat(self._key(name), field, amount)

    def add_stored_video(self, provider: str, batch_id: str, size: int, cost: float,
                         estimate: float) -> None:
        """A video is stored: its bytes and its spend against its estimate, per provider
        and per batch, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(self._key("download_bytes"), provider, size)
        pipe.hincrbyfloat(self._key("spend_usd"), provider, cost)
        pipe.hincrbyfloat(self._key("spend_estimate_usd"), provider, estimate)
        pipe.hincrbyfloat(self._key("batch", batch_id), "spend_usd", cost)
        pipe.hincrbyfloat(self._key("batch", batch_id), "spend_estimate_usd", estimate)
        pipe.execute()

    def batch_spend(self, batch_ids: Iterable[str]) -> list[tuple[str | None, str | None]]:
        """(spend_usd, spend_estimate_usd) as stored, per batch id, in the order given."""
        pipe = self.r.pipeline(transaction=False)
        for bid in batch_ids:
            pipe.hmget(self._key("batch", bid), "spend_usd", "spend_estimate_usd")
        return [(s, e) for s, e in pipe.execute()]

    def read(self, names: Sequence[str]) -> list[dict[str, str]]:
        """Every field of each counter in `names`, in that order."""
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self._key(name))
        return list(pipe.execute())
