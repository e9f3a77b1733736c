"""Leader locks: one holder at a time (the scheduler's leaders), renewed by the holder.

Keys (under the store's prefix): `lock:{name}` holding the owner's token, with a TTL.
"""

from __future__ import annotations

import redis
from redis.commands.core import Script


class Locks:
    def __init__(self, client: redis.Redis, prefix: str, renew: Script) -> None:
        self.r = client
        self.prefix = prefix
        self._renew = renew  # RENEW_LOCK: extend the TTL if the token still owns the key

    def acquire(self, name: str, token: str, ttl_s: float) -> bool:
        key = f"{self.prefix}lock:{name}"
        if self._renew(keys=[key], args=[token, int(ttl_s * 1000)]):
            return True
        return bool(self.r.set(key, token, nx=True, px=int(ttl_s * 1000)))

    def release(self, name: str, token: str) -> None:
        key = f"{self.prefix}lock:{name}"
        if self.r.get(key) == token:
            self.r.delete(key)
