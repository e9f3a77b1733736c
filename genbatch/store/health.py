"""Account health: what each provider account's recent failures say, so a batch that waits
can say why, and an account that cannot work stops taking work.

Keys (under the store's prefix):
    health:{account}   hash:
        state          ok | degraded | paused
        since          when the state was entered
        reason         why (degraded, paused): the failure class and the provider's words
        fix            what a person can do about it (paused)
        last_error, last_error_at, last_class   the most recent failure
        fail:{class}   consecutive failures of that class (connect, auth, balance, 5xx, 429)
        last_ok_at     the most recent success
        probe_at       a paused account lets one request through after this (half-open)

States: `ok`; `degraded` after `degrade_after` failures in a row of one class that may heal by
itself (connect, 5xx; 429s are counted but left to the rate limiter): it keeps working, with
its backoff; `paused` after `pause_after`
failures in a row that will not heal by themselves (auth, balance): it takes no new work
(dispatch skips it) until `resume` (`genbatch accounts resume`), or until a probe — one item
let through every probe interval — succeeds. A success clears every count and
makes the account `ok` again (a successful probe lifts a pause).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

STATES: tuple[str, ...] = ("ok", "degraded", "paused")
CLASSES: tuple[str, ...] = ("connect", "auth", "balance", "5xx", "429")
PAUSING: frozenset[str] = frozenset({"auth", "balance"})
# A 429 streak is the limiter's business (AIMD), not a sign of a sick account.
DEGRADING: frozenset[str] = frozenset({"connect", "5xx"})
FIXES: dict[str, str] = {
    "auth": "check {key} on the workers, then run `genbatch accounts resume {account}`",
    "balance": "top up the account, then run `genbatch accounts resume {account}`",
    "connect": "check that {base} is right and reachable from the workers",
}


@dataclass(frozen=True, slots=True)
class AccountHealth:
    """One account's health as stored."""

    account: str
    state: str = "ok"
    since: float | None = None
    reason: str = ""
    fix: str = ""
    last_error: str = ""
    last_error_at: float | None = None
    last_ok_at: float | None = None
    probe_at: float | None = None
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def streak(self) -> int:
        """The longest run of consecutive failures of one class."""
        return max(self.failures.values(), default=0)


def _float(value: str | None) -> float | None:
    return float(value) if value else None


class Health:
    """Read and record account health."""

    def __init__(self, client: redis.Redis, prefix: str = "gb:") -> None:
        self.r = client
        self.prefix = prefix

    def _key(self, account: str) -> str:
        return f"{self.prefix}health:{account}"

    def get(self, account: str) -> AccountHealth:
        return self.get_many([account])[0]

    def get_many(self, accounts: Sequence[str]) -> list[AccountHealth]:
        pipe = self.r.pipeline(transaction=False)
        for account in accounts:
            pipe.hgetall(self._key(account))
        return [_parse(account, rec) for account, rec in zip(accounts, pipe.execute(),
                                                              strict=True)]

    def record_failure(self, account: str, cls: str, error: str, now: float, *,
                       degrade_after: int, pause_after: int, probe_s: float,
                       key_hint: str = "its API key",
                       base_hint: str = "its base URL") -> AccountHealth:
        """Count one failure of class `cls`; other classes' streaks end. Returns the health
        after it (a move to degraded or paused happens here). `key_hint` says where the
        account's key is set, for the fix a pause names."""
        key = self._key(account)
        pipe = self.r.pipeline(transaction=True)
        pipe.hincrby(key, f"fail:{cls}", 1)
        pipe.hdel(key, *(f"fail:{c}" for c in CLASSES if c != cls))
        pipe.hset(key, mapping={"last_error": error[:500], "last_error_at": repr(now),
                                "last_class": cls})
        streak = int(pipe.execute()[0])
        current = self.get(account)
        reason = f"{cls}: {error[:300]}"
        if cls in PAUSING and streak >= pause_after:
            fix = FIXES[cls].format(key=key_hint, account=account)
            self._enter(account, "paused", now, reason, fix, probe_at=now + probe_s)
        elif current.state == "ok" and cls in DEGRADING and streak >= degrade_after:
            # probe_at: while another account of the provider is ok, a degraded one takes
            # only a probe per interval (worker/dispatch.py)
            fix = FIXES.get(cls, "").format(base=base_hint, key=key_hint, account=account)
            self._enter(account, "degraded", now, reason, fix, probe_at=now + probe_s)
        elif current.state == "degraded" or current.state == "paused":
            self.r.hset(key, "probe_at", repr(now + probe_s))
        return self.get(account)

    def record_success(self, account: str, now: float) -> None:
        """The account answered as it should: counts cleared, state ok."""
        key = self._key(account)
        state = self.r.hget(key, "state")
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(key, *(f"fail:{c}" for c in CLASSES))
        pipe.hset(key, "last_ok_at", repr(now))
        pipe.execute()
        if state and state != "ok":
            self._enter(account, "ok", now, "", "")

    def resume(self, account: str, now: float) -> None:
        """A person says the cause is fixed: the account takes work again."""
        self.r.hdel(self._key(account), *(f"fail:{c}" for c in CLASSES))
        self._enter(account, "ok", now, "", "")

    def claim_probe(self, account: str, now: float, probe_s: float) -> bool:
        """A paused account whose probe time has come lets one request through; True for
        the caller that gets to send it (the next probe is an interval later)."""
        key = self._key(account)
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                due = _float(str(pipe.hget(key, "probe_at") or ""))
                if due is None or due > now:
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.hset(key, "probe_at", repr(now + probe_s))
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    def _enter(self, account: str, state: str, now: float, reason: str, fix: str,
               probe_at: float | None = None) -> None:
        mapping: dict[Any, Any] = {"state": state, "since": repr(now), "reason": reason, "fix": fix,
                   "probe_at": "" if probe_at is None else repr(probe_at)}
        self.r.hset(self._key(account), mapping=mapping)


def _parse(account: str, rec: dict[str, str]) -> AccountHealth:
    return AccountHealth(
        account=account, state=rec.get("state") or "ok", since=_float(rec.get("since")),
        reason=rec.get("reason", ""), fix=rec.get("fix", ""),
        last_error=rec.get("last_error", ""), last_error_at=_float(rec.get("last_error_at")),
        last_ok_at=_float(rec.get("last_ok_at")), probe_at=_float(rec.get("probe_at")),
        failures={c: int(rec[f"fail:{c}"]) for c in CLASSES if rec.get(f"fail:{c}")},
    )
