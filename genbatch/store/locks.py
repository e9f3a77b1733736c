"""Leader locks: one holder at a time (the scheduler's leaders), renewed by the holder.

Keys (under the store's prefix): `lock:{name}` holding the owner's token, with a TTL;
`turn:{name}` while a turn taken is not over.
"""

from __future__ import annotations

import redis

from genbatch.store import scripts


class Locks:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix
        # RENEW_LOCK: extend the TTL if the token still owns the key
        self._renew = client.register_script(scripts.RENEW_LOCK)

    def _key(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    def acquire(self, name: str, token: str, ttl_s: float) -> bool:
        key = self._key(name)
        if self._renew(keys=[key], args=[token, int(ttl_s * 1000)]):
            return True
        return bool(self.r.set(key, token, nx=True, px=int(ttl_s * 1000)))

    def release(self, name: str, token: str) -> None:
        key = self._key(name)
        if self.r.get(key) == token:
            self.r.delete(key)

    def held(self, name: str) -> bool:
        """Whether some process holds `name` now."""
        return bool(self.r.exists(self._key(name)))

    def turn(self, name: str, every_s: float) -> bool:
        """Whether this call takes `name`'s turn: at most one caller of all processes every
        `every_s` seconds (the first after it elapsed)."""
        key = f"{self.prefix}turn:{name}"
        return bool(self.r.set(key, "1", nx=True, px=max(1, int(every_s * 1000))))
