"""The job store: batch and item records in Redis, the single source of truth.

Keys (prefix `gb:` by default):
    batch:{bid}              hash: status, metadata and counters (total, pending, in_flight,
                             downloading, succeeded, failed, expired, cancelled, ambiguous);
                             money in micro-USD (reserved_micro, spent_micro,
                             spent_est_micro), budget_usd, budget_exhausted
    batches                  zset of batch ids by creation time
    active                   set of batch ids not yet completed
    validating               set of batch ids still being ingested (`touched` on the batch
                             is the producer's heartbeat; stale ones are reaped)
    item:{bid}:{seq}         hash: state, batch, seq, line, custom_id, provider, model, req
                             (normalised request JSON), row (original row JSON), results...
    pending:{provider}:{bid} list of item ids waiting for a dispatch slot (at any of the
                             provider's accounts; `account` on the item once dispatched)
    ids:{bid}                hash custom_id -> first line, only while a batch is being
                             ingested (duplicate check; deleted at commit/discard)
    queues:{provider}        set of batch ids with a pending list for that provider
    ring:{provider}:{prio}   the same ids, one list per priority: the dispatch round-robin
                             (lua/queues.lua keeps set and rings equal)
    inflight:{account}       generations in flight at that account (moved only by Lua), and
    inflight:{account}@{model}   ... of one model there (for per-model limits)
    timers                   zset item id -> when the scheduler must next act on it
    cooldown:{account}       present while an account is backing off after a 429
    rr:{provider}            where ties between a provider's accounts start (dispatch.lua)
    lock:{name}              leader locks (store/locks.py)
    rate:{account}:{kind}    request-rate limiter state and its `:log` (store/limits.py);
                             `rate:{account}:submit@{model}` for a per-model submit rate
    gentime                  learned generation times (store/limits.py)
    metrics:{name}, metrics:batch:{bid}, metrics:hist:{name}   counters and histograms for
                             Prometheus (store/counters.py)
    series:{bid}             a bounded time series of the batch's counters (store/series.py)
    notify                   zset of batch-finished events due for delivery (store/outbox.py)
    health:{account}         account health: state, failure streaks (store/health.py)
    hb:worker:{name}, hb:scheduler   heartbeats with a TTL (store/heartbeats.py)
    owners:{account}:{day}, reconcile    remote task owners; ambiguous items due for
                             reconciling (store/reconcile.py)
    submitted:{key}          the batch a manifest was submitted as (store/submissions.py)
    upload:*, seen:*         hosted copies of uploaded inputs, webhook ids seen (store/memo.py)

Outside the prefix, only read: Celery's queue lists and kombu's `unacked` hash
(store/monitor.py, for metrics). Nothing outside `genbatch/store/` touches Redis keys: other
parts call the named methods here (tests/test_layers.py checks it).

The modules: this one (JobStore: batches, items, transitions, dispatch, timers), writer (the
ingest path), history (attempts), budget, limits (rate limits, generation times), health,
heartbeats, counters, outbox, pages, series, memo, locks, monitor, scripts (the one loader of
`lua/*.lua`).

A Celery message only ever carries an item or batch id; losing or duplicating one is
harmless because every task re-reads the item's state and transitions by compare-and-set.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

from genbatch.errors import ConfigError, NotFoundError
from genbatch.models import (
    BATCH_COUNTERS,
    FINISHED_STATUSES,
    OPEN_COUNTERS,
    PRIORITIES,
    STATE_COUNTER,
    BatchStatus,
)
from genbatch.records import Batch, Item
from genbatch.store import scripts
from genbatch.store.counters import Counters
from genbatch.store.health import Health
from genbatch.store.heartbeats import Heartbeats
from genbatch.store.limits import GenTimes, Limits, Rate
from genbatch.store.locks import Locks
from genbatch.store.memo import Memo
from genbatch.store.monitor import Monitor
from genbatch.store.outbox import Outbox
from genbatch.store.pages import Pages
from genbatch.store.reconcile import ReconcileBook
from genbatch.store.series import Series
from genbatch.store.submissions import Submissions
from genbatch.store.writer import (
    Duplicate,
    ItemWriter,
    batch_gone,
    duplicates,
    pack_items,
)

# A batch's counters and the open ones (defined with the item states, genbatch/models.py).
COUNTERS: tuple[str, ...] = BATCH_COUNTERS
VALIDATING = BatchStatus.VALIDATING.value
CONNECT_TIMEOUT_S = 5.0  # a Redis that does not accept a connection in this is down
PING_TIMEOUT_S = 3.0  # the entry points' first check (`ping`)
TimerArg = float | str | None  # None keep, "-" remove, float = due time


def open_count(batch: Mapping[str, str]) -> int:
    """Items of a batch record not yet in a terminal state."""
    return sum(int(batch.get(c) or 0) for c in OPEN_COUNTERS)


@dataclass(frozen=True, slots=True)
class Durability:
    """How this Redis keeps what it is told (see JobStore.durability)."""

    aof: bool
    fsync: str | None
    waitaof: bool
    version: str


@dataclass(frozen=True, slots=True)
class Transition:
    """Outcome of a compare-and-set: did it apply, what the state was, items left open."""

    applied: bool
    previous: str
    open_items: int  # open items left in the batch after the move; -1 when not applied
    provider: str = ""  # the item's account before the move (when applied)


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


def _m(mapping: Mapping[str, Any]) -> Any:
    """redis-py's Mapping types are invariant in the key; our keys are always str."""
    return mapping


