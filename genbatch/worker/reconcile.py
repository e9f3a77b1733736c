"""Reconciliation: did an ambiguous submit create a task? Ask the provider's task list.

A submit whose answer was lost (a read timeout, a dropped connection, a 5xx after sending)
ends `ambiguous`: the task may exist and be billed. On providers with a task list (WaveSpeed,
BytePlus) the item is looked at again once the list has caught up (GENBATCH_RECONCILE_SETTLE_S):

- list the account's tasks of the item's model created in the submit's window (from when the
  submit started to when it ended, GENBATCH_RECONCILE_MARGIN_S wider on each side) — with
  the row's seed, where the list shows seeds (BytePlus) and the row set one;
- leave out tasks another item owns (`store/reconcile.py` records each task's owner before
  the item is marked submitted);
- exactly one candidate: **adopt** it — the item becomes `submitted` with that task, its polls
  go on, its history says so, and its cost counts once;
- no candidate, and the list provably covers the window — the pages went back past the
  window's start or ran out, and the list was read at least the settle time after the
  submit ended: nothing was created; the item goes back to `pending` to be submitted again,
  automatically, once;
- otherwise (several candidates, a list that failed or was cut short): the item stays
  `ambiguous`, its message naming the candidates, and is looked at again every
  GENBATCH_RECONCILE_EVERY_S until GENBATCH_RECONCILE_DEADLINE_S after its submit.

Novita and HighwayAPI document no task list: their ambiguous items stay ambiguous unless
their attempt's callback names the task (worker/hints.py). A list call takes a grant of the
account's poll budget and never polls a task. The batch waits for its ambiguous items until
they settle or their reconciliation window closes; a task found after that is recorded, not
adopted (worker/settling.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from genbatch import providers
from genbatch.errors import GenbatchError, ProviderError
from genbatch.models import ItemState
from genbatch.providers.base import RemoteTask, TaskListing
from genbatch.records import Item
from genbatch.store.batches import SUBMITS, host_count
from genbatch.store.history import attempt_reset
from genbatch.store.limits import rates_for
from genbatch.worker import chains, settling
from genbatch.worker.polling import deadline_s
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)
AMBIGUOUS = ItemState.AMBIGUOUS
# A submit whose outcome is not known: ambiguous, or its POST still on the way.
UNKNOWN = (ItemState.AMBIGUOUS, ItemState.SUBMITTING)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a look at one ambiguous item did: `adopted`, `resubmitted`, `left` (still
    ambiguous, with why), `later` (not yet: settling, no poll budget) or `skipped`."""

    outcome: str
    detail: str = ""


def schedule(rt: Runtime, iid: str, provider: str) -> None:
    """An item just became ambiguous: look at it once the provider's list has settled, or
    (no list, a callback URL sent) when its window closes. Its batch waits until then."""
    if not provider:
        return
    item = rt.store.items.get(iid)
    if _settles(provider):
        started, _ = _window(item)
        rt.store.reconcile.mark_unknown(item.account, iid, started)
        rt.store.reconcile.schedule(iid, rt.now() + _settle(rt), hold=True)
    elif settling.by_callback(rt, item):
        rt.store.reconcile.schedule(iid, settling.window_end(rt, item), hold=True)
    else:
        return
    if rt.store.items.get(iid).state is not AMBIGUOUS:  # adopted meanwhile (a fast callback)
        rt.store.reconcile.unschedule(iid)


