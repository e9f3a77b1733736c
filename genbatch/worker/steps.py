"""The work behind each task, as plain functions over a Runtime and an id.

Each step re-reads the item, does nothing if the item is already past its step (so a
duplicate or late message is harmless), and records the outcome with one compare-and-set.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections.abc import Sequence
from typing import Any

from genbatch import metrics, providers
from genbatch.errors import (
    AmbiguousSubmit,
    ConfigError,
    GenbatchError,
    InputNotAllowed,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RetryableProviderError,
    SlotFull,
)
from genbatch.models import (
    IN_FLIGHT_STATES,
    BatchStatus,
    GenerationRequest,
    ItemState,
    PollResult,
    TaskStatus,
)
from genbatch.providers import can_list, can_lookup, get_spec
from genbatch.providers.failures import FailureClass, failure_class
from genbatch.records import Batch, Item
from genbatch.store.batches import SUBMITS, host_count
from genbatch.store.health import AccountHealth
from genbatch.worker import accounts, chains, durable, failover, hints, notify, reconcile, uploads
from genbatch.worker.callbacks import callback_url, list_polled
from genbatch.worker.dispatch import refill
from genbatch.worker.fetch import url_fields
from genbatch.worker.leases import lease
from genbatch.worker.polling import (
    EARLY,
    EARLY_QUEUED,
    REPOLLS_BEFORE_BACKOFF,
    deadline_s,
    first_poll_delay,
    learning_poll_delay,
    next_poll_delay,
    progress_eta_s,
    queued_poll_delay,
    safety_poll_delay,
)
from genbatch.worker.queue_ahead import queue_wait_s
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)
_SEEDS = random.SystemRandom()
TERMINAL_TASK_STATE = {
    TaskStatus.FAILED: ItemState.FAILED,
    TaskStatus.EXPIRED: ItemState.EXPIRED,
    TaskStatus.CANCELLED: ItemState.CANCELLED,
}
DISPATCHED, SUBMITTING, SUBMITTED, DOWNLOADING = (
    ItemState.DISPATCHED, ItemState.SUBMITTING, ItemState.SUBMITTED, ItemState.DOWNLOADING)
IN_PROGRESS, FINALIZING = BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING


def submit_item(rt: Runtime, iid: str) -> str:
    """dispatched → submitting → submitted | pending (not created) | failed | ambiguous."""
    item = rt.store.items.get(iid)
    if item.state is not DISPATCHED:
        return "skipped"
    if rt.store.restarts.fenced():  # a Redis restart is being recovered from (recovery.py):
        return "later"  # the item stays dispatched; its timer sends it again
    now = rt.now()
    try:
        adapter = rt.provider(item.account)
    except ConfigError as exc:  # this worker holds no key for the account
        return accounts.no_key(rt, item, iid, str(exc))
    try:
        request = uploads.wire_request(rt, item)  # WaveSpeed: local images uploaded first
    except RetryableProviderError as exc:  # an upload failed: it costs nothing, try again
        return _not_created(rt, item, iid, exc, allowed=DISPATCHED)
    except PermanentProviderError as exc:  # the provider refused the file
        return finish(rt, iid, [DISPATCHED], ItemState.FAILED, exc.code,
                      f"image upload refused: {exc.message}")
    except InputNotAllowed as exc:  # never signed nor read: the batch may not use it
        return finish(rt, iid, [DISPATCHED], ItemState.FAILED, "input_not_allowed", str(exc))
    except GenbatchError as exc:  # nothing was sent: a clear failure, not a mystery
        return finish(rt, iid, [DISPATCHED], ItemState.FAILED, "input_unavailable", str(exc))
    seeded = identifying_seed(item)  # BytePlus: a seed on every submit
    if seeded is not None:
        request = request.model_copy(update={"seed": seeded.seed})
    if item.children and providers.plugin(item.provider).has(providers.Capability.LAST_FRAME):
        request = request.model_copy(update={"return_last_frame": True})  # chains.py
    ref = client_ref(iid, item.attempts + 1) if can_lookup(item.provider) else None
    stopped = _claim(rt, item, iid, now, seeded, ref)
    if stopped:
        return stopped
    # this attempt's own URL (None: webhooks off); the claim counted the attempt
    hook = callback_url(rt.settings, item.provider, iid, item.attempts + 1)
    listed = can_list(item.provider)
    if listed:  # until its outcome is known, a task of this window may be its (reconcile.py)
        rt.store.reconcile.mark_unknown(item.account, iid, now)
    try:
        remote_id = adapter.submit(item.model, request, webhook_url=hook,
                                   **({"client_ref": ref} if ref else {}))
    except RetryableProviderError as exc:
        _outcome_known(rt, item, listed)
        return _not_created(rt, item, iid, exc)
    except PermanentProviderError as exc:
        _outcome_known(rt, item, listed)
        cls = failure_class(exc)
        if cls is not None and cls.pauses:  # the account's problem: never the item's
            return accounts.refused(rt, item, iid, SUBMITTING, exc, cls)
        return finish(rt, iid, [SUBMITTING], ItemState.FAILED, exc.code, exc.message)
    except AmbiguousSubmit as exc:
        _count_failure(rt, item.account, exc)
        return finish(rt, iid, [SUBMITTING], ItemState.AMBIGUOUS, exc.code, exc.message)
    return _accepted(rt, item, iid, request, remote_id, webhook=bool(hook), listed=listed,
                     now=now)


def _accepted(rt: Runtime, item: Item, iid: str, request: GenerationRequest, remote_id: str,
              *, webhook: bool, listed: bool, now: float) -> str:
    """The provider created `remote_id`: record whose task it is, then submitted."""
    accounts.note_success(rt, item.account)
    polled_by_list = list_polled(rt.settings, item.provider)
    if listed or polled_by_list:  # owned before it is submitted: see store/reconcile.py
        rt.store.reconcile.own(item.account, remote_id, iid, now)
        _outcome_known(rt, item, listed)
    moved = _submitted(rt, item, iid, request, remote_id, webhook=webhook, now=now,
                       list_polled=polled_by_list)
    if rt.store.queues.slot_full(item.account):  # one at a time there: a slot took it,
        refill(rt, item.provider)  # so another may be free: the next one now
    return moved


def identifying_seed(item: Item) -> GenerationRequest | None:
    """The item's request with a random seed, where its provider's task list shows seeds and
    the row set none (the provider would have drawn one anyway); None otherwise."""
    if item.request.seed is not None or not providers.plugin(item.provider).lists_seeds:
        return None
    spec = get_spec(item.provider, item.model)
    upper = min(spec.seed_max if spec.seed_max is not None else 2**31 - 1, 2**31 - 1)
    return item.request.model_copy(update={"seed": _SEEDS.randrange(0, upper + 1)})


def _claim(rt: Runtime, item: Item, iid: str, now: float,
           seeded: GenerationRequest | None = None, ref: str | None = None) -> str | None:
    """dispatched → submitting, the attempt counted and on disk before anything is sent (a
    seed drawn for it and the client ref it carries included); the step's outcome when it
    must stop there, None to go on and submit."""
    # the guard it waits on, and no `sending` mark yet (durable.never_sent)
    fields: dict[str, object] = {"submit_started_at": now, "submit_host": rt.host,
                                 "hold": durable.current_guard(rt), "sending": ""}
    if seeded is not None:
        fields["req"] = seeded.model_dump_json(exclude_none=True)
    if ref is not None:
        fields["client_ref"] = ref
    claim = rt.store.items.transition(
        iid, [DISPATCHED], SUBMITTING, timer=now + rt.settings.task_lease_s,
        fields=fields, incr={"attempts": 1},
    )
    if not claim.applied:
        return "skipped"
    return durable.hold_until_durable(rt, iid, item.attempts + 1)  # on disk before the POST


def _submitted(rt: Runtime, item: Item, iid: str, request: GenerationRequest, remote_id: str,
               *, webhook: bool, now: float, list_polled: bool = False) -> str:
    """submitting → submitted, its first poll timed by the model's generation time."""
    spec = get_spec(item.provider, item.model)
    learned = rt.store.gen_times.typical(item.provider, _gen_key(item.model, request.service_tier))
    typical = learned or spec.typical_seconds
    # A little before the learned mean: a job done early then waits less for its poll, and
    # one not done yet is re-polled soon (≈ 2 polls per job measured).
    first = first_poll_delay(_early(rt, item) * typical, None, rt.settings,
                             learned=bool(learned))
    wait = _queue_wait(rt, item, typical) if learned else 0.0
    unknown = not learned and _queues_behind(rt, item)
    first += wait  # a guess of the generation time would misplace a wait by much more
    if webhook or list_polled:  # called back, or listed: poll only as a slow safety net
        first = safety_poll_delay(rt.settings)
    due = rt.now() + first
    done = rt.store.items.transition(
        iid, [SUBMITTING], SUBMITTED, timer=due,
        fields={"remote_id": remote_id, "submitted_at": now, "first_poll_s": first,
                "queue_wait_s": round(wait, 3), "wait_unknown": 1 if unknown else "",
                "learning": "" if learned else 1,
                "poll_due": due,
                "typical_s": round(typical, 1),
                "deadline": now + deadline_s(request, rt.settings),
                **({"webhook": 1} if webhook else {}),
                **({"list_polled": 1} if list_polled else {})},
        incr={host_count(SUBMITS, rt.host): 1},
    )
    return ItemState.SUBMITTED if done.applied else "skipped"