def item_id(batch_id: str, seq: int) -> str:
    return f"{batch_id}:{seq}"


class JobStore:
    """Typed access to the Redis job store. Thread-safe (redis-py pools connections)."""

    def __init__(self, client: redis.Redis, prefix: str = "gb:") -> None:
        self.r = client
        self.prefix = prefix
        self._transition = client.register_script(scripts.TRANSITION)
        self._dispatch = client.register_script(scripts.DISPATCH)
        self._batch_cas = client.register_script(scripts.BATCH_STATUS)
        self._renew = client.register_script(scripts.RENEW_LOCK)
        self._add_items = client.register_script(scripts.ADD_ITEMS)
        self._raise_budget = client.register_script(scripts.RAISE_BUDGET)
        self._resume_if_room = client.register_script(scripts.RESUME_IF_ROOM)
        self._queue_batch = client.register_script(scripts.QUEUE_BATCH)

    @classmethod
    def from_url(cls, url: str, prefix: str = "gb:") -> JobStore:
        client = redis.Redis.from_url(
            url, decode_responses=True, health_check_interval=30, socket_keepalive=True,
            retry_on_timeout=True, socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
        return cls(client, prefix)

    # -- keys ------------------------------------------------------------------------
    def k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def durability(self) -> Durability:
        """Whether this Redis keeps an append-only file, how it fsyncs, and whether it has
        WAITAOF (7.2+). `fsync` is None when CONFIG is not allowed."""
        persistence, server = self.r.info("persistence"), self.r.info("server")
        version = str(server.get("redis_version", "0"))
        try:
            fsync = self.r.config_get("appendfsync").get("appendfsync")
        except redis.ResponseError:
            fsync = None
        major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        return Durability(aof=bool(int(persistence.get("aof_enabled", 0))), fsync=fsync,
                          waitaof=major_minor >= (7, 2), version=version)

    def wait_durable(self, timeout_ms: int = 1000) -> bool:
        """After a write that must survive (a submit's record): with WAITAOF (Redis 7.2+),
        wait until the local append-only file has it; True when it does (or when the
        server cannot say: see worker/durable.py for how that case is covered)."""
        if not self._waitaof:
            return True
        local, _ = self.r.execute_command("WAITAOF", 1, 0, timeout_ms)  # type: ignore[no-untyped-call]
        return int(local) >= 1

    @functools.cached_property
    def _waitaof(self) -> bool:
        return self.durability().waitaof

    def server_time(self) -> float:
        """Redis's clock (`TIME`), in Unix seconds."""
        seconds, micros = self.r.time()
        return seconds + micros / 1_000_000

    def ping(self) -> None:
        """Fail now rather than at first use: redis.ConnectionError when nothing answers,
        ConfigError when what answers is not Redis (or not in PING_TIMEOUT_S)."""
        pool = self.r.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": PING_TIMEOUT_S,
                  "socket_connect_timeout": PING_TIMEOUT_S, "retry_on_timeout": False}
        probe = redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **kwargs))
        try:
            probe.ping()
        except (redis.TimeoutError, redis.ResponseError, redis.exceptions.InvalidResponse) as exc:
            where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
            raise ConfigError(f"GENBATCH_REDIS_URL points at {where}, which does not answer "
                              f"like Redis ({type(exc).__name__}: {exc})") from None
        finally:
            probe.close()

    # -- parts with keys of their own ----------------------------------------------------
    @functools.cached_property
    def limits(self) -> Limits:
        """Request-rate limits and the timers claim (`store/limits.py`)."""
        return Limits(self.r, self.prefix)

    @functools.cached_property
    def gen_times(self) -> GenTimes:
        """Learned generation times per account and model (`store/limits.py`)."""
        return GenTimes(self.r, self.prefix)

    @functools.cached_property
    def counters(self) -> Counters:
        """Counters for Prometheus (`store/counters.py`)."""
        return Counters(self.r, self.prefix)

    @functools.cached_property
    def memo(self) -> Memo:
        """Uploaded inputs' URLs and webhook ids seen, each expiring (`store/memo.py`)."""
        return Memo(self.r, self.prefix)

    @functools.cached_property
    def outbox(self) -> Outbox:
        """Batch-finished events waiting for delivery (`store/outbox.py`)."""
        return Outbox(self.r, self.prefix)

    @functools.cached_property
    def monitor(self) -> Monitor:
        """Reads for the metrics scrape: timers, open items, Celery's queues."""
        return Monitor(self.r, self.prefix)

    @functools.cached_property
    def locks(self) -> Locks:
        """Leader locks (`store/locks.py`)."""
        return Locks(self.r, self.prefix, self._renew)

    def acquire_lock(self, name: str, token: str, ttl_s: float) -> bool:
        return self.locks.acquire(name, token, ttl_s)

    def release_lock(self, name: str, token: str) -> None:
        self.locks.release(name, token)

    @functools.cached_property
    def health(self) -> Health:
        """Provider account health (`store/health.py`)."""
        return Health(self.r, self.prefix)

    @functools.cached_property
    def heartbeats(self) -> Heartbeats:
        """Heartbeats of workers and the scheduler (`store/heartbeats.py`)."""
        return Heartbeats(self.r, self.prefix)

    @functools.cached_property
    def reconcile(self) -> ReconcileBook:
        """Owners of remote tasks, ambiguous items due for reconciling
        (`store/reconcile.py`)."""
        return ReconcileBook(self.r, self.prefix)

    @functools.cached_property
    def submissions(self) -> Submissions:
        """Manifests already submitted, by identity (`store/submissions.py`)."""
        return Submissions(self.r, self.prefix)

    @functools.cached_property
    def series(self) -> Series:
        """A small time series per batch, for its chart (`store/series.py`)."""
        return Series(self.r, self.prefix)

    @functools.cached_property
    def pages(self) -> Pages:
        """Filtered pages of a batch's items (`store/pages.py`)."""
        return Pages(self.r, self.prefix)

    # -- batches ---------------------------------------------------------------------
    def create_batch(self, batch_id: str, meta: Mapping[str, str], created_at: float) -> None:
        record = {"id": batch_id, "status": VALIDATING, "created_at": repr(created_at)}
        record.update(meta)
        record.update({c: "0" for c in COUNTERS})
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k("batch", batch_id), mapping=_m(record))
        pipe.zadd(self.k("batches"), {batch_id: created_at})
        pipe.sadd(self.k("validating"), batch_id)
        pipe.execute()

    def add_items(
        self, batch_id: str, items: Sequence[Mapping[str, str]], *,
        unique: Sequence[tuple[str, int] | None] | None = None,
        check_only: Sequence[tuple[str, int]] = (),
    ) -> list[Duplicate]:
        """Write a chunk of item records (each with `seq`, `state` and `provider`, all
        values strings) in one round trip.

        Pending items go on the batch's per-account list; while the batch is still
        `validating` nothing dispatches from them (commit_batch makes them visible), for
        a running batch (resume) they are dispatchable at once. The chunk travels as two
        string arguments of one Lua call (`lua/add_items.lua`, `store/writer.py`):
        per-item commands and replies were most of ingest's time, and cjson-decoding the
        records most of Redis's. `pack_items` + `write_packed` are the two halves, for a
        caller that packs on one thread and waits for Redis on another.

        With `unique` (per item: its (custom_id, line) to check, or None), custom_ids are
        checked for uniqueness across the whole batch in Redis, in order, then the
        `check_only` ones (rows validated but not written). A repeated custom_id's item is
        written as a failed `invalid_row` item; every repeat is returned.
        """
        return self.write_packed(self.pack_items(batch_id, items, unique=unique,
                                                 check_only=check_only))

    def pack_items(
        self, batch_id: str, items: Sequence[Mapping[str, str]], *,
        unique: Sequence[tuple[str, int] | None] | None = None,
        check_only: Sequence[tuple[str, int]] = (),
    ) -> list[str]:
        """The arguments of add_items' Lua call (pure CPU work, no I/O)."""
        ids = self.k("ids", batch_id) if unique is not None else ""
        return pack_items(self.prefix, batch_id, ids, items, unique=unique,
                          check_only=check_only)

    def write_packed(self, args: list[str]) -> list[Duplicate]:
        """Run add_items' Lua call on arguments from pack_items."""
        if not args[4]:
            return []  # nothing to write or check
        try:
            return duplicates(self._add_items(keys=[self.k("batch", args[1])], args=args))
        except redis.ResponseError as exc:
            raise batch_gone(exc, args[1]) from exc

    def item_writer(self) -> ItemWriter:
        """A connection of its own for writing chunks without waiting for each reply."""
        return ItemWriter(self.r, self._add_items, self.k("batch", ""))

    def set_item_fields(self, items: Mapping[str, Mapping[str, str]]) -> None:
        """Set fields of several items (item id -> fields) in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for iid, fields in items.items():
            pipe.hset(self.k("item", iid), mapping=_m(fields))
        pipe.execute()

    def commit_batch(self, batch_id: str, providers: Sequence[str]) -> None:
        """Make a validated batch visible to the dispatcher."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k("batch", batch_id), "status", BatchStatus.IN_PROGRESS.value)
        pipe.delete(self.k("ids", batch_id))
        pipe.srem(self.k("validating"), batch_id)
        pipe.sadd(self.k("active"), batch_id)
        self._queue_batch(keys=[self.k("batch", batch_id)],
                          args=[self.prefix, batch_id, "on", *providers], client=pipe)
        pipe.execute()

    def discard_batch(self, batch_id: str, n_items: int, providers: Sequence[str]) -> None:
        """Delete a batch that never left `validating` (validation failed or was aborted)."""
        pipe = self.r.pipeline(transaction=False)
        for seq in range(1, n_items + 1):
            pipe.delete(self.k("item", item_id(batch_id, seq)))
            if seq % 1000 == 0:
                pipe.execute()
        for p in providers:
            pipe.delete(self.k("pending", p, batch_id))
        pipe.delete(self.k("batch", batch_id), self.k("ids", batch_id))
        pipe.zrem(self.k("batches"), batch_id)
        pipe.srem(self.k("validating"), batch_id)
        pipe.execute()

    def reap_validating(self, now: float, timeout_s: float,
                        providers: Sequence[str]) -> list[str]:
        """Discard batches still `validating` whose producer has written nothing for
        `timeout_s` (it died mid-ingest: the batch would never run). Returns their ids."""
        reaped: list[str] = []
        members: set[str] = self.r.smembers(self.k("validating"))  # type: ignore[assignment]
        for batch_id in sorted(members):
            status, created, touched, total = self.r.hmget(
                self.k("batch", batch_id), ["status", "created_at", "touched", "total"])
            if status is None:  # gone already
                self.r.srem(self.k("validating"), batch_id)
                continue
            last = max(float(created or 0), float(touched or 0))
            if status == VALIDATING and now - last > timeout_s:
                self.discard_batch(batch_id, int(total or 0), providers)
                reaped.append(batch_id)
            elif status != VALIDATING:
                self.r.srem(self.k("validating"), batch_id)
        return reaped

    def get_batch(self, batch_id: str) -> Batch:
        rec: dict[str, str] = self.r.hgetall(self.k("batch", batch_id))  # type: ignore[assignment]
        if not rec:
            raise NotFoundError(f"no batch {batch_id!r} in the job store")
        return Batch(rec)

    def get_batches(self, batch_ids: Sequence[str], chunk: int = 500) -> Iterator[Batch]:
        """The batches that still exist of `batch_ids`, `chunk` per round trip."""
        for start in range(0, len(batch_ids), chunk):
            pipe = self.r.pipeline(transaction=False)
            for bid in batch_ids[start:start + chunk]:
                pipe.hgetall(self.k("batch", bid))
            yield from (Batch(rec) for rec in pipe.execute() if rec)

    def batch_exists(self, batch_id: str) -> bool:
        return bool(self.r.exists(self.k("batch", batch_id)))

    def list_batches(self, limit: int = 20) -> list[Batch]:
        ids: list[str] = self.r.zrevrange(self.k("batches"), 0, limit - 1)  # type: ignore[assignment]
        pipe = self.r.pipeline(transaction=False)
        for bid in ids:
            pipe.hgetall(self.k("batch", bid))
        return [Batch(rec) for rec in pipe.execute() if rec]

    def active_batches(self) -> list[str]:
        return sorted(self.r.smembers(self.k("active")))  # type: ignore[arg-type]

    def batch_cas(
        self, batch_id: str, allowed: Sequence[str], new: str,
        fields: Mapping[str, str] | None = None,
    ) -> tuple[bool, str]:
        args: list[Any] = [",".join(allowed), new, len(fields or {})]
        for f, v in (fields or {}).items():
            args += [f, v]
        res = self._batch_cas(keys=[self.k("batch", batch_id)], args=args)
        if int(res[0]) == -1:
            raise NotFoundError(f"no batch {batch_id!r} in the job store")
        return int(res[0]) == 1, str(res[1])

    def set_batch_fields(self, batch_id: str, fields: Mapping[str, str]) -> None:
        self.r.hset(self.k("batch", batch_id), mapping=_m(fields))

    def deactivate(self, batch_id: str) -> None:
        self.r.srem(self.k("active"), batch_id)

    # -- items -----------------------------------------------------------------------
    def get_item(self, iid: str) -> Item:
        rec: dict[str, str] = self.r.hgetall(self.k("item", iid))  # type: ignore[assignment]
        if not rec:
            raise NotFoundError(f"no item {iid!r} in the job store")
        return Item(rec)

    def iter_items(self, batch_id: str, total: int, chunk: int = 500) -> Iterator[Item]:
        """Every item of a batch in manifest order, fetched `chunk` at a time."""
        for start in range(1, total + 1, chunk):
            pipe = self.r.pipeline(transaction=False)
            for seq in range(start, min(start + chunk, total + 1)):
                pipe.hgetall(self.k("item", item_id(batch_id, seq)))
            for rec in pipe.execute():
                if rec:
                    yield Item(rec)

    def transition(
        self,
        iid: str,
        allowed: Sequence[str] | str,
        new: str,
        *,
        timer: TimerArg = None,
        fields: Mapping[str, Any] | None = None,
        incr: Mapping[str, int] | None = None,
        queue: Literal["front", "back"] | None = None,
    ) -> Transition:
        """Compare-and-set the item's state, moving batch counters in the same step.

        `allowed` lists the states the item may be in ("*" = any non-terminal); `timer`
        is None (keep), "-" (remove) or the next due time. With `queue` and `new` =
        "pending", the item also goes onto the front or back of its account's pending
        list (its `provider` after `fields` apply) in the same atomic step. `incr` adds to
        the item's fields, or to its batch's for a name `batch:<field>`. Returns whether it
        applied.
        """
        allowed_arg = allowed if isinstance(allowed, str) else ",".join(allowed)
        timer_arg = "" if timer is None else (timer if isinstance(timer, str) else repr(timer))
        args: list[Any] = [iid, self.prefix, allowed_arg, new, timer_arg, len(fields or {})]
        for f, v in (fields or {}).items():
            args += [f, "" if v is None else str(v)]
        args.append(len(incr or {}))
        for f, d in (incr or {}).items():
            args += [f, d]
        args.append(queue or "")
        res = self._transition(keys=[self.k("item", iid), self.k("timers")], args=args)
        status, previous, open_items = int(res[0]), str(res[1]), int(res[2])
        if status == -1:
            raise NotFoundError(f"no item {iid!r} in the job store")
        return Transition(status == 1, previous, open_items,
                          str(res[3]) if len(res) > 3 else "")

    def set_timer(self, iid: str, due: float) -> None:
        self.r.zadd(self.k("timers"), {iid: due})

    def unqueue_batch(self, batch_id: str, providers: Sequence[str]) -> None:
        """Stop dispatching a batch: take it off every provider's round-robin."""
        self._queue_batch(keys=[self.k("batch", batch_id)],
                          args=[self.prefix, batch_id, "off", *providers])

    def reopen_batch(self, batch_id: str) -> bool:
        """Make a finished or cancelled batch run again (for retry)."""
        ok, _ = self.batch_cas(batch_id, [*FINISHED_STATUSES, BatchStatus.FINALIZING,
                                          BatchStatus.IN_PROGRESS], BatchStatus.IN_PROGRESS)
        if ok:
            pipe = self.r.pipeline(transaction=True)
            pipe.hdel(self.k("batch", batch_id), "cancel_requested", "finished_at")
            pipe.sadd(self.k("active"), batch_id)
            pipe.execute()
        return ok

    def set_budget(self, batch_id: str, budget_usd: float,
                   providers: Sequence[str]) -> tuple[bool, int, int]:
        """Set the batch's budget and let it dispatch again (RAISE_BUDGET); refused when
        below spent + reserved. Returns (applied, spent, reserved), money in micro-USD."""
        res = self._raise_budget(keys=[self.k("batch", batch_id)],
                                 args=[self.prefix, batch_id, repr(budget_usd), *providers])
        if int(res[0]) == -1:
            raise NotFoundError(f"no batch {batch_id!r} in the job store")
        return int(res[0]) == 1, int(res[1]), int(res[2])

    def resume_if_room(self, batch_id: str, providers: Sequence[str]) -> bool:
        """Continue a batch stopped by its budget if released reservations left room for
        its next item (RESUME_IF_ROOM); returns whether it did."""
        res = self._resume_if_room(keys=[self.k("batch", batch_id)],
                                   args=[self.prefix, batch_id, *providers])
        return int(res) > 0

    # -- scheduling ------------------------------------------------------------------
    def queued_providers(self, batch_id: str, providers: Sequence[str]) -> list[str]:
        """The providers where the batch has pending items on the round-robin."""
        pipe = self.r.pipeline(transaction=False)
        for p in providers:
            pipe.sismember(self.k("queues", p), batch_id)
        return [p for p, member in zip(providers, pipe.execute(), strict=True) if member]

    def has_queued(self, provider: str) -> bool:
        """Some batch has items waiting for `provider` (O(1))."""
        return bool(self.r.scard(self.k("queues", provider)))

    def rebuild_rings(self, provider: str) -> int:
        """Put every batch of `provider`'s queues set that is on no ring back on its ring
        (a job store written before the rings existed); returns how many were added."""
        members: set[str] = self.r.smembers(self.k("queues", provider))  # type: ignore[assignment]
        if not members:
            return 0
        ringed: set[str] = set()
        for prio in PRIORITIES:
            ringed.update(self.r.lrange(self.k("ring", provider, prio), 0, -1))  # type: ignore[arg-type]
        missing = sorted(members - ringed)
        for bid in missing:
            self.r.srem(self.k("queues", provider), bid)
            self._queue_batch(keys=[self.k("batch", bid)], args=[self.prefix, bid, "on", provider])
        return len(missing)

    def dispatch(self, provider: str, accounts: Sequence[DispatchAccount], max_n: int,
                 now: float, lease_until: float, rate: Rate) -> Dispatched:
        """Up to `max_n` pending items of `provider` to `dispatched`, spread over
        `accounts` (lua/dispatch.lua); `rate` gives the submit buckets' period, recovery
        and tolerance (each account and model brings its own rpm)."""
        args: list[Any] = [self.prefix, provider, repr(now), repr(lease_until), max_n,
                           rate.period, rate.recover_s, rate.tolerance, len(accounts)]
        for a in accounts:
            args += [a.name, a.cap, a.submit_rpm, "1" if a.probe else "0", len(a.models)]
            for model, cap, rpm in a.models:
                args += [model, "" if cap is None else cap, "" if rpm is None else rpm]
        flat = [str(x) for x in self._dispatch(keys=[self.k("timers")], args=args)]
        pairs = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        return Dispatched(items=[(i, a) for i, a in pairs if i],
                          rate_limited=[a for i, a in pairs if not i])

    def in_flight(self, account: str, model: str | None = None) -> int:
        """Generations in flight at `account` (of `model` there, when given)."""
        key = self.k("inflight", account) + (f"@{model}" if model is not None else "")
        return int(self.r.get(key) or 0)

    def claim_due(self, now: float, lease_until: float, max_n: int) -> list[tuple[str, str]]:
        """Due timers with no poll budget applied (the scheduler uses Limits.claim_due)."""
        return [(i, st) for i, st in self.limits.claim_due(
            now, lease_until, max_n, {}) if i]

    def set_cooldown(self, account: str, seconds: float) -> None:
        self.r.set(self.k("cooldown", account), "1", px=max(1, int(seconds * 1000)))

    def cooling(self, accounts: Sequence[str]) -> list[bool]:
        """Which of `accounts` are backing off now, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for account in accounts:
            pipe.exists(self.k("cooldown", account))
        return [bool(x) for x in pipe.execute()]

    def batch_fields(self, batch_ids: Sequence[str],
                     fields: Sequence[str]) -> list[list[str | None]]:
        """`fields` of each batch (None where unset), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for bid in batch_ids:
            pipe.hmget(self.k("batch", bid), list(fields))
        return list(pipe.execute())

    def in_flight_counts(self, accounts: Sequence[str]) -> list[int]:
        if not accounts:
            return []
        return [int(v or 0) for v in self.r.mget([self.k("inflight", a) for a in accounts])]

    # -- checks ----------------------------------------------------------------------
    def recount(self, batch_id: str) -> dict[str, int]:
        """Counters recomputed from the item records (for tests and `status --check`)."""
        batch = self.get_batch(batch_id)
        counts = dict.fromkeys(COUNTERS, 0)
        state_counter = {s.value: c for s, c in STATE_COUNTER.items()}
        for rec in self.iter_items(batch_id, int(batch["total"])):
            counts["total"] += 1
            state = rec["state"]
            counts[state_counter.get(state, state)] += 1
        return counts
