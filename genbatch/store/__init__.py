"""The job store: batch and item records in Redis, the single source of truth.

Keys (prefix `gb:` by default):
    batch:{bid}              hash: status, metadata and counters (total, waiting_parent,
                             pending, in_flight, downloading, succeeded, failed, expired,
                             cancelled, ambiguous, parent_failed);
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
    slotrest:{account}       present while an account rests after a "slot full" refusal
                             (Kling's 1303); deleted when one of its tasks ends
    slotfull:{account}       present for a while after such a refusal: the account takes
                             one submit at a time (worker/dispatch.py)
    rr:{provider}            where ties between a provider's accounts start (dispatch.lua)
    lock:{name}              leader locks (store/locks.py)
    turn:{name}              a turn taken, at most one per interval (store/locks.py)
    rate:{account}:{kind}    request-rate limiter state and its `:log` (store/limits.py);
                             `rate:{account}:submit@{model}` for a per-model submit rate
    gentime                  learned generation times (store/limits.py)
    gentime:n                how many samples each of them has seen
    metrics:{name}, metrics:batch:{bid}, metrics:hist:{name}   counters and histograms for
                             Prometheus (store/counters.py)
    hosts:{bid}              hash `<step>:<host>` -> items that host moved through that
                             step (submitted, downloaded): who served the batch (batches.py)
    review:{bid}:kept, review:{bid}:rejected   review verdicts: zsets of item seqs
                             scored by seq (store/review.py)
    series:{bid}             a bounded time series of the batch's counters (store/series.py)
    notify                   zset of batch-finished events due for delivery (store/outbox.py)
    health:{account}         account health: state, failure streaks (store/health.py)
    hb:worker:{name}, hb:scheduler   heartbeats with a TTL (store/heartbeats.py)
    owners:{account}:{day}, reconcile    remote task owners; ambiguous items due for
                             reconciling (store/reconcile.py)
    redis, restart, recovering   the Redis server's run id and guard, its last restart and
                             the fence dispatch waits behind (store/restarts.py)
    submitted:{key}          the batch a manifest was submitted as (store/submissions.py)
    upload:*, seen:*         hosted copies of uploaded inputs, webhook ids seen (store/memo.py)

Outside the prefix, only read: Celery's queue lists and kombu's `unacked` hash
(store/monitor.py, for metrics). Nothing outside `genbatch/store/` touches Redis keys: other
parts call the named methods here (tests/test_layers.py checks it).

The modules, by concept: this one (JobStore, the facade: one property per part below),
connection (the Redis client, its errors translated into StoreUnavailable / StoreError, and
the server's clock and durability), items (item records and the TRANSITION state machine),
batches (batch records, status compare-and-set, budget), queues (dispatch, pending lists,
round-robins, in-flight counts, cooldowns), writer (the ingest path: create, write, commit
or discard a batch), history (attempts), budget, limits (rate limits, generation times),
health, heartbeats, counters, outbox, pages, review, series, memo, locks, monitor, scripts (the one
loader of `lua/*.lua`).

A Celery message only ever carries an item or batch id; losing or duplicating one is
harmless because every task re-reads the item's state and transitions by compare-and-set.
"""

from __future__ import annotations

import functools

import redis

from genbatch.config import RedisTarget
from genbatch.models import BATCH_COUNTERS, Counter
from genbatch.store import connection
from genbatch.store.batches import Batches
from genbatch.store.connection import Durability, Server
from genbatch.store.counters import Counters
from genbatch.store.debug import Debug
from genbatch.store.health import Health
from genbatch.store.heartbeats import Heartbeats
from genbatch.store.items import ANY_OPEN, Items, TimerArg, Transition, item_id
from genbatch.store.limits import GenTimes, Limits
from genbatch.store.locks import Locks
from genbatch.store.memo import Memo
from genbatch.store.monitor import Monitor
from genbatch.store.outbox import Outbox
from genbatch.store.pages import Pages
from genbatch.store.queues import DispatchAccount, Dispatched, Queues
from genbatch.store.reconcile import ReconcileBook
from genbatch.store.restarts import Restart, Restarts
from genbatch.store.review import Reviews
from genbatch.store.series import Series
from genbatch.store.submissions import Submissions
from genbatch.store.writer import Duplicate, Ingest

__all__ = [
    "ANY_OPEN", "COUNTERS", "DispatchAccount", "Dispatched", "Duplicate", "Durability",
    "JobStore", "Restart", "TimerArg", "Transition", "item_id",
]

# A batch's counters (defined with the item states, genbatch/models.py).
COUNTERS: tuple[Counter, ...] = BATCH_COUNTERS