def client_ref(iid: str, attempt: int) -> str:
    """The id one submit attempt carries where the provider echoes it (Kling's
    external_task_id): the item and the attempt, in characters any API takes (a long item
    id by its hash: the attempt number is never cut off)."""
    item = re.sub(r"[^A-Za-z0-9_.-]", "-", iid)
    if len(item) > 40:
        item = hashlib.sha256(iid.encode()).hexdigest()[:24]
    return f"gb-{item}-{attempt}"


def poll_item(rt: Runtime, iid: str) -> str:
    """submitted → submitted (rescheduled) | downloading | failed | expired | cancelled."""
    item = rt.store.items.get(iid)
    if item.state is not SUBMITTED:
        return "skipped"
    now = rt.now()
    metrics.record_poll_lag(rt.store, item, now)
    polls = item.polls + 1
    if item.deadline is not None and now > item.deadline:
        return finish(rt, iid, [SUBMITTED], ItemState.EXPIRED, "deadline_exceeded",
                       "the task did not finish before its deadline")
    try:
        result = rt.provider(item.account).poll(item.model, item.remote_id)
    except ConfigError as exc:  # no key on this worker: the task runs on; ask again later
        accounts.note_failure(rt, item.account, FailureClass.AUTH, f"{exc} (worker {rt.name})")
        return _poll_later(rt, iid, now + next_poll_delay(polls, None, rt.settings))
    except RetryableProviderError as exc:
        _count_failure(rt, item.account, exc)
        if isinstance(exc, RateLimited):
            metrics.record_429(rt.store, item.account, "poll", item.batch_id)
        delay = next_poll_delay(polls, None, rt.settings)
        if isinstance(exc, RateLimited):
            slow_down(rt, item.account, "poll")
            if exc.retry_after:
                delay = max(delay, exc.retry_after / rt.settings.time_factor)
        return _poll_later(rt, iid, now + delay)
    except PermanentProviderError as exc:
        cls = failure_class(exc)
        if cls is not None and cls.pauses:  # the key, not the task: it may run and bill
            accounts.note_failure(rt, item.account, cls, f"{exc.code}: {exc.message}")
            return _poll_later(rt, iid, now + next_poll_delay(polls, None, rt.settings))
        return finish(rt, iid, [SUBMITTED], ItemState.FAILED, exc.code, exc.message)
    accounts.note_success(rt, item.account)
    hints.compare(rt, item, result)  # a callback woke it: did it tell the truth?
    return apply_poll(rt, item, iid, result, polls)