def reconcile_item(rt: Runtime, iid: str, *, on_demand: bool = False) -> Verdict:
    """Look for the task of ambiguous item `iid` (see the module docstring). `on_demand`
    (`genbatch reconcile`) skips the settle wait, the deadline and the poll budget."""
    item = rt.store.items.get(iid)
    if item.state is not AMBIGUOUS:
        rt.store.reconcile.unschedule(iid)
        return Verdict("skipped", f"the item is {item.state}")
    now = rt.now()
    if not _settles(item.provider):
        return _unlisted(rt, item, now, on_demand=on_demand)
    started, ended = _window(item)
    if not on_demand:
        if now < ended + _settle(rt):
            rt.store.reconcile.schedule(iid, ended + _settle(rt))
            return Verdict("later", "settling")
        if not _poll_grant(rt, item.account, item.provider, now):
            rt.store.reconcile.schedule(iid, now + 1.0 / rt.settings.time_factor)
            return Verdict("later", "no poll budget")
    if providers.can_lookup(item.provider):
        return _by_reference(rt, item, now, explicit=on_demand)
    margin = rt.settings.reconcile_margin_s
    try:
        listing = rt.provider(item.account).list_tasks(item.model, item.request,
                                                        since=started - margin)
    except (ProviderError, GenbatchError, ValueError) as exc:
        return _leave(rt, item, f"the task list could not be read ({exc})", now)
    candidates = _candidates(rt, item, listing, started - margin, ended + margin)
    covered = listing.complete and now >= ended + _settle(rt)
    rivals = _rivals(rt, item, started - 2 * margin - _longest(rt), ended + 2 * margin,
                     by_seed=len(candidates) == 1 and candidates[0].seed is not None)
    if len(candidates) == 1 and rivals:
        return _leave(rt, item, f"task {candidates[0].id} could also be that of "
                      + ", ".join(rivals[:5]) + " (submits of unknown outcome at the same time)",
                      now)
    if len(candidates) == 1:
        return adopt(rt, item, candidates[0].id, now, explicit=on_demand,
                     note=f"adopted task {candidates[0].id} from the task list")
    if not candidates and covered:
        return _resubmit(rt, item, now)
    why = (f"{len(candidates)} unowned tasks of this model in the submit's window: "
           + ", ".join(t.id for t in candidates[:10])) if candidates else \
        "the task list does not yet cover the submit's window"
    return _leave(rt, item, why, now)


def _settles(provider: str) -> bool:
    return settling.by_listing(provider)


def _unlisted(rt: Runtime, item: Item, now: float, *, on_demand: bool) -> Verdict:
    """An item on a provider without a task list: only its attempt's callback can settle
    it, so its batch waits for that until the window closes."""
    why = f"{item.provider} documents no task list"
    if on_demand:
        return Verdict("left", why)
    if settling.by_callback(rt, item) and now < settling.window_end(rt, item):
        rt.store.reconcile.schedule(item.id, settling.window_end(rt, item))
        return Verdict("later", "waiting for its attempt's callback")
    settling.close(rt, item, now)
    return Verdict("left", why)


def _by_reference(rt: Runtime, item: Item, now: float, *, explicit: bool) -> Verdict:
    """Ask for the task the submit named with our attempt id (Capability.LOOKUP, Kling's
    external_task_id): found, it is adopted; provably absent once settled, resubmitted."""
    ref = item.client_ref
    if not ref:
        return _leave(rt, item, "its submit carried no client task id", now, final=True)
    try:
        task = rt.provider(item.account).lookup(item.model, ref)
    except (ProviderError, GenbatchError, NotImplementedError) as exc:
        return _leave(rt, item, f"the lookup of {ref} failed ({exc})", now)
    if task:
        return adopt(rt, item, task, now, explicit=explicit,
                     note=f"adopted task {task} by its client id {ref}")
    if now < _window(item)[1] + _settle(rt):
        return _leave(rt, item, f"no task {ref} yet (the provider may not have caught up)",
                      now)
    return _resubmit(rt, item, now)


def _window(item: Item) -> tuple[float, float]:
    started = item.submit_started_at or item.finished_at or 0.0
    ended = item.finished_at or started
    return started, max(started, ended)


def _settle(rt: Runtime) -> float:
    return rt.settings.reconcile_settle_s / rt.settings.time_factor


def _longest(rt: Runtime) -> float:
    """How long a submit may take (its read timeout): windows this far apart can overlap."""
    return rt.settings.submit_timeout_s + rt.settings.connect_timeout_s


def _rivals(rt: Runtime, item: Item, start: float, end: float, *,
            by_seed: bool) -> list[str]:
    """Other items of the same account and model whose submit outcome is unknown —
    ambiguous, or still submitting — and whose window overlaps this one: a lone candidate
    could be theirs. With `by_seed` (the list shows the candidate's seed, and it is this
    row's), only rivals with the same seed or none count."""
    others = [iid for iid in rt.store.reconcile.unknown_between(item.account, start, end)
              if iid != item.id]
    rivals = []
    for iid in others:
        try:
            other = rt.store.items.get(iid)
        except GenbatchError:
            continue
        if other.state in UNKNOWN and other.model == item.model and (
                not by_seed or item.request.seed is None
                or other.request.seed in (None, item.request.seed)):
            rivals.append(iid)
    return rivals


def _poll_grant(rt: Runtime, account: str, provider: str, now: float) -> bool:
    granted, _ = rt.store.limits.take(account, "poll", 1, rates_for(
        rt.settings, rt.account_settings(account, provider))["poll"], now)
    return granted > 0


