"""Global request-rate limits per provider account: a sliding-window log with AIMD, in Lua.

One bucket per (account, kind), kind = `submit` or `poll`. The sorted set
`rate:{provider}:{kind}:log` holds the time of every grant of the last window; the hash
`rate:{provider}:{kind}` holds the AIMD state:

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
seconds or give up part of the rate; see the README's Performance section.) The in-flight
cap bounds every burst: the dispatcher never asks for more grants than free slots. Bursts
last only until the provider objects: after a 429 cuts `f`, and until it has grown back to 1,
grants are also spaced evenly by a GCRA of one per window / (rpm * f), with a tolerance of two
scheduler ticks (grants are handed out once per tick, so a fast account must get a tick's
worth at a time).

Every script takes `now` as an argument, so tests are deterministic and all processes share
one notion of time only through what they pass in (the workers' clocks; keep them in NTP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

KINDS = ("submit", "poll")

# Shared helpers. ARGV layout for a bucket: rpm, period, recover_s, tolerance.
_WINDOW = """
local MARGIN = 1.01
local function num(x) return string.format('%.17g', x) end

local function factor(h_f, h_fts, now, recover_s)
  local f = tonumber(h_f) or 1
  local ts = tonumber(h_fts) or now
  if f < 1 and now > ts then f = math.min(1, f + (now - ts) / recover_s) end
  return f
end