def _poll_later(rt: Runtime, iid: str, due: float) -> str:
    """This poll told nothing about the task: ask again at `due`."""
    rt.store.items.transition(iid, [SUBMITTED], SUBMITTED, timer=due,
                              fields={"poll_due": due}, incr={"polls": 1, "poll_errors": 1})
    return "retry"


def apply_poll(rt: Runtime, item: Item, iid: str, result: PollResult,
               polls: int, *, pushed: bool = False, listed: bool = False) -> str:
    """Move a `submitted` item on what its provider reports: a poll's answer, the same
    report pushed by a webhook callback (`pushed`, from genbatch.webhooks.receiver), or read
    off the account's task list (`listed`, worker/list_poll.py: it ended a moment ago)."""
    now = rt.now()
    seen = {"callbacks" if pushed else "polls": 1}
    if result.status is TaskStatus.SUCCEEDED:
        if not result.video_url:
            return finish(rt, iid, [SUBMITTED], ItemState.FAILED, "no_output",
                           "the provider reported success without a video URL")
        cost = _cost(rt, item, result)
        moved = rt.store.items.transition(  # downloads have their own short lease (download.py)
            iid, [SUBMITTED], DOWNLOADING, timer=now + rt.settings.download_lease_s,
            fields={**url_fields(rt.settings, now, item.provider, result),
                    "seed": "" if result.seed is None else result.seed,
                    "cost": "" if cost is None else repr(cost), "generated_at": now},
            incr=seen,
        )
        if moved.applied:  # the freed slot's next submit first: the slot idles until it
            refill(rt, item.provider, item.account)
            rt.enqueue("download", iid)
            metrics.record_generation(rt.store, item, now)
            _learn_gen_time(rt, item, now, polls, pushed or listed, result.run_s)
        return ItemState.DOWNLOADING if moved.applied else "skipped"
    if result.status in TERMINAL_TASK_STATE:
        return finish(rt, iid, [SUBMITTED], TERMINAL_TASK_STATE[result.status],
                       result.error_code or result.status.value,
                       result.error_message or f"the provider reports {result.raw_status}")
    delay, learned = _next_poll(rt, item, result, polls, now)
    if item.webhook or item.list_polled:
        delay = max(delay, safety_poll_delay(rt.settings))
    rt.store.items.transition(
        iid, [SUBMITTED], SUBMITTED, timer=now + delay,
        fields={"remote_status": result.raw_status, "polled_at": now, "poll_due": now + delay,
                "progress": "" if result.progress is None else result.progress, **learned},
        incr=seen,
    )
    return "running"


