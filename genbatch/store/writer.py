"""The ingest path into the job store: a batch created `validating`, its item records
packed for one Lua call per chunk (ADD_ITEMS, `lua/add_items.lua`) and written by a writer
that keeps one chunk in flight, then committed (visible to the dispatcher) or discarded.

The chunk travels as two string arguments: field names once per distinct record shape
(schema), then each record as its values, every token as `<length in UTF-8 bytes>:<text>`.
Per-item commands and replies were most of ingest's time, and cjson-decoding the records
most of Redis's (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

from genbatch.errors import GenbatchError
from genbatch.models import BATCH_COUNTERS, BatchStatus, ItemState
from genbatch.store import scripts
from genbatch.store.connection import translated
from genbatch.store.items import as_mapping, item_id
from genbatch.store.queues import Queues


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


def pack_items(
prefix: str, batch_id: str, ids_key: str, items: Sequence[Mapping[str, str]], *,
    unique: Sequence[tuple[str, int] | None] | None = None,
    check_only: Sequence[tuple[str, int]] = (),
) -> list[str]:
    """The arguments of ADD_ITEMS (pure CPU work, no I/O): `ids_key` is the batch's
    custom_id hash when `unique` is given, else "" (see Ingest.add_items)."""
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
    return [prefix, batch_id, ids_key, "".join(head), "".join(parts)]


def duplicates(flat: Sequence[Any]) -> list[Duplicate]:
    return [
        Duplicate(int(flat[i]) if flat[i] else None, int(flat[i + 1]), str(flat[i + 2]),
                  int(flat[i + 3]))
        for i in range(0, len(flat), 4)
    ]


def batch_gone(exc: redis.ResponseError, batch_id: str) -> Exception:
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

    def __init__(self, client: redis.Redis, script: Script, batch_key_prefix: str) -> None:
        self.r = client
        # The store's ADD_ITEMS Script: one text, one sha. Not loaded here: the first
        # EVALSHA that finds it missing loads it (receive), as redis-py's Script does.
        self.script = script
        self.sha = script.sha
        self.batch_key_prefix = batch_key_prefix  # + batch id = the batch's hash
        self.conn: Any = client.connection_pool.get_connection()
        self.sent: list[str] | None = None

    def send(self, args: list[str]) -> None:
        """Send one chunk from `pack_items`; its reply is read by `receive`."""
        assert self.sent is None, "read the reply of the chunk in flight first"
        self.sent = args
        self._send(args)

    def _send(self, args: list[str]) -> None:
        key = self.batch_key_prefix + args[1]
        try:
            with translated():
                self.conn.send_packed_command(self.conn.pack_command("EVALSHA", self.sha, 1,
                                                                     key, *args))
        except BaseException:
            self.conn.disconnect()
            raise

    def receive(self) -> list[Duplicate]:
        """The repeats found in the chunk in flight (none in flight: [])."""
        args, self.sent = self.sent, None
        if args is None:
            return []
        try:
            with translated():
                try:
                    flat = self.conn.read_response()
                except redis.exceptions.NoScriptError:  # not loaded yet, or Redis restarted
                    self.sha = self.r.script_load(self.script.script)
                    self._send(args)
                    flat = self.conn.read_response()
        except redis.ResponseError as exc:
            raise batch_gone(exc, args[1]) from exc
        except BaseException:
            self.conn.disconnect()  # its reply may still be on the wire
            raise
        return duplicates(flat)

    def close(self) -> None:
        if self.conn is not None:
            self.r.connection_pool.release(self.conn)
            self.conn = None


class Ingest:
    """A batch from `validating` to `in_progress`: created, its items written in chunks,
    then committed; or discarded (by its producer, or reaped when the producer died)."""

    def __init__(self, client: redis.Redis, prefix: str, queues: Queues) -> None:
        self._r = client
        self._prefix = prefix
        self._queues = queues
        self._add_items = client.register_script(scripts.ADD_ITEMS)

    def _k(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def create(self, batch_id: str, meta: Mapping[str, str], created_at: float) -> None:
        record = {"id": batch_id, "status": BatchStatus.VALIDATING.value,
                  "created_at": repr(created_at)}
        record.update(meta)
        record.update({c: "0" for c in BATCH_COUNTERS})
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._k("batch", batch_id), mapping=as_mapping(record))
        pipe.zadd(self._k("batches"), {batch_id: created_at})
        pipe.sadd(self._k(BatchStatus.VALIDATING), batch_id)
        pipe.execute()

    def add_items(
        self, batch_id: str, items: Sequence[Mapping[str, str]], *,
        unique: Sequence[tuple[str, int] | None] | None = None,
        check_only: Sequence[tuple[str, int]] = (),
    ) -> list[Duplicate]:
        """Write a chunk of item records (each with `seq`, `state` and `provider`, all
        values strings) in one round trip.

        Pending items go on the batch's per-provider list; while the batch is still
        `validating` nothing dispatches from them (commit makes them visible), for a
        running batch (resume) they are dispatchable at once. The chunk travels as two
        string arguments of one Lua call (see the module docstring); `pack` +
        `write_packed` are the two halves, for a caller that packs on one thread and waits
        for Redis on another.

        With `unique` (per item: its (custom_id, line) to check, or None), custom_ids are
        checked for uniqueness across the whole batch in Redis, in order, then the
        `check_only` ones (rows validated but not written). A repeated custom_id's item is
        written as a failed `invalid_row` item; every repeat is returned.
        """
        return self.write_packed(self.pack(batch_id, items, unique=unique,
                                           check_only=check_only))

    def pack(
        self, batch_id: str, items: Sequence[Mapping[str, str]], *,
        unique: Sequence[tuple[str, int] | None] | None = None,
        check_only: Sequence[tuple[str, int]] = (),
    ) -> list[str]:
        """The arguments of add_items' Lua call (pure CPU work, no I/O)."""
        ids = self._k("ids", batch_id) if unique is not None else ""
        return pack_items(self._prefix, batch_id, ids, items, unique=unique,
                          check_only=check_only)

    def write_packed(self, args: list[str]) -> list[Duplicate]:
        """Run add_items' Lua call on arguments from pack."""
        if not args[4]:
            return []  # nothing to write or check
        try:
            return duplicates(self._add_items(keys=[self._k("batch", args[1])], args=args))
        except redis.ResponseError as exc:
            raise batch_gone(exc, args[1]) from exc

    def writer(self) -> ItemWriter:
        """A connection of its own for writing chunks without waiting for each reply."""
        return ItemWriter(self._r, self._add_items, self._k("batch", ""))

    def commit(self, batch_id: str, providers: Sequence[str]) -> None:
        """Make a validated batch visible to the dispatcher."""
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._k("batch", batch_id), "status", BatchStatus.IN_PROGRESS.value)
        pipe.delete(self._k("ids", batch_id))
        pipe.srem(self._k(BatchStatus.VALIDATING), batch_id)
        pipe.sadd(self._k("active"), batch_id)
        self._queues.queue(batch_id, providers, pipe=pipe)
        pipe.execute()

    def discard(self, batch_id: str, n_items: int, providers: Sequence[str]) -> None:
        """Delete a batch that never left `validating` (validation failed or was aborted)."""
        pipe = self._r.pipeline(transaction=False)
        for seq in range(1, n_items + 1):
            pipe.delete(self._k("item", item_id(batch_id, seq)))
            if seq % 1000 == 0:
                pipe.execute()
        for p in providers:
            pipe.delete(self._k(ItemState.PENDING, p, batch_id))
        pipe.delete(self._k("batch", batch_id), self._k("ids", batch_id))
        pipe.zrem(self._k("batches"), batch_id)
        pipe.srem(self._k(BatchStatus.VALIDATING), batch_id)
        pipe.execute()

    def reap_validating(self, now: float, timeout_s: float,
                        providers: Sequence[str]) -> list[str]:
        """Discard batches still `validating` whose producer has written nothing for
        `timeout_s` (it died mid-ingest: the batch would never run). Returns their ids."""
        reaped: list[str] = []
        members: set[str] = self._r.smembers(self._k(BatchStatus.VALIDATING))  # type: ignore[assignment]
        for batch_id in sorted(members):
            status, created, touched, total = self._r.hmget(
                self._k("batch", batch_id), ["status", "created_at", "touched", "total"])
            if status is None:  # gone already
                self._r.srem(self._k(BatchStatus.VALIDATING), batch_id)
                continue
            last = max(float(created or 0), float(touched or 0))
            if status == BatchStatus.VALIDATING and now - last > timeout_s:
                self.discard(batch_id, int(total or 0), providers)
                reaped.append(batch_id)
            elif status != BatchStatus.VALIDATING:
                self._r.srem(self._k(BatchStatus.VALIDATING), batch_id)
        return reaped