class JobStore:
    """The job store's facade: one property per part (each a module of `store/`).
    Thread-safe (redis-py pools connections)."""

    def __init__(self, client: redis.Redis, prefix: str = "gb:") -> None:
        self._r = connection.wrap(client)
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "gb:") -> JobStore:
        return cls(connection.connect(url), prefix)

    @classmethod
    def from_target(cls, target: RedisTarget, prefix: str = "gb:") -> JobStore:
        """The store at a URL's Redis, or at the primary Sentinels name (config.RedisTarget)."""
        return cls(connection.connect_target(target), prefix)

    def primary(self) -> tuple[str, int] | None:
        """The primary in use when Sentinels name it (asked now); None with one URL."""
        return connection.primary_address(self._r)

    def ping(self) -> None:
        """Fail now rather than at first use: StoreUnavailable when nothing answers,
        ConfigError when what answers is not Redis."""
        connection.ping(self._r)

    def close(self) -> None:
        """Close the connections of this store (its client's pool)."""
        self._r.close()

    @functools.cached_property
    def debug(self) -> Debug:
        """Raw looks at the keys, for tests, benchmarks and debugging only
        (`store/debug.py`)."""
        return Debug(self._r, self.prefix)

    @functools.cached_property
    def server(self) -> Server:
        """The Redis server's clock and durability (`store/connection.py`)."""
        return Server(self._r)

    @functools.cached_property
    def items(self) -> Items:
        """Item records and their state transitions (`store/items.py`)."""
        return Items(self._r, self.prefix)

    @functools.cached_property
    def batches(self) -> Batches:
        """Batch records, their status and budget (`store/batches.py`)."""
        return Batches(self._r, self.prefix, self.items)

    @functools.cached_property
    def queues(self) -> Queues:
        """Dispatch: pending lists, round-robins, in-flight counts (`store/queues.py`)."""
        return Queues(self._r, self.prefix)

    @functools.cached_property
    def ingest(self) -> Ingest:
        """Creating, writing and committing a batch (`store/writer.py`)."""
        return Ingest(self._r, self.prefix, self.queues)

    # -- parts with keys of their own ----------------------------------------------------
    @functools.cached_property
    def limits(self) -> Limits:
        """Request-rate limits and the timers claim (`store/limits.py`)."""
        return Limits(self._r, self.prefix)

    @functools.cached_property
    def gen_times(self) -> GenTimes:
        """Learned generation times per account and model (`store/limits.py`)."""
        return GenTimes(self._r, self.prefix)

    @functools.cached_property
    def counters(self) -> Counters:
        """Counters for Prometheus (`store/counters.py`)."""
        return Counters(self._r, self.prefix)

    @functools.cached_property
    def memo(self) -> Memo:
        """Uploaded inputs' URLs and webhook ids seen, each expiring (`store/memo.py`)."""
        return Memo(self._r, self.prefix)

    @functools.cached_property
    def outbox(self) -> Outbox:
        """Batch-finished events waiting for delivery (`store/outbox.py`)."""
        return Outbox(self._r, self.prefix)

    @functools.cached_property
    def monitor(self) -> Monitor:
        """Reads for the metrics scrape: timers, open items, Celery's queues."""
        return Monitor(self._r, self.prefix)

    @functools.cached_property
    def locks(self) -> Locks:
        """Leader locks (`store/locks.py`)."""
        return Locks(self._r, self.prefix)

    @functools.cached_property
    def health(self) -> Health:
        """Provider account health (`store/health.py`)."""
        return Health(self._r, self.prefix)

    @functools.cached_property
    def heartbeats(self) -> Heartbeats:
        """Heartbeats of workers and the scheduler (`store/heartbeats.py`)."""
        return Heartbeats(self._r, self.prefix)

    @functools.cached_property
    def reconcile(self) -> ReconcileBook:
        """Owners of remote tasks, ambiguous items due for reconciling
        (`store/reconcile.py`)."""
        return ReconcileBook(self._r, self.prefix)

    @functools.cached_property
    def restarts(self) -> Restarts:
        """The Redis server last seen and the restart to recover from
        (`store/restarts.py`)."""
        return Restarts(self._r, self.prefix)

    @functools.cached_property
    def submissions(self) -> Submissions:
        """Manifests already submitted, by identity (`store/submissions.py`)."""
        return Submissions(self._r, self.prefix)

    @functools.cached_property
    def series(self) -> Series:
        """A small time series per batch, for its chart (`store/series.py`)."""
        return Series(self._r, self.prefix)

    @functools.cached_property
    def pages(self) -> Pages:
        """Filtered pages of a batch's items (`store/pages.py`)."""
        return Pages(self._r, self.prefix)

    @functools.cached_property
    def reviews(self) -> Reviews:
        """Review verdicts (kept / rejected) of a batch's videos (`store/review.py`)."""
        return Reviews(self._r, self.prefix)
