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
    pending:{provider}:{bid} list of item ids waiting for a dispatch slot
    ids:{bid}                hash custom_id -> first line, only while a batch is being
                             ingested (duplicate check; deleted at commit/discard)
    queues:{provider}        set of batch ids with a pending list for that account
    inflight:{provider}      generations in flight at that account (moved only by Lua)
    timers                   zset item id -> when the scheduler must next act on it
    cooldown:{provider}      present while an account is backing off after a 429
    rr:{provider}:{priority} round-robin position over an account's batches of one priority
    lock:{name}              leader locks
    rate:{provider}:{kind}   request-rate limiter state and its `:log` (store/limits.py)
    gentime                  learned generation times (store/limits.py)
    metrics:{name}, metrics:batch:{bid}   counters for Prometheus (store/counters.py)
    notify                   zset of batch-finished events due for delivery (store/outbox.py)
    upload:*, seen:*         hosted copies of uploaded inputs, webhook ids seen (store/memo.py)

Outside the prefix, only read: Celery's queue lists and kombu's `unacked` hash
(`celery_backlog`, for metrics). Nothing outside `genbatch/store/` touches Redis keys: other
parts call the named methods here (tests/test_layers.py checks it).

A Celery message only ever carries an item or batch id; losing or duplicating one is
harmless because every task re-reads the item's state and transitions by compare-and-set.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

from genbatch.errors import ConfigError, GenbatchError, NotFoundError
from genbatch.records import Batch, Item
from genbatch.store import scripts
from genbatch.store.counters import Counters
from genbatch.store.limits import GenTimes, Limits
from genbatch.store.memo import Memo
from genbatch.store.outbox import Outbox

COUNTERS: tuple[str, ...] = (
    "total", "pending", "in_flight", "downloading",
    "succeeded", "failed", "expired", "cancelled", "ambiguous",
)
OPEN_COUNTERS: tuple[str, ...] = ("pending", "in_flight", "downloading")
CONNECT_TIMEOUT_S = 5.0  # a Redis that does not accept a connection in this is down
PING_TIMEOUT_S = 3.0  # the entry points' first check (`ping`)
TimerArg = float | str | None  # None keep, "-" remove, float = due time
# kombu's Redis transport: a queue's priority lists are `<queue>\x06\x16<step>`.
_KOMBU_PRIORITY_SEP = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (3, 6, 9)  # step 0 is the plain list


def open_count(batch: Mapping[str, str]) -> int:
    """Items of a batch record not yet in a terminal state."""
    return sum(int(batch.get(c) or 0) for c in OPEN_COUNTERS)


@dataclass(frozen=True, slots=True)
class Transition:
    """Outcome of a compare-and-set: did it apply, what the state was, items left open."""

    applied: bool
    previous: str
    open_items: int  # open items left in the batch after the move; -1 when not applied
    provider: str = ""  # the item's account before the move (when applied)


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A custom_id seen twice in one batch: where it was repeated and first seen."""

    seq: int | None  # the repeat's item (now a failed invalid_row item); None = not written
    line: int
    custom_id: str
    first_line: int


def _token(add: Callable[[str], object], value: str) -> None:
    """Append `value` as one ADD_ITEMS token: its length in UTF-8 bytes, ':', itself."""
    add(f"{len(value) if value.isascii() else len(value.encode())}:")
    add(value)


def _m(mapping: Mapping[str, Any]) -> Any:
    """redis-py's Mapping types are invariant in the key; our keys are always str."""
    return mapping


def _duplicates(flat: Sequence[Any]) -> list[Duplicate]:
    return [
        Duplicate(int(flat[i]) if flat[i] else None, int(flat[i + 1]), str(flat[i + 2]),
                  int(flat[i + 3]))
        for i in range(0, len(flat), 4)
    ]


