"""Dispatch and its queues: the pending lists, the round-robins, in-flight counts, cooldowns.

Keys: `pending:{provider}:{bid}`, `queues:{provider}`, `ring:{provider}:{prio}`,
`inflight:{account}[@{model}]`, `cooldown:{account}`, `slotrest:{account}`,
`slotfull:{account}`, `rr:{provider}` (see the key list in store/__init__.py). DISPATCH
(`lua/dispatch.lua`) moves pending items to `dispatched`; QUEUE_BATCH (`lua/queues.lua`)
puts a batch on or off the round-robins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from genbatch.models import PRIORITIES
from genbatch.store import scripts
from genbatch.store.limits import Rate


@dataclass(frozen=True, slots=True)
class DispatchAccount:
    """One account as dispatch sees it: its name, in-flight cap, submit rpm, whether it may
    take only one item (a probe of a paused account), and per-model (model, cap, rpm)."""

    name: str
    cap: int
    submit_rpm: float
    probe: bool = False
    models: tuple[tuple[str, int | None, float | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Dispatched:
    """What a dispatch did: (item id, account) pairs, and the accounts whose submit rate
    held an item back."""

    items: list[tuple[str, str]]
    rate_limited: list[str]


class Queues:
    """The dispatcher's side of the store: which batches wait where, and taking from them."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r = client
        self._prefix = prefix
        self._dispatch = client.register_script(scripts.DISPATCH)
        self._queue_batch = client.register_script(scripts.QUEUE_BATCH)

    def _k(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def queue(self, batch_id: str, providers: Sequence[str], *, on: bool = True,
              pipe: redis.client.Pipeline | None = None) -> None:
        """Put a batch on (or take it off) its providers' round-robins (QUEUE_BATCH), on
        `pipe` when given (to go with other writes)."""
        self._queue_batch(keys=[self._k("batch", batch_id)],
                          args=[self._prefix, batch_id, "on" if on else "off", *providers],
                          client=pipe)

    def unqueue(self, batch_id: str, providers: Sequence[str]) -> None:
        """Stop dispatching a batch: take it off every provider's round-robin."""
        self.queue(batch_id, providers, on=False)

    def queued_providers(self, batch_id: str, providers: Sequence[str]) -> list[str]:
        """The providers where the batch has pending items on the round-robin."""
        pipe = self._r.pipeline(transaction=False)
        for p in providers:
            pipe.sismember(self._k("queues", p), batch_id)
        return [p for p, member in zip(providers, pipe.execute(), strict=True) if member]

    def has_queued(self, provider: str) -> bool:
        """Some batch has items waiting for `provider` (O(1))."""
        return bool(self._r.scard(self._k("queues", provider)))

    def rebuild_rings(self, provider: str) -> int:
        """Put every batch of `provider`'s queues set that is on no ring back on its ring
        (a job store written before the rings existed); returns how many were added."""
        members: set[str] = self._r.smembers(self._k("queues", provider))  # type: ignore[assignment]
        if not members:
            return 0
        ringed: set[str] = set()
        for prio in PRIORITIES:
            ringed.update(self._r.lrange(self._k("ring", provider, prio), 0, -1))  # type: ignore[arg-type]
        missing = sorted(members - ringed)
        for bid in missing:
            self._r.srem(self._k("queues", provider), bid)
            self.queue(bid, [provider])
        return len(missing)

    def dispatch(self, provider: str, accounts: Sequence[DispatchAccount], max_n: int,
                 now: float, lease_until: float, rate: Rate) -> Dispatched:
        """Up to `max_n` pending items of `provider` to `dispatched`, spread over
        `accounts` (lua/dispatch.lua); `rate` gives the submit buckets' period, recovery
        and tolerance (each account and model brings its own rpm)."""
        args: list[Any] = [self._prefix, provider, repr(now), repr(lease_until), max_n,
                           rate.period, rate.recover_s, rate.tolerance, len(accounts)]
        for a in accounts:
            args += [a.name, a.cap, a.submit_rpm, "1" if a.probe else "0", len(a.models)]
            for model, cap, rpm in a.models:
                args += [model, "" if cap is None else cap, "" if rpm is None else rpm]
        flat = [str(x) for x in self._dispatch(keys=[self._k("timers")], args=args)]
        pairs = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        return Dispatched(items=[(i, a) for i, a in pairs if i],
                          rate_limited=[a for i, a in pairs if not i])

    def in_flight(self, account: str, model: str | None = None) -> int:
        """Generations in flight at `account` (of `model` there, when given)."""
        key = self._k("inflight", account) + (f"@{model}" if model is not None else "")
        return int(self._r.get(key) or 0)

    def in_flight_counts(self, accounts: Sequence[str]) -> list[int]:
        if not accounts:
            return []
        return [int(v or 0) for v in self._r.mget([self._k("inflight", a) for a in accounts])]

    def set_cooldown(self, account: str, seconds: float) -> None:
        """The account backs off for `seconds` (a 429's or a connect error's cooldown: it
        always runs its course)."""
        self._r.set(self._k("cooldown", account), "1", px=max(1, int(seconds * 1000)))

    def set_slot_rest(self, account: str, seconds: float, full_for_s: float) -> None:
        """The account's concurrency was full (Kling's 1303): it rests `seconds` (a key of
        its own, which `end_slot_rest` may end early), and for `full_for_s` it is `full`:
        it takes one submit at a time, each telling whether a slot came free."""
        pipe = self._r.pipeline(transaction=False)
        pipe.set(self._k("slotrest", account), "1", px=max(1, int(seconds * 1000)))
        pipe.set(self._k("slotfull", account), "1", px=max(1, int(full_for_s * 1000)))
        pipe.execute()

    def slot_full(self, account: str) -> bool:
        """Whether the account's concurrency was found full lately (see set_slot_rest)."""
        return bool(self._r.exists(self._k("slotfull", account)))

    def end_slot_rest(self, account: str) -> None:
        """One of the account's tasks ended, so a slot is free: a rest for a full
        concurrency has nothing left to wait for."""
        self._r.delete(self._k("slotrest", account))

    def cooling(self, accounts: Sequence[str]) -> list[bool]:
        """Which of `accounts` are backing off now (either kind of rest), in one round
        trip."""
        return [cool for cool, _full in self.rests(accounts)]

    def rests(self, accounts: Sequence[str]) -> list[tuple[bool, bool]]:
        """For each of `accounts`: whether it backs off now (either kind of rest), and
        whether its concurrency was found full lately (`slot_full`); one round trip."""
        pipe = self._r.pipeline(transaction=False)
        for account in accounts:
            pipe.exists(self._k("cooldown", account), self._k("slotrest", account))
            pipe.exists(self._k("slotfull", account))
        found = [bool(x) for x in pipe.execute()]
        return list(zip(found[::2], found[1::2], strict=True))