def _next_poll(rt: Runtime, item: Item, result: PollResult, polls: int,
               now: float) -> tuple[float, dict[str, str | float]]:
    """Seconds (scaled) to the next poll of a task still queued or running, and the item
    fields that change. A task submitted before its model's time was learned is polled by
    its age until a time is learned (the first of its wave seen done), then by that time:
    not before `EARLY` (`EARLY_QUEUED`) x it after its submit."""
    tf = rt.settings.time_factor
    age = now - (item.submitted_at or now)
    eta = result.eta_s or progress_eta_s(item.progress, item.polled_at, result.progress, now,
                                         rt.settings)
    typical = item.typical_s or 0.0
    fields: dict[str, str | float] = {}
    if item.learning and not eta:
        learned = rt.store.gen_times.typical(item.provider, _gen_key(item.model, item.tier))
        if learned is None:
            return learning_poll_delay(age * tf, rt.settings), {}
        typical, fields = learned, {"typical_s": round(learned, 1), "learning": ""}
    if result.status is TaskStatus.QUEUED and typical and not result.eta_s:
        delay = queued_poll_delay(typical, rt.settings)  # not started yet
    else:
        draining = polls > REPOLLS_BEFORE_BACKOFF and not rt.store.queues.has_queued(
            item.provider)  # asked only where the backoff would start
        delay = next_poll_delay(1 if fields else polls, eta, rt.settings, typical_s=typical,
                                age_s=age * tf, draining=draining)
    if fields:
        delay = max(delay, _early(rt, item) * typical / tf - age)
    return delay, fields


def _early(rt: Runtime, item: Item) -> float:
    """The share of the learned time at which a task is first polled (polling.EARLY)."""
    queues_ahead = rt.account_settings(item.account, item.provider).queue_ahead_max > 0
    return EARLY_QUEUED if queues_ahead else EARLY


def _queue_wait(rt: Runtime, item: Item, typical_s: float) -> float:
    """How long (scaled) the task will likely queue at its provider before it starts: on an
    account whose in-flight cap runs ahead of its concurrency (queue_ahead.py), else 0."""
    account = rt.account_settings(item.account, item.provider)
    if account.queue_ahead_max <= 0:
        return 0.0
    wait = queue_wait_s(rt.store.queues.in_flight(item.account), account.max_in_flight,
                        typical_s, rt.settings)
    return wait / rt.settings.time_factor


def _queues_behind(rt: Runtime, item: Item) -> bool:
    """Whether the task waits at its provider behind the account's running ones (more in
    flight than the concurrency, on an account that queues ahead)."""
    account = rt.account_settings(item.account, item.provider)
    return account.queue_ahead_max > 0 and \
        rt.store.queues.in_flight(item.account) > account.max_in_flight


def _gen_key(model: str, tier: str | None) -> str:
    """Generation times are learned per model and tier: a flex task may queue for hours."""
    return f"{model}@flex" if tier == "flex" else model