def _batch_gone(exc: redis.ResponseError, batch_id: str) -> Exception:
    """ADD_ITEMS refuses to write into a batch that was deleted (a stale `validating` batch
    reaped while its producer was stopped): a clear error instead of a half-made batch."""
    if "BATCHGONE" in str(exc):
        return GenbatchError(f"batch {batch_id} was discarded while it was being written "
                             "(its producer stopped for longer than "
                             "GENBATCH_VALIDATING_TIMEOUT_S); submit the manifest again")
    return exc


class ItemWriter:
    """Sends add_items chunks on a dedicated connection and reads each reply later, so
    the caller validates the next chunk while Redis writes this one — one thread, no GIL
    hand-offs (a writer thread re-taking the GIL after each socket call cost more than
    the overlap gained). At most one chunk is in flight."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.sha = store.r.script_load(scripts.ADD_ITEMS)  # EVALSHA finds it from now on
        self.conn: Any = store.r.connection_pool.get_connection()
        self.sent: list[str] | None = None

    def send(self, args: list[str]) -> None:
        """Send one chunk from `JobStore.pack_items`; its reply is read by `receive`."""
        assert self.sent is None, "read the reply of the chunk in flight first"
        self.sent = args
        self._send(args)

    def _send(self, args: list[str]) -> None:
        key = self.store.k("batch", args[1])
        try:
            self.conn.send_packed_command(self.conn.pack_command("EVALSHA", self.sha, 1, key,
                                                                 *args))
        except BaseException:
            self.conn.disconnect()
            raise

    def receive(self) -> list[Duplicate]:
        """The repeats found in the chunk in flight (none in flight: [])."""
        args, self.sent = self.sent, None
        if args is None:
            return []
        try:
            flat = self.conn.read_response()
        except redis.ResponseError as exc:
            raise _batch_gone(exc, args[1]) from exc
        except redis.exceptions.NoScriptError:  # Redis restarted or flushed its scripts
            self.sha = self.store.r.script_load(scripts.ADD_ITEMS)
            self._send(args)
            flat = self.conn.read_response()
        except BaseException:
            self.conn.disconnect()  # its reply may still be on the wire
            raise
        return _duplicates(flat)

    def close(self) -> None:
        if self.conn is not None:
            self.store.r.connection_pool.release(self.conn)
            self.conn = None


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

    # -- batches ---------------------------------------------------------------------
    def create_batch(self, batch_id: str, meta: Mapping[str, str], created_at: float) -> None:
        record = {"id": batch_id, "status": "validating", "created_at": repr(created_at)}
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
        string arguments of one Lua call (ADD_ITEMS, see there): per-item commands and
        replies were most of ingest's time, and cjson-decoding the records most of
        Redis's. `pack_items` + `write_packed` are the two halves, for a caller that packs
        on one thread and waits for Redis on another.

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
        # Field names go once per distinct list (schema), then each record is its values.
        schemas: dict[tuple[str, ...], str] = {}
        head: list[str] = []
        parts: list[str] = []
        add = parts.append
        for n, rec in enumerate(items):
            names = tuple(rec)
            schema = schemas.get(names)
            if schema is None:
                schema = str(len(schemas) + 1)
                schemas[names] = schema
                _token(head.append, str(len(names)))
                for f in names:
                    _token(head.append, f)
            check = unique[n] if unique is not None else None
            if check is None:
                add(f"0:0:{len(schema)}:{schema}")
            else:
                _token(add, check[0])
                _token(add, str(check[1]))
                add(f"{len(schema)}:{schema}")
            for v in rec.values():  # the hot loop of ingest: one string per value
                add(f"{len(v) if v.isascii() else len(v.encode())}:{v}")
        for custom_id, line in check_only:
            _token(add, custom_id)
            _token(add, str(line))
            add("1:0")
        ids = self.k("ids", batch_id) if unique is not None else ""
        return [self.prefix, batch_id, ids, "".join(head), "".join(parts)]

    def write_packed(self, args: list[str]) -> list[Duplicate]:
        """Run add_items' Lua call on arguments from pack_items."""
        if not args[4]:
            return []  # nothing to write or check
        try:
            return _duplicates(self._add_items(keys=[self.k("batch", args[1])], args=args))
        except redis.ResponseError as exc:
            raise _batch_gone(exc, args[1]) from exc

    def item_writer(self) -> ItemWriter:
        """A connection of its own for writing chunks without waiting for each reply."""
        return ItemWriter(self)

    def set_item_fields(self, items: Mapping[str, Mapping[str, str]]) -> None:
        """Set fields of several items (item id -> fields) in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for iid, fields in items.items():
            pipe.hset(self.k("item", iid), mapping=_m(fields))
        pipe.execute()

    def commit_batch(self, batch_id: str, providers: Sequence[str]) -> None:
        """Make a validated batch visible to the dispatcher."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k("batch", batch_id), "status", "in_progress")
        pipe.delete(self.k("ids", batch_id))
        pipe.srem(self.k("validating"), batch_id)
        pipe.sadd(self.k("active"), batch_id)
        for p in providers:
            pipe.sadd(self.k("queues", p), batch_id)
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
            if status == "validating" and now - last > timeout_s:
                self.discard_batch(batch_id, int(total or 0), providers)
                reaped.append(batch_id)
            elif status != "validating":
                self.r.srem(self.k("validating"), batch_id)
        return reaped

    def get_batch(self, batch_id: str) -> Batch:
        rec: dict[str, str] = self.r.hgetall(self.k("batch", batch_id))  # type: ignore[assignment]
        if not rec:
            raise NotFoundError(f"no batch {batch_id!r} in the job store")
        return Batch(rec)

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
        """Stop dispatching a batch: take it off every account's round-robin."""
        pipe = self.r.pipeline(transaction=True)
        for p in providers:
            pipe.srem(self.k("queues", p), batch_id)
            pipe.delete(self.k("pending", p, batch_id))
        pipe.execute()

    def reopen_batch(self, batch_id: str) -> bool:
        """Make a finished or cancelled batch run again (for retry)."""
        ok, _ = self.batch_cas(batch_id, ["completed", "cancelled", "finalizing", "in_progress"],
                               "in_progress")
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
    def queued_batches(self, provider: str) -> list[str]:
        return sorted(self.r.smembers(self.k("queues", provider)))  # type: ignore[arg-type]

    def drop_queue_if_empty(self, provider: str, batch_id: str) -> None:
        key = self.k("pending", provider, batch_id)
        with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    if pipe.llen(key) > 0:
                        pipe.unwatch()
                        return
                    pipe.multi()
                    pipe.srem(self.k("queues", provider), batch_id)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def dispatch(
        self, provider: str, batch_id: str, limit: int, max_n: int, lease_until: float
    ) -> list[str]:
        keys = [self.k("pending", provider, batch_id), self.k("timers")]
        args: list[Any] = [self.prefix, provider, limit, max_n, repr(lease_until)]
        return [str(x) for x in self._dispatch(keys=keys, args=args)]

    def in_flight(self, provider: str) -> int:
        return int(self.r.get(self.k("inflight", provider)) or 0)

    def claim_due(self, now: float, lease_until: float, max_n: int) -> list[tuple[str, str]]:
        """Due timers with no poll budget applied (the scheduler uses Limits.claim_due)."""
        return [(i, st) for i, st in self.limits.claim_due(
            now, lease_until, max_n, {}) if i]

    def set_cooldown(self, provider: str, seconds: float) -> None:
        self.r.set(self.k("cooldown", provider), "1", px=max(1, int(seconds * 1000)))

    def in_cooldown(self, provider: str) -> bool:
        return bool(self.r.exists(self.k("cooldown", provider)))

    def batch_fields(self, batch_ids: Sequence[str],
                     fields: Sequence[str]) -> list[list[str | None]]:
        """`fields` of each batch (None where unset), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for bid in batch_ids:
            pipe.hmget(self.k("batch", bid), list(fields))
        return list(pipe.execute())

    def in_flight_counts(self, providers: Sequence[str]) -> list[int]:
        return [int(v or 0) for v in self.r.mget([self.k("inflight", p) for p in providers])]

    def still_queued(self, provider: str, batch_id: str) -> bool:
        """The batch has pending items at `provider` and is on its round-robin."""
        pipe = self.r.pipeline(transaction=False)
        pipe.llen(self.k("pending", provider, batch_id))
        pipe.sismember(self.k("queues", provider), batch_id)
        n, member = pipe.execute()
        return bool(n) and bool(member)

    def rr_position(self, provider: str, priority: str) -> int:
        """Where the round-robin over `provider`'s batches of one priority starts next."""
        return int(self.r.get(self.k("rr", provider, priority)) or 0)

    def advance_rr(self, provider: str, priority: str, n: int) -> None:
        self.r.incrby(self.k("rr", provider, priority), n)

    def timers_due(self, now: float) -> tuple[float | None, int]:
        """(when the oldest due timer was due, how many are due) at `now`."""
        key = self.k("timers")
        oldest = self.r.zrangebyscore(key, "-inf", now, start=0, num=1, withscores=True)
        n: int = self.r.zcount(key, "-inf", now)
        return (float(oldest[0][1]) if oldest else None), n

    def timed_item_starts(self, max_n: int) -> list[tuple[str | None, str | None]]:
        """(submitted_at, deadline) of up to `max_n` items with a timer (open items)."""
        ids = self.r.zrange(self.k("timers"), 0, max_n - 1)
        pipe = self.r.pipeline(transaction=False)
        for iid in ids:
            pipe.hmget(self.k("item", str(iid)), "submitted_at", "deadline")
        return [(s, d) for s, d in pipe.execute()]

    def celery_backlog(self, queues: Sequence[str]) -> tuple[dict[str, int], int]:
        """Messages waiting in each Celery queue (kombu keeps a queue as a plain list plus
        one list per priority step, named `queue\\x06\\x16<step>`; they are not under our
        prefix), and messages delivered but not yet acknowledged (kombu's `unacked` hash)."""
        steps = ("", *(f"{_KOMBU_PRIORITY_SEP}{step}" for step in _KOMBU_PRIORITY_STEPS))
        pipe = self.r.pipeline(transaction=False)
        for q in queues:
            for step in steps:
                pipe.llen(f"{q}{step}")
        pipe.hlen("unacked")
        *lengths, unacked = pipe.execute()
        per = len(steps)
        return ({q: sum(lengths[i * per:(i + 1) * per]) for i, q in enumerate(queues)},
                int(unacked))

    # -- leader locks ----------------------------------------------------------------
    def acquire_lock(self, name: str, token: str, ttl_s: float) -> bool:
        key = self.k("lock", name)
        if self._renew(keys=[key], args=[token, int(ttl_s * 1000)]):
            return True
        return bool(self.r.set(key, token, nx=True, px=int(ttl_s * 1000)))

    def release_lock(self, name: str, token: str) -> None:
        key = self.k("lock", name)
        if self.r.get(key) == token:
            self.r.delete(key)

    # -- checks ----------------------------------------------------------------------
    def recount(self, batch_id: str) -> dict[str, int]:
        """Counters recomputed from the item records (for tests and `status --check`)."""
        batch = self.get_batch(batch_id)
        counts = dict.fromkeys(COUNTERS, 0)
        state_counter = {
            "pending": "pending", "dispatched": "in_flight", "submitting": "in_flight",
            "submitted": "in_flight", "downloading": "downloading",
        }
        for rec in self.iter_items(batch_id, int(batch["total"])):
            counts["total"] += 1
            state = rec["state"]
            counts[state_counter.get(state, state)] += 1
        return counts