def _candidates(rt: Runtime, item: Item, listing: TaskListing, start: float,
                end: float) -> list[RemoteTask]:
    """Tasks created in [start, end] that no other item owns (and, where the list shows
    seeds and the row set one, with the row's seed)."""
    seed = item.request.seed
    inside = [t for t in listing.tasks if start <= t.created_at <= end
              and (seed is None or t.seed is None or t.seed == seed)]
    owners = rt.store.reconcile.owners(item.account, [(t.id, t.created_at) for t in inside])
    return [t for t in inside if owners.get(t.id, item.id) == item.id]


def adopt(rt: Runtime, item: Item, task_id: str, now: float, *, note: str,
          explicit: bool = False) -> Verdict:
    """The item's task exists: the item is `submitted` with it again (from the task list, or
    confirmed after its attempt's callback: worker/hints.py). Its estimate, counted as spent
    when it turned ambiguous, is reserved again, so the cost counts once. After the item's
    reconciliation window closed, only an `explicit` adoption (`genbatch reconcile`) does
    that, reopening its batch; any other is recorded ("late", worker/settling.py)."""
    if not explicit and settling.closed(rt, item):
        return Verdict(settling.record_late(rt, item, task_id, now, note), task_id)
    rt.store.reconcile.own(item.account, task_id, item.id, now)
    held = _micro(item.est_cost)
    history = _history(item, note)
    rt.store.batches.reopen(item.batch_id)
    moved = rt.store.items.transition(
        item.id, [AMBIGUOUS], ItemState.SUBMITTED, timer=now,
        fields={"remote_id": task_id, "submitted_at": now, "adopted": task_id,
                "deadline": now + deadline_s(item.request, rt.settings), "error_code": "",
                "error_message": "", "finished_at": "", "reserved_micro": held,
                "history": history},
        incr={"batch:spent_micro": -held, "batch:spent_est_micro": -held,
              "batch:reserved_micro": held, "batch:adopted": 1,
              # its submit counts now, for the host that sent it
              host_count(SUBMITS, item.submit_host or rt.host): 1})
    rt.store.reconcile.unschedule(item.id)
    rt.store.reconcile.mark_known(item.account, item.id)
    if moved.applied:
        log.info("item %s: adopted task %s of %s", item.id, task_id, item.account)
        chains.reopen_children(rt, item)  # they ended parent_failed when it went ambiguous
    return Verdict("adopted" if moved.applied else "skipped", task_id)


def _resubmit(rt: Runtime, item: Item, now: float) -> Verdict:
    """Nothing was created: back to pending, once."""
    if item.reconciled == "resubmitted":
        return _leave(rt, item, "no task found again after one automatic resubmit", now,
                      final=True)
    held = _micro(item.est_cost)
    fields = dict(attempt_reset(item))
    fields.update(reconciled="resubmitted", error_code="", error_message="")
    rt.store.batches.reopen(item.batch_id)
    moved = rt.store.items.transition(
        item.id, [AMBIGUOUS], ItemState.PENDING, timer="-", fields=fields, queue="front",
        incr={"batch:spent_micro": -held, "batch:spent_est_micro": -held,
              "batch:reconciled_resubmits": 1})
    rt.store.reconcile.unschedule(item.id)
    rt.store.reconcile.mark_known(item.account, item.id)
    if moved.applied:
        chains.reopen_children(rt, item)
    return Verdict("resubmitted" if moved.applied else "skipped")


def _leave(rt: Runtime, item: Item, why: str, now: float, final: bool = False) -> Verdict:
    """Still ambiguous: say why in its message; look again later, until its window closes
    (its batch waits until then); `final`: no later look can tell more."""
    end = settling.window_end(rt, item)
    again = now + rt.settings.reconcile_every_s / rt.settings.time_factor
    message = f"submit outcome unknown; reconciliation: {why}"
    rt.store.items.set_fields({item.id: {"error_message": message[:2000]}})
    if final or now >= end:
        settling.close(rt, item, now)
    else:
        rt.store.reconcile.schedule(item.id, min(again, end))
    return Verdict("left", why)


def _history(item: Item, note: str) -> str:
    past = item.history
    past.append({"state": AMBIGUOUS.value, "error_code": item.error_code,
                 "error_message": item.error_message, "note": note,
                 "submitted_at": None if item.submit_started_at is None
                 else repr(item.submit_started_at)})
    return json.dumps(past)


def _micro(usd: float | None) -> int:
    return int((usd or 0.0) * 1_000_000 + 0.5)  # as the Lua scripts round (store/lua)
