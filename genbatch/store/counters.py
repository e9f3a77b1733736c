"""Counters of what happens inside workers, for Prometheus (`genbatch/metrics/` reads them).

Keys (under the store's prefix):
    metrics:{name}           hash: one field per provider account (or `account:kind`),
                             added to with HINCRBY / HINCRBYFLOAT by every worker process
    metrics:batch:{bid}      hash: spend_usd, spend_estimate_usd of a batch's stored videos,
                             rate_limited (429 answers to its items' requests)
    metrics:hist:{name}      hash: a histogram; per label set `labels|<le>` (observations in
                             that bucket only, not cumulative), `labels|sum`, `labels|count`

The process serving `/metrics` keeps no state of its own: every count lives here.
"""

from __future__ import annotations

import bisect
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

    def add_for_batch(self, name: str, field: str, batch_id: str, batch_field: str) -> None:
        """Add 1 to counter `name` for `field` and to `batch_field` of the batch's counters,
        in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hincrby(self._key(name), field, 1)
        if batch_id:
            pipe.hincrby(self._key("batch", batch_id), batch_field, 1)
        pipe.execute()

    def observe(self, name: str, labels: str, value: float, bounds: Sequence[float]) -> None:
        """Count `value` in histogram `name` for the label set `labels` (bucket upper
        bounds `bounds`, ascending; above the last: `+Inf`)."""
        i = bisect.bisect_left(bounds, value)
        le = repr(float(bounds[i])) if i < len(bounds) else "+Inf"
        pipe = self.r.pipeline(transaction=False)
        key = self._key("hist", name)
        pipe.hincrby(key, f"{labels}|{le}", 1)
        pipe.hincrbyfloat(key, f"{labels}|sum", value)
        pipe.hincrby(key, f"{labels}|count", 1)
        pipe.execute()

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

    def read_histograms(self, names: Sequence[str]) -> list[dict[str, str]]:
        """Every field of each histogram in `names`, in that order."""
        return self.read([f"hist:{name}" for name in names])

    def batch_counts(self, batch_id: str) -> dict[str, str]:
        """Every counter of one batch (spend, rate_limited)."""
        return dict(self.r.hgetall(self._key("batch", batch_id)))  # type: ignore[arg-type]
