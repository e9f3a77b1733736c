"""Small facts every process must share for a while, each with its own expiry.

Keys (under the store's prefix):
    upload:{account}:{sha256}   the URL a provider hosts an uploaded input image at
                                (WaveSpeed keeps uploads 7 days; kept here for less)
    seen:{kind}:{id}            an id already acted on (a webhook delivery id), so a
                                replayed delivery is refused
"""

from __future__ import annotations

import redis


class Memo:
    """Remembered facts in Redis, shared by every worker and receiver process."""

    def __init__(self, client: redis.Redis, prefix: str = "gb:") -> None:
        self.r = client
        self.prefix = prefix

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def upload_url(self, account: str, digest: str) -> str | None:
        """The hosted URL of content `digest` at `account`, if uploaded recently."""
        value = self.r.get(self._key("upload", account, digest))
        return value.decode() if isinstance(value, bytes) else value

    def remember_upload(self, account: str, digest: str, url: str, ttl_s: float) -> None:
        self.r.set(self._key("upload", account, digest), url, px=max(1, int(ttl_s * 1000)))

    def first_sight(self, kind: str, ident: str, ttl_s: float) -> bool:
        """True the first time `ident` is seen within `ttl_s` (atomic across processes)."""
        return bool(self.r.set(self._key("seen", kind, ident), "1", nx=True,
                               px=max(1, int(ttl_s * 1000))))

    def forget(self, kind: str, ident: str) -> None:
        """Undo `first_sight` (the delivery was not applied and may come again)."""
        self.r.delete(self._key("seen", kind, ident))
