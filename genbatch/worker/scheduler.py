"""The scheduler's leaders: dispatcher, timers and finalize sweep, run by one process at a
time under a Redis lock (`genbatch scheduler`; start several for failover).

- Dispatcher: per provider account, moves pending items to `dispatched` within the in-flight
  limit and the submit budget (sliding window, `genbatch/store/limits.py`), priority first, then
  round-robin across batches, and enqueues their submit tasks (`worker/dispatch.py`; a
  worker that frees a slot runs the same function for its account at once).
- Account lists: where a provider lists an account's tasks with their status (Kling), a
  listing of each account with tasks in flight when its turn comes (worker/list_poll.py).
- Timers: claims due items from the timers zset (polls only within the account's poll
  budget; the rest stay due) and acts by state: `submitted` → poll,
  `downloading` → download (earliest URL expiry first, with the downloads' own short
  lease), `dispatched` → submit again (message lost), `submitting` past
  its lease → ambiguous (the worker died mid-submit; the task may exist), or back to
  pending when its record was still waiting out the fsync (worker/durable.py never_sent).
- Restarts: every second, notes the Redis server's run id; after a restart that could have
  lost submit records, flags what may be paid twice before dispatching (worker/recovery.py).
- Sweep: samples every active batch's counters into its chart series (store/series.py),
  finalizes batches with no open items whose finalize message was lost, continues
  batches stopped by their budget once failed items have released enough of it, and
  discards batches whose producer died while ingesting.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass

from genbatch import metrics, providers
from genbatch.errors import StoreUnavailable
from genbatch.models import BatchStatus, ItemState
from genbatch.providers import accounts as provider_accounts
from genbatch.store import budget
from genbatch.store.limits import Limits, poll_rates
from genbatch.store.series import MIN_STEP_S
from genbatch.worker import durable, list_poll, notify, recovery
from genbatch.worker.dispatch import dispatch_provider
from genbatch.worker.heartbeat import process_name, scheduler_beat
from genbatch.worker.runtime import Runtime
from genbatch.worker.steps import finalize_lease, finish

log = logging.getLogger(__name__)
LOCK = "scheduler"
WATCH_EVERY_S = 1.0  # how often the leader looks at the Redis server (run id, guard)
FINALIZABLE = (BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING)
TIMER_ACTIONS: dict[str, str] = {ItemState.SUBMITTED: "poll", ItemState.DOWNLOADING: "download",
                                  ItemState.DISPATCHED: "submit",
                                  ItemState.WAITING: "chain"}  # its parent's end (chains.arm)


@dataclass
class TickStats:
    dispatched: int = 0
    timers: int = 0
    ambiguous: int = 0
    finalize: int = 0


class Scheduler:
    def __init__(self, rt: Runtime, sweep_every: int = 10) -> None:
        self.rt = rt
        self.token = secrets.token_hex(8)
        self.sweep_every = sweep_every
        self.ticks = 0
        self.name = process_name("scheduler")
        self._beat_at = self._watched_at = -1e9
        self._rings_checked = False

    def tick(self) -> TickStats:
        if time.monotonic() - self._beat_at >= self.rt.settings.heartbeat_s:
            scheduler_beat(self.rt, self.name)  # "a scheduler leads" for status and accounts
            self._beat_at = time.monotonic()
        if time.monotonic() - self._watched_at >= WATCH_EVERY_S:
            recovery.watch(self.rt)  # a Redis restart is recovered from before dispatch
            self._watched_at = time.monotonic()
        stats = TickStats()
        stats.dispatched = self.dispatch()
        stats.timers, stats.ambiguous = self.fire_timers()
        for account in list_poll.turns(self.rt):  # every task of the account in one request
            self.rt.enqueue("listpoll", account)
        notify.enqueue_due(self.rt)  # webhook-out deliveries due (retries, lost messages)
        self.reconcile_due()
        if self.ticks % self.sweep_every == 0:
            stats.finalize = self.sweep()
        self.ticks += 1
        return stats

    @property
    def limits(self) -> Limits:
        return self.rt.store.limits  # the process's store (fork-safe) owns its limiter

    def dispatch(self) -> int:
        """Per provider: as many submits as its accounts' in-flight caps and submit rates
        allow (priority first, round-robin across the batches of one priority)."""
        if not self._rings_checked:  # a job store from before the rings: put batches on
            for provider in providers.names():
                self.rt.store.queues.rebuild_rings(provider)
            self._rings_checked = True
        return sum(dispatch_provider(self.rt, provider) for provider in providers.names())

    def fire_timers(self) -> tuple[int, int]:
        rt = self.rt
        now = rt.now()
        rates = poll_rates(rt.settings, provider_accounts.accounts(rt.settings))
        due = self.limits.claim_due(now, now + rt.settings.task_lease_s, 2000, rates,
                                    download_lease_until=now + rt.settings.download_lease_s)
        ambiguous = fired = 0
        for iid, state in due:
            fired += bool(iid)
            if not iid:  # this account's poll budget held a due poll back
                metrics.record_limiter_wait(rt.store, state, "poll")
            elif state == ItemState.SUBMITTING:
                ambiguous += self._interrupted_submit(iid)
            elif state in TIMER_ACTIONS:
                rt.enqueue(TIMER_ACTIONS[state], iid)
        return fired, ambiguous

    def reconcile_due(self) -> int:
        """Ambiguous items due for a look at their provider's task list (worker/reconcile)."""
        rt, now = self.rt, self.rt.now()
        due = rt.store.reconcile.claim_due(now, now + rt.settings.task_lease_s, 200)
        for iid in due:
            rt.enqueue("reconcile", iid)
        return len(due)

    def _interrupted_submit(self, iid: str) -> int:
        item = self.rt.store.items.get(iid)
        if durable.never_sent(self.rt, item):  # stopped while its record waited: not sent
            self.rt.store.items.transition(
                iid, [ItemState.SUBMITTING], ItemState.PENDING, timer="-", queue="front",
                fields={"last_error": "the worker stopped before sending the submit"},
                incr={"not_created": 1})
            return 0
        state = finish(self.rt, iid, [ItemState.SUBMITTING], ItemState.AMBIGUOUS,
                       "submit_interrupted",
                        "the worker stopped while submitting; the task may exist at the "
                        "provider (retry with --ambiguous to resubmit)")
        return int(state == ItemState.AMBIGUOUS)

    def sweep(self) -> int:
        rt, n = self.rt, 0
        for batch_id in rt.store.ingest.reap_validating(rt.now(), rt.settings.validating_timeout_s,
                                                        providers.names()):
            log.warning("discarded batch %s: its producer stopped while ingesting it",
                        batch_id)
        active = rt.store.batches.active()
        rt.store.series.sample(active, rt.now(), MIN_STEP_S / rt.settings.time_factor)
        for batch in rt.store.batches.get_many(active):  # pipelined: thousands of batches wait
            batch_id = batch.id
            if budget.stopped(batch) and rt.store.batches.resume_if_room(batch_id,
                                                                         providers.names()):
                log.info("batch %s continues: failed items left room in its budget", batch_id)
            elif batch.status in FINALIZABLE and batch.open_items == 0 \
                    and not rt.store.locks.held(finalize_lease(batch_id)):
                rt.enqueue("finalize", batch_id)  # not while one writes: it would be skipped
                n += 1
        return n

    def run(self, stop: threading.Event) -> None:
        """Tick while holding the leader lock; stand by while another process holds it."""
        tick_s = self.rt.settings.scheduler_tick_s
        leading = False
        try:
            while not stop.is_set():
                try:
                    now_leading = self.rt.store.locks.acquire(LOCK, self.token, tick_s * 10 + 5)
                    if now_leading != leading:
                        log.info("scheduler %s leader", "is" if now_leading else "is not")
                        leading = now_leading
                    if leading:
                        self.tick()
                except StoreUnavailable as exc:
                    # Redis restarting (a BusyLoadingError is a StoreUnavailable too): one line, not
                    # a traceback per tick.
                    log.warning("scheduler: Redis unavailable (%s); retrying",
                                type(exc).__name__)
                    stop.wait(1.0)
                except Exception:  # keep leading through a bad item
                    log.exception("scheduler tick failed; retrying")
                    stop.wait(1.0)
                stop.wait(tick_s)
        finally:
            with contextlib.suppress(Exception):  # best effort on shutdown
                self.rt.store.locks.release(LOCK, self.token)