-- Take up to n grants from bucket `key` at `now`; returns granted, wait-until-next.
local function take(key, now, n, rpm, period, recover_s, tolerance)
  local log = key .. ':log'
  local window = period * MARGIN
  local h = redis.call('HMGET', key, 'f', 'fts', 'pause', 'nxt')
  local f = factor(h[1], h[2], now, recover_s)
  local limit = math.max(1, math.floor(rpm * f + 1e-9))
  local pause = tonumber(h[3]) or 0
  redis.call('ZREMRANGEBYSCORE', log, '-inf', num(now - window))
  local used = redis.call('ZCARD', log)
  local k, wait = 0, 0
  if now < pause then
    wait = pause - now
  else
    k = math.max(0, math.min(n, limit - used))
    if f < 1 then
      -- After a 429, until the rate has recovered, grants are also spaced evenly: a GCRA
      -- of one per window / (rpm * f) with `tolerance` seconds of slack (the dispatcher
      -- hands grants out once per scheduler tick). A provider that objected to a burst
      -- does not get another.
      local iv = window / (rpm * f)
      local tat = math.max(tonumber(h[4]) or now, now)
      local fit = 0
      if tat - now <= tolerance then fit = math.floor((now + tolerance - tat) / iv) + 1 end
      if k > fit then k = fit end
      tat = tat + k * iv
      redis.call('HSET', key, 'nxt', num(tat), 'iv', num(iv))
      wait = math.max(0, tat - tolerance - now)
    end
    if k > 0 then
      local seq = redis.call('HINCRBY', key, 'seq', k)
      local args = {}
      for i = 1, k do
        args[#args + 1] = num(now)
        args[#args + 1] = tostring(seq - k + i)
      end
      redis.call('ZADD', log, unpack(args))
    end
    if used + k >= limit then  -- full: the next grant waits for the oldest surplus to age out
      local e = redis.call('ZRANGE', log, used + k - limit, used + k - limit, 'WITHSCORES')
      if e[2] then wait = math.max(wait, tonumber(e[2]) + window - now) end
    end
  end
  redis.call('HSET', key, 'f', num(f), 'fts', num(now))
  redis.call('EXPIRE', key, 86400)
  redis.call('PEXPIRE', log, math.ceil(window * 1000) + 1000)
  return k, wait
end
"""

# KEYS: bucket. ARGV: now, n, rpm, period, recover_s, tolerance. Returns {granted, wait}.
TAKE = _WINDOW + """
local k, wait = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                     tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
return {k, num(wait)}
"""

# Give back m unused grants (the newest ones), and their share of the spacing after a
# 429 (`take` never lets `nxt` lag behind `now`). KEYS: bucket. ARGV: m.
REFUND = """
local m = tonumber(ARGV[1])
redis.call('ZPOPMAX', KEYS[1] .. ':log', m)
local h = redis.call('HMGET', KEYS[1], 'nxt', 'iv')
if h[1] and h[2] then
  redis.call('HSET', KEYS[1], 'nxt', string.format('%.17g', tonumber(h[1]) - m * tonumber(h[2])))
end
return 1
"""

# Multiplicative decrease after a 429. KEYS: bucket. ARGV: now, beta, min_f, hold, recover_s,
# pause. At most one cut per `hold` seconds (a burst of 429s answers one overload); the
# bucket also grants nothing for `pause` seconds. Returns the new factor.
DECREASE = _WINDOW + """
local now, beta, min_f = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local hold, recover_s, pause = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'f', 'fts', 'dec', 'pause')
local f = factor(h[1], h[2], now, recover_s)
local last = tonumber(h[3]) or -1e18
if now - last >= hold then
  f = math.max(min_f, f * beta)
  redis.call('HSET', KEYS[1], 'dec', num(now))
end
local until_ = tonumber(h[4]) or now
if until_ < now + pause then until_ = now + pause end
redis.call('HSET', KEYS[1], 'f', num(f), 'fts', num(now), 'pause', num(until_))
redis.call('EXPIRE', KEYS[1], 86400)
return num(f)
"""

# Claim due timers: every non-terminal item whose timer is at or before `now` gets its timer
# pushed to `lease` (so a lost message is re-sent then) and is returned with its state;
# terminal and pending items lose their timer. An item in `submitted` (its next action is
# a poll) is claimed only if its account's poll bucket grants a request; otherwise it stays
# due for a later tick. Accounts without a rate given are not limited.
# KEYS: timers. ARGV: prefix, now, lease, max_n, max_scan, period, recover_s, tolerance,
# then per account: provider, poll rpm. Returns {id1, state1, ...}.
CLAIM_DUE_LIMITED = _WINDOW + """
local timers = KEYS[1]
local prefix, now, lease = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local max_n, max_scan = tonumber(ARGV[4]), tonumber(ARGV[5])
local period, recover_s, tolerance = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local rpm = {}
local i = 9
while ARGV[i] do rpm[ARGV[i]] = tonumber(ARGV[i + 1]); i = i + 2 end
local exhausted = {}
local out, claimed, offset, scanned = {}, 0, 0, 0
local TERMINAL = { pending = true, succeeded = true, failed = true, expired = true,
                   cancelled = true, ambiguous = true }
while claimed < max_n and scanned < max_scan do
  local ids = redis.call('ZRANGEBYSCORE', timers, '-inf', ARGV[2], 'LIMIT', offset, 200)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    scanned = scanned + 1
    local f = redis.call('HMGET', prefix .. 'item:' .. id, 'state', 'provider')
    local state, provider = f[1], f[2]
    if (not state) or TERMINAL[state] then
      redis.call('ZREM', timers, id)
    else
      local ok = true
      if state == 'submitted' and rpm[provider] then
        if exhausted[provider] then
          ok = false
        else
          local k = take(prefix .. 'rate:' .. provider .. ':poll', now, 1, rpm[provider],
                         period, recover_s, tolerance)
          if k == 0 then ok = false; exhausted[provider] = true end
        end
      end
      if ok then
        redis.call('ZADD', timers, lease, id)
        out[#out + 1] = id
        out[#out + 1] = state
        claimed = claimed + 1
        if claimed >= max_n then break end
      else
        offset = offset + 1
      end
    end
  end
  if #ids < 200 then break end
end
for provider in pairs(exhausted) do  -- accounts whose poll budget held a due poll back
  out[#out + 1] = ''
  out[#out + 1] = provider
end
return out
"""


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
                  poll_rates: Mapping[str, Rate], max_scan: int = 5000
                  ) -> list[tuple[str, str]]:
        """Due timers, polls only within each account's poll budget (see the script):
        (item id, state) pairs, then ("", provider) for each account whose poll budget
        held a due poll back."""
        any_rate = next(iter(poll_rates.values()), Rate(0.0, 60.0, 1.0))
        args: list[Any] = [self.prefix, repr(now), repr(lease_until), max_n, max_scan,
                           any_rate.period, any_rate.recover_s, any_rate.tolerance]
        for provider, rate in poll_rates.items():
            args += [provider, rate.rpm]
        flat = self._claim(keys=[f"{self.prefix}timers"], args=args)
        return [(str(flat[i]), str(flat[i + 1])) for i in range(0, len(flat), 2)]


def rates_for(settings: Any, provider: str) -> dict[str, Rate]:
    """The submit and poll buckets of one account from Settings."""
    ps = settings.provider(provider)
    period = 60.0 / settings.time_factor
    recover = settings.aimd_recover_s / settings.time_factor
    tolerance = 2.0 * float(settings.scheduler_tick_s)  # grants go out once per tick
    return {"submit": Rate(ps.submit_rpm, period, recover, tolerance),
            "poll": Rate(ps.poll_rpm, period, recover, tolerance)}


def poll_rates(settings: Any, providers: Sequence[str]) -> dict[str, Rate]:
    return {p: rates_for(settings, p)["poll"] for p in providers}


# Learned generation time per (provider, model): an exponentially weighted mean in the
# hash `gentime`, in unscaled seconds. KEYS: gentime. ARGV: field, seconds, alpha.
OBSERVE = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
local x, a = tonumber(ARGV[2]), tonumber(ARGV[3])
if cur then x = cur + a * (x - cur) end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.17g', x))
return string.format('%.17g', x)
"""


class GenTimes:
    """How long generations of one model at one account have been taking lately, so the
    first poll lands when the generation is likely done rather than at a fixed guess."""

    def __init__(self, client: redis.Redis, prefix: str = "gb:", alpha: float = 0.1) -> None:
        self.r = client
        self.key = f"{prefix}gentime"
        self.alpha = alpha
        self._observe = client.register_script(OBSERVE)

    def observe(self, provider: str, model: str, seconds: float) -> float:
        res = self._observe(keys=[self.key], args=[f"{provider}:{model}", repr(seconds),
                                                   self.alpha])
        return float(res)

    def typical(self, provider: str, model: str) -> float | None:
        value = self.r.hget(self.key, f"{provider}:{model}")
        return float(value) if value else None