def _learn_gen_time(rt: Runtime, item: Item, now: float, polls: int,
                    pushed: bool = False, run_s: float | None = None) -> None:
    """Feed the model's running mean of generation time: the provider's own run time when
    it states one (WaveSpeed: without the time the task queued); else estimate when the
    generation finished: between the last 'still running' poll and this one; when the first
    poll already found it done, a little before it (so the estimate can move down as well
    as up). A webhook callback comes when it finished; a safety poll of a webhook item says
    too little."""
    if item.submitted_at is None or item.dl_attempts:
        return  # a re-poll for a fresh URL says nothing about generation time
    tier = item.tier
    if run_s:
        rt.store.gen_times.observe(item.provider, _gen_key(item.model, tier), run_s)
        return
    submitted = item.submitted_at
    if pushed:
        done_at = now
    elif item.webhook or item.list_polled:
        return  # a safety poll, long after the end: a callback or the list saw it late
    elif polls > 1 and item.polled_at is not None:
        done_at = (item.polled_at + now) / 2
    else:  # measured from when the poll was due, so queueing delays do not inflate it
        done_at = submitted + item.queue_wait_s + 0.85 * (
            (item.first_poll_s or now - submitted) - item.queue_wait_s)
    # A task that waited at its provider (queued ahead, e.g. THROTTLED at Runway) did not
    # generate meanwhile: the expected wait is not generation time (a provider stating its
    # run time, WaveSpeed, needs no estimate).
    seconds = (done_at - submitted - item.queue_wait_s) * rt.settings.time_factor
    if seconds > 0 and not _above_estimate(rt, item, seconds):
        rt.store.gen_times.observe(item.provider, _gen_key(item.model, tier), seconds)


def _above_estimate(rt: Runtime, item: Item, seconds: float) -> bool:
    """A task submitted before any time was learned, behind the account's running tasks,
    waited at its provider for an unknown time (THROTTLED at Runway: a generation or more),
    so its span is only an upper bound of its generation: it says something only when it is
    below the current estimate. Learned as it was, it inflated Runway's first estimates by
    half (41 s, then 27 s for 20 s generations), the next waves were polled late and
    Runway's queue ran dry (docs/performance.md)."""
    if not item.wait_unknown:
        return False
    learned = rt.store.gen_times.typical(item.provider, _gen_key(item.model, item.tier))
    return seconds >= (learned or item.typical_s or 0.0)


def _outcome_known(rt: Runtime, item: Item, listed: bool) -> None:
    if listed:
        rt.store.reconcile.mark_known(item.account, item.id)


def _not_created(rt: Runtime, item: Item, iid: str, exc: RetryableProviderError,
                 allowed: ItemState = SUBMITTING) -> str:
    """The provider provably created nothing: back to the head of the queue, no failure;
    the account rests (longer after each connect error in a row) and its health counts it."""
    if isinstance(exc, RateLimited):
        metrics.record_429(rt.store, item.account, "submit", item.batch_id)
    health = _count_failure(rt, item.account, exc)
    rest_s = accounts.backoff_s(rt, exc, health)
    if accounts.requeue(rt, item, iid, [allowed], f"{exc.code}: {exc.message}", rest_s,
                        slot_rest=isinstance(exc, SlotFull)) == "requeued" \
            and isinstance(exc, RateLimited):
        slow_down(rt, item.account, "submit")
    return "requeued"


def _count_failure(rt: Runtime, account: str, exc: ProviderError) -> AccountHealth | None:
    """Count a failure in the account's health when it says something about the account."""
    cls = failure_class(exc)
    return accounts.note_failure(rt, account, cls, f"{exc.code}: {exc.message}") if cls \
        else None


def slow_down(rt: Runtime, account: str, kind: str) -> float:
    """AIMD: a 429 cuts the account's `kind` rate (at most once per 10 s); it grows back
    linearly over GENBATCH_AIMD_RECOVER_S. Returns the new share of the configured rate."""
    s = rt.settings
    factor = rt.store.limits.decrease(
        account, kind, rt.now(), beta=s.aimd_decrease, min_factor=s.aimd_min_factor,
        hold=10.0 / s.time_factor, recover_s=s.aimd_recover_s / s.time_factor)
    log.info("429 from account %s (%s): rate now %.0f%% of the configured limit",
             account, kind, factor * 100)
    return factor


