"""A submit's record must be on disk before the POST leaves: else a Redis that loses its
last writes (a power cut, a restart without its append-only file, a failover to a replica
that had not got them) forgets a paid task, and the item is submitted — and paid — again.

What guards the record depends on the Redis (`Guard`, shown by `genbatch status`):

- `appendfsync always`: Redis answers a write only once it is fsynced. Nothing to do.
- Redis 7.2+: after the `submitting` record, `WAITAOF 1 0` waits until the local
  append-only file has it (`Server.wait_durable`).
- `appendfsync everysec` without WAITAOF (Redis < 7.2, many managed services): Redis fsyncs
  once a second (a slow disk can stretch that to two). The worker waits GENBATCH_FSYNC_WAIT_S
  (2 s) after the record, reads it back, and sends only if it is still there: a record that
  has been through an fsync survives a power cut, and one a restart already lost is never
  sent. A worker that stops during the wait sent nothing: the item is not `ambiguous` but
  submitted again (`never_sent`, marked by `sending` before the POST). This is a timing
  guarantee, not a confirmation; after a restart the scheduler checks what it can anyway
  (worker/recovery.py).
- no append-only file, `appendfsync no` (the OS flushes when it likes), a setting that
  cannot be read, or GENBATCH_FSYNC_WAIT_S=0: nothing bounds what a restart loses. A worker
  refuses a Redis without an append-only file, in one line, unless
  GENBATCH_ALLOW_VOLATILE_REDIS is set; after a restart the scheduler flags every item whose
  submit could have been lost as `possibly_paid_twice`.
"""

from __future__ import annotations

import enum
import logging
import time

from genbatch.config import Settings
from genbatch.errors import ConfigError
from genbatch.models import ItemState
from genbatch.records import Item
from genbatch.store import Durability, JobStore
from genbatch.worker import accounts
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)
EVERYSEC_S = 1.0  # Redis's fsync interval with `appendfsync everysec`
CACHE_S = 10.0  # how long a process trusts its reading of the server's durability


class Guard(enum.StrEnum):
    """What makes a submit's record durable before its POST."""

    ALWAYS = "always"  # appendfsync always
    WAITAOF = "waitaof"  # confirmed per record (Redis 7.2+)
    WAIT = "wait"  # everysec: waited out, then read back
    NONE = "none"  # nothing: a restart may lose submits already sent

    @property
    def covers(self) -> bool:
        """Whether a record lost in a restart is one whose POST was never sent."""
        return self is not Guard.NONE


def guard(d: Durability, settings: Settings) -> Guard:
    if not d.aof:
        return Guard.NONE
    if d.fsync == "always":
        return Guard.ALWAYS
    if d.waitaof:
        return Guard.WAITAOF
    if d.fsync == "everysec" and settings.fsync_wait_s >= EVERYSEC_S:
        return Guard.WAIT
    return Guard.NONE


def describe(d: Durability, g: Guard, settings: Settings) -> str:
    """One line for `genbatch status` and the batch page."""
    redis = f"Redis {d.version}"
    if not d.aof:
        return f"no AOF ({redis}): a restart loses writes; possibly paid twice is flagged"
    if g is Guard.ALWAYS:
        return f"AOF always ({redis}): every answered write is on disk"
    if g is Guard.WAITAOF:
        return f"AOF {d.fsync or '?'} + WAITAOF ({redis}): each submit record confirmed on disk"
    if g is Guard.WAIT:
        return (f"AOF everysec ({redis}, no WAITAOF): each submit waits "
                f"{settings.fsync_wait_s:g}s for the fsync and is read back")
    return (f"AOF {d.fsync or 'fsync unknown'} ({redis}): a restart can lose sent submits; "
            "possibly paid twice is flagged")


