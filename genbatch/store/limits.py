"""Global request-rate limits per provider account: a sliding-window log with AIMD, in Lua.

One bucket per (account, kind), kind = `submit` or `poll`. The sorted set
`rate:{account}:{kind}:log` holds the time of every grant of the last window; the hash
`rate:{account}:{kind}` holds the AIMD state:

    f      AIMD factor in (0, 1]: the share of the configured rate currently allowed
    fts    when `f` was last written; `f` grows back linearly from there (additive increase)
    dec    when `f` was last cut (multiplicative decrease at most once per hold time)
    pause  no grant before this time (set after a 429)
    nxt    while `f` < 1: the GCRA's theoretical arrival time (grants are spaced after a 429)
    iv     the spacing `nxt` was last advanced by (so a refund can wind it back)
    seq    a counter that keeps the log's members unique

A grant is given while the last window (one `period`, a minute divided by the time factor,
stretched by 1 % so grants that reach the provider a little out of order still fit) holds
fewer than `floor(rpm * f)` grants: exactly the rule "no more than R requests in any minute"
a provider's RPM limit states, and the one the simulator enforces. Unlike a GCRA, it does not
space grants evenly: a fresh batch fills all its free slots at once and a cluster of tasks
ending together is refilled together, as long as the minute has room. (A GCRA strict enough
never to exceed R in a sliding minute must either spread a fresh batch's first submits over
seconds or give up part of the rate; see docs/performance.md.) The in-flight
cap bounds every burst: the dispatcher never asks for more grants than free slots. Bursts
last only until the provider objects: after a 429 cuts `f`, and until it has grown back to 1,
grants are also spaced evenly by a GCRA of one per window / (rpm * f), with a tolerance of two
scheduler ticks (grants are handed out once per tick, so a fast account must get a tick's
worth at a time).

Every script takes `now` as an argument, so tests are deterministic and all processes share
one notion of time only through what they pass in (the workers' clocks; keep them in NTP).
The scripts are files in store/lua/ (window.lua holds the bucket itself), loaded by
store/scripts.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from genbatch.store.scripts import load

KINDS = ("submit", "poll")

# The scripts, in lua/ (each file's header gives its KEYS, ARGV and return value); TAKE,
# DECREASE and CLAIM_DUE_LIMITED include the bucket helpers of lua/window.lua.
TAKE = load("take")
REFUND = load("refund")
DECREASE = load("decrease")
CLAIM_DUE_LIMITED = load("claim_due_limited")
OBSERVE = load("observe")


@dataclass(frozen=True, slots=True)
class Rate:
    """A bucket's configuration: `rpm` requests per `period` seconds (60 / time factor),
    AIMD recovery over `recover_s` seconds, `tolerance` seconds of slack for the even
    spacing after a 429."""

    rpm: float
    period: float
    recover_s: float
    tolerance: float = 0.0

    def args(self) -> list[Any]:
        return [self.rpm, self.period, self.recover_s, self.tolerance]


class Limits:
    """The rate buckets of every provider account, shared by all processes through Redis."""

    def __init__(self, client: redis.Redis, prefix: str = "gb:") -> None:
        self.r = client
        self.prefix = prefix
        self._take = client.register_script(TAKE)
        self._refund = client.register_script(REFUND)
        self._decrease = client.register_script(DECREASE)
        self._claim = client.register_script(CLAIM_DUE_LIMITED)

    def key(self, provider: str, kind: str) -> str:
        return f"{self.prefix}rate:{provider}:{kind}"

    def take(self, provider: str, kind: str, n: int, rate: Rate, now: float) -> tuple[int, float]:
        """Up to `n` grants now; returns (granted, seconds until the next grant)."""
        res = self._take(keys=[self.key(provider, kind)], args=[repr(now), n, *rate.args()])
        return int(res[0]), float(res[1])

    def refund(self, provider: str, kind: str, m: int) -> None:
        """Give back the `m` newest grants, unused."""
        if m > 0:
            self._refund(keys=[self.key(provider, kind)], args=[m])

    def decrease(self, provider: str, kind: str, now: float, *, beta: float, min_factor: float,
                 hold: float, recover_s: float, pause: float = 0.0) -> float:
        """Multiplicative decrease after a 429; returns the new factor."""
        res = self._decrease(keys=[self.key(provider, kind)],
                             args=[repr(now), beta, min_factor, hold, recover_s, pause])
        return float(res)

    def factor(self, provider: str, kind: str, now: float, recover_s: float) -> float:
        """The current AIMD factor (1.0 = the full configured rate)."""
        f, fts = self.r.hmget(self.key(provider, kind), ["f", "fts"])
        if f is None:
            return 1.0
        value, since = float(f), float(fts or now)
        return min(1.0, value + max(0.0, now - since) / recover_s) if value < 1 else 1.0

    def claim_due(self, now: float, lease_until: float, max_n: int,
                  poll_rates: Mapping[str, Rate], max_scan: int = 5000,
                  download_lease_until: float | None = None) -> list[tuple[str, str]]:
        """Due timers, polls only within each account's poll budget (see the script):
        (item id, state) pairs, downloads last and earliest URL expiry first (leased until
        `download_lease_until`, default `lease_until`), then ("", provider) for each
        account whose poll budget held a due poll back."""
        any_rate = next(iter(poll_rates.values()), Rate(0.0, 60.0, 1.0))
        dl_lease = "" if download_lease_until is None else repr(download_lease_until)
        args: list[Any] = [self.prefix, repr(now), repr(lease_until), max_n, max_scan,
                           any_rate.period, any_rate.recover_s, any_rate.tolerance, dl_lease]
        for provider, rate in poll_rates.items():
            args += [provider, rate.rpm]
        flat = self._claim(keys=[f"{self.prefix}timers"], args=args)
        return [(str(flat[i]), str(flat[i + 1])) for i in range(0, len(flat), 2)]


def rates_for(settings: Any, account: Any) -> dict[str, Rate]:
    """The submit and poll buckets of one account (config.ProviderSettings) from Settings."""
    ps = account
    period = 60.0 / settings.time_factor
    recover = settings.aimd_recover_s / settings.time_factor
    tolerance = 2.0 * float(settings.scheduler_tick_s)  # grants go out once per tick
    return {"submit": Rate(ps.submit_rpm, period, recover, tolerance),
            "poll": Rate(ps.poll_rpm, period, recover, tolerance)}


def poll_rates(settings: Any, accounts: Sequence[Any]) -> dict[str, Rate]:
    """The poll bucket of each account (config.ProviderSettings), by account name."""
    return {a.label: rates_for(settings, a)["poll"] for a in accounts}


class GenTimes:
    """How long generations of one model at one account have been taking lately, so the
    first poll lands when the generation is likely done rather than at a fixed guess."""

    def __init__(self, client: redis.Redis, prefix: str = "gb:", alpha: float = 0.1) -> None:
        self.r = client
        self.key = f"{prefix}gentime"
        self.alpha = alpha
        self._observe = client.register_script(OBSERVE)

    def observe(self, provider: str, model: str, seconds: float) -> float:
        res = self._observe(keys=[self.key, f"{self.key}:n"],
                            args=[f"{provider}:{model}", repr(seconds), self.alpha])
        return float(res)

    def typical(self, provider: str, model: str) -> float | None:
        value = self.r.hget(self.key, f"{provider}:{model}")
        return float(value) if value else None

    def fastest(self, provider: str) -> float | None:
        """The shortest learned time of any of the provider's models (None: none yet)."""
        learned: dict[str, str] = self.r.hgetall(self.key)  # type: ignore[assignment]
        times = [float(v) for k, v in learned.items() if k.startswith(f"{provider}:") and v]
        return min(times, default=None)