def finish(rt: Runtime, iid: str, allowed: Sequence[ItemState], state: ItemState, code: str,
           message: str, fields: dict[str, Any] | None = None,
           incr: dict[str, int] | None = None) -> str:
    """Move an item from one of the `allowed` states to the terminal `state` (`fields` set
    and `incr` counted in the same step); finalize its batch when it was the last open
    one."""
    if state is ItemState.FAILED:  # or on to the batch's --fallback (failover.py)
        outcome = failover.fail_over(rt, iid, allowed, code, message)
        if outcome.moved == "failed_over":  # a slot freed at the origin, work for the fallback
            refill(rt, outcome.origin)
            refill(rt, outcome.target)
        if outcome.moved:
            return outcome.moved
        message = outcome.message
    values: dict[str, Any] = {"finished_at": rt.now(), "error_code": code,
                              "error_message": message[:2000]}
    values.update(fields or {})
    children = rt.store.items.children(iid)  # a chain's parent (chains.py); mostly none
    if state is ItemState.SUCCEEDED and children:
        chains.arm(rt, iid, children)  # the safety net of the `chain` message sent below
    moved = rt.store.items.transition(iid, allowed, state, timer="-", fields=values,
                                      incr=incr)
    if moved.applied:
        metrics.record_completion(rt.store, iid, state)
        if state is ItemState.AMBIGUOUS:
            reconcile.schedule(rt, iid, moved.provider)
        chains.ended(rt, iid, state, children)  # release or end a parent's children
    if moved.applied and moved.open_items == 0:
        rt.enqueue("finalize", iid.rsplit(":", 1)[0])
    if moved.applied and moved.previous in IN_FLIGHT_STATES:
        refill(rt, moved.provider, moved.account)
    return state if moved.applied else "skipped"


def _cost(rt: Runtime, item: Item, result: PollResult) -> float | None:
    try:
        return providers.actual_cost(item.provider, item.model, item.request, result)
    except (GenbatchError, ValueError):
        return item.est_cost


# A batch's outputs are written by one worker at a time, under a lease renewed while it
# writes: a finalize lost with a killed worker is redone by the scheduler's sweep within it.
FINALIZE_LEASE_S = 30.0


def finalize_lease(batch_id: str) -> str:
    """The name of the lock a batch's finalize holds while it writes."""
    return f"finalize:{batch_id}"


def finalize_batch(rt: Runtime, batch_id: str) -> str:
    """in_progress → finalizing → completed, writing the output manifests once no item is
    open. Safe to repeat: a crash while finalizing is redone by the next finalize."""
    batch = rt.store.batches.get(batch_id)
    if batch.status not in (IN_PROGRESS, FINALIZING) or batch.open_items:
        return "skipped"
    if rt.store.reconcile.holding(batch_id) and not batch.cancel_requested:
        return "skipped"  # ambiguous items that may still settle (worker/settling.py)
    with lease(rt, finalize_lease(batch_id), FINALIZE_LEASE_S) as held:
        # one writer at a time: a finalize sent again (the scheduler's sweep, a second last
        # item) while one writes finds it held and leaves it be
        return _finalize(rt, batch) if held else "skipped"


def _finalize(rt: Runtime, batch: Batch) -> str:
    from genbatch.worker.finalize import write_outputs  # only the control queue needs it
    from genbatch.worker.joins import join_chains

    batch_id = batch.id
    ok, _ = rt.store.batches.cas(batch_id, [IN_PROGRESS, FINALIZING], FINALIZING)
    if not ok:
        return "skipped"
    files = write_outputs(rt.output_storage(batch_id), batch_id,
                          rt.store.items.of_batch(batch_id, batch.total),
                          presign_s=rt.settings.presign_results_s,
                          reviews=rt.store.reviews.all(batch_id))
    if batch.get("join_chains"):  # submit --join-chains (worker/joins.py)
        chained = join_chains(rt.output_storage(batch_id), batch_id,
                              rt.store.items.of_batch(batch_id, batch.total))
        if chained:
            rt.store.batches.set_fields(batch_id, {"chains_jsonl": chained})
    final = BatchStatus.CANCELLED if batch.cancel_requested else BatchStatus.COMPLETED
    notify.arm(rt, batch)  # before the batch is final: a crash after it still notifies
    done, _ = rt.store.batches.cas(batch_id, [FINALIZING], final, {
        "finished_at": repr(rt.now()), "results_jsonl": files.results_jsonl,
        "results_csv": files.results_csv, "errors_jsonl": files.errors_jsonl,
    })
    rt.store.batches.deactivate(batch_id)
    if done and batch.notify_url:
        rt.enqueue("notify", batch_id)
    return final