def check_durability(store: JobStore, settings: Settings) -> str | None:
    """ConfigError when Redis keeps no append-only file (unless allowed); the warning to
    print when a submit's record could still be lost; None when each record is durable."""
    d = store.server.durability()
    if not d.aof:
        if settings.allow_volatile_redis:
            return ("Redis keeps no append-only file (GENBATCH_ALLOW_VOLATILE_REDIS is set): "
                    "a restart can forget submitted tasks, which are then paid twice")
        raise ConfigError(
            "the Redis at GENBATCH_REDIS_URL keeps no append-only file, so a restart can "
            "forget a submit and pay for it twice: start it with `--appendonly yes "
            "--appendfsync always` (or set GENBATCH_ALLOW_VOLATILE_REDIS=true to accept that)")
    g = guard(d, settings)
    if g in (Guard.ALWAYS, Guard.WAITAOF):
        return None
    if g is Guard.WAIT:
        return (f"Redis fsyncs its append-only file `everysec` and has no WAITAOF (Redis "
                f"{d.version}): a power cut can lose the last second, so each submit waits "
                f"{settings.fsync_wait_s:g}s for its record to reach the disk; "
                "`--appendfsync always` (or Redis 7.2+) closes that without the wait")
    return (f"Redis fsyncs its append-only file `{d.fsync or 'on an unknown schedule'}` and "
            f"has no WAITAOF (Redis {d.version}): a power cut can lose the last second of "
            "submit records; `--appendfsync always` (or Redis 7.2+) closes that")


def check_replicas(store: JobStore, settings: Settings) -> str | None:
    """The warning to print when a submit's record will not reach a replica before its POST
    (Sentinels given, `auto`, and no replica connected) or when no submit can go out (more
    replicas asked for than are connected); None otherwise."""
    wanted = settings.min_replicas()
    connected = store.server.connected_replicas()
    if wanted is None:
        if settings.redis_sentinels and connected == 0:
            return ("the Redis primary has no replica connected: submit records are not "
                    "copied before their POST until one connects (a failover now could pay "
                    "a row twice); GENBATCH_REDIS_MIN_REPLICAS=1 waits for one instead")
        return None
    if connected < wanted:
        return (f"GENBATCH_REDIS_MIN_REPLICAS={wanted} but the Redis primary has {connected} "
                "replica(s) connected: no submit goes out until enough connect")
    return None
def current_guard(rt: Runtime) -> Guard:
    """This process's reading of the guard, re-read at most every CACHE_S."""
    seen = rt.recent.get("guard")
    if seen is not None and time.monotonic() - seen[0] < CACHE_S:
        return list(Guard)[int(seen[1])]
    g = guard(rt.store.server.durability(), rt.settings)
    rt.recent["guard"] = (time.monotonic(), float(list(Guard).index(g)))
    return g


def hold_until_durable(rt: Runtime, iid: str, attempt: int) -> str | None:
    """After the `submitting` record of attempt `attempt`: None once it is durable (send),
    else the submit step's outcome (not sent)."""
    g = current_guard(rt)
    if not rt.store.server.wait_durable(replicas=rt.settings.min_replicas()):
        reason = ("the submit record was not confirmed in time (on disk where Redis has "
                  "WAITAOF, by a replica where GENBATCH_REDIS_MIN_REPLICAS asks for one); "
                  "not sent, back to the queue")
        log.warning("item %s: %s", iid, reason)
        item = rt.store.items.get(iid)
        return accounts.requeue(rt, item, iid, [ItemState.SUBMITTING], reason, 1.0)
    if g is Guard.WAIT:
        began = time.monotonic()
        time.sleep(rt.settings.fsync_wait_s)
        item = rt.store.items.get(iid)  # read back: still ours, so it survived an fsync
        if item.state is not ItemState.SUBMITTING or item.attempts != attempt:
            log.warning("item %s: its submit record was lost (Redis restarted?); not sent",
                        iid)
            return "skipped"
        if time.monotonic() - began > rt.settings.task_lease_s / 2:  # stalled: the
            return "skipped"  # scheduler may already be taking it back (never_sent)
        rt.store.items.set_fields({iid: {"sending": repr(rt.now())}})  # the POST follows
    return None


def never_sent(rt: Runtime, item: Item) -> bool:
    """Whether a `submitting` item whose worker stopped provably sent nothing: its record
    waited out the fsync (Guard.WAIT), it has no `sending` mark, and Redis has not restarted
    since the claim (a restart could have lost the mark)."""
    if item.hold != Guard.WAIT or item.sending is not None or item.submit_started_at is None:
        return False
    last = rt.store.restarts.last()
    if last is not None and last.at >= item.submit_started_at:
        return False
    return rt.store.server.durability().run_id == rt.store.restarts.run_id()
