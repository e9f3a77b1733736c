"""Which batch a manifest (or an idempotency key) was already submitted as, so the same
manifest submitted twice — two producers, a retried pipeline step — is not paid twice.

Keys (under the store's prefix):
    submitted:{key}   the batch id the submission `key` became; expires after the window
                      (GENBATCH_DUPLICATE_WINDOW_S)
"""

from __future__ import annotations

import redis


class Submissions:
    def __init__(self, client: redis.Redis, prefix: str = "gb:") -> None:
        self.r = client
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return f"{self.prefix}submitted:{key}"

    def claim(self, key: str, batch_id: str, ttl_s: float) -> str | None:
        """Record that `key` is being submitted as `batch_id`; the batch id it already
        belongs to (and nothing recorded) when it was claimed before."""
        if self.r.set(self._key(key), batch_id, nx=True, px=max(1, int(ttl_s * 1000))):
            return None
        existing = self.r.get(self._key(key))
        return str(existing) if existing else None

    def forget(self, key: str, batch_id: str) -> None:
        """The submission as `batch_id` did not happen (refused, discarded): free `key`."""
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self._key(key))  # type: ignore[no-untyped-call]
                if pipe.get(self._key(key)) != batch_id:
                    pipe.unwatch()
                    return
                pipe.multi()
                pipe.delete(self._key(key))
                pipe.execute()
            except redis.WatchError:
                return
