"""After a Redis restart or failover that could have lost writes: find the items whose
submit may have been lost, before more work is dispatched.

The scheduler notes the server every tick (`watch`): its run id, and the guard its submit
records have (`worker/durable.py`). A new run id is a restart (or a failover: the same event
for this purpose); `store/restarts.py` records it once and fences dispatch until `recover`
has run:

- The old server's guard covered its submit records (`appendfsync always`, WAITAOF, or
  `everysec` with the worker's wait and read-back): a record it lost belongs to a POST that
  was never sent. Nothing can have been paid twice. Submits whose outcome was lost are back
  in `submitting`; their lease turns them `ambiguous`, and reconciliation adopts their
  tasks from the task list (WaveSpeed, BytePlus) or leaves them ambiguous (Novita).
- It did not (no append-only file, `appendfsync no`, a setting not readable, no wait): any
  item still before `submitted` — or whose submit started after the last scheduler beat
  that survived — may have a paid task genbatch forgot, and its next submit pays again. On
  an account with a task list, the tasks created since that beat are listed: when every one
  is owned by an item, nothing was lost there. Every other such item is flagged
  `possibly_paid_twice` (status, the batch page, results and errors.jsonl).

Recovery reads every open item of the active batches: a restart is rare, and dispatch
waits for it to finish.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from genbatch import providers
from genbatch.errors import GenbatchError, ProviderError
from genbatch.models import ItemState
from genbatch.records import Item
from genbatch.store import Restart
from genbatch.worker import durable
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)
BEFORE_SUBMIT = (ItemState.PENDING, ItemState.DISPATCHED)
FLAG = "possibly_paid_twice"


def watch(rt: Runtime) -> Restart | None:
    """Note the Redis server and its guard; recover from a restart not yet recovered from.
    Returns that restart (None when there was none to recover from)."""
    d = rt.store.server.durability()
    g = durable.guard(d, rt.settings)
    seen = rt.store.restarts.observe(d.run_id, rt.now(), g.value, g.covers,
                                     durable.describe(d, g, rt.settings),
                                     promoted=rt.store.server.promoted())
    if seen is not None:
        log.warning("Redis restarted (run id changed; its submit records were %s): "
                    "recovering before more work is dispatched",
                    "guarded" if seen.covers else "NOT guarded")
    last = rt.store.restarts.last()
    if last is not None and last.state == "recovering":
        recover(rt, last)
    rt.store.restarts.beat(rt.now())
    return last if last is not None and last.state == "recovering" else None


def recover(rt: Runtime, restart: Restart) -> tuple[int, int]:
    """Flag the items whose submit the restart could have lost (see the module docstring);
    lift the dispatch fence. Returns (items flagged, unowned tasks found)."""
    flagged = unowned = 0
    if not restart.covers:
        by_account: dict[str, list[Item]] = defaultdict(list)
        for item in _open_items(rt):
            if _could_be_lost(item, restart):
                by_account[item.account].append(item)
        for account, items in sorted(by_account.items()):
            lost = _unowned(rt, account, items, restart)
            unowned += max(lost, 0)
            if lost != 0:
                flagged += _flag(rt, items, restart)
    rt.store.restarts.recovered(restart.epoch, flagged, unowned)
    log.warning("recovered from Redis restart %d: %d items flagged possibly paid twice, "
                "%d unowned tasks", restart.epoch, flagged, unowned)
    return flagged, unowned


def _open_items(rt: Runtime) -> list[Item]:
    found: list[Item] = []
    for batch in rt.store.batches.get_many(rt.store.batches.active()):
        found += [it for it in rt.store.items.of_batch(batch.id, batch.total)
                  if it.state is not None and not it.state.terminal and it.provider]
    return found


def _could_be_lost(item: Item, restart: Restart) -> bool:
    """Could a submit of this item have been sent and its record lost?"""
    if item.state in BEFORE_SUBMIT:
        return True
    started = item.submit_started_at
    return restart.lost_from is not None and started is not None and \
        started >= restart.lost_from


def _unowned(rt: Runtime, account: str, items: list[Item], restart: Restart) -> int:
    """How many tasks the account created since the lost writes began that no item owns:
    0 proves nothing was lost there; -1 when the provider has no list (or it could not be
    read) and nothing can be proven."""
    provider = items[0].provider
    if not providers.can_list(provider) or restart.lost_from is None:
        return -1
    since = restart.lost_from - rt.settings.reconcile_margin_s
    kinds = {(it.model, it.request.resolution or ""): it for it in items if it.has_request}
    tasks = []
    try:
        for it in kinds.values():
            tasks += rt.provider(account).list_tasks(it.model, it.request, since=since).tasks
    except (ProviderError, GenbatchError, ValueError, NotImplementedError) as exc:
        log.warning("%s: the task list could not be read after the restart (%s)", account,
                    exc)
        return -1
    owners = rt.store.reconcile.owners(account, [(t.id, t.created_at) for t in tasks])
    return len({t.id for t in tasks if t.id not in owners})


def _flag(rt: Runtime, items: list[Item], restart: Restart) -> int:
    """Mark each item `possibly_paid_twice` (once; its batch counts it)."""
    why = (f"Redis restart {restart.epoch} may have lost a submit of this item (no durable "
           "submit record): it may be paid twice")
    n = 0
    for item in items:
        for _ in range(3):  # a poll may move it meanwhile: read it again
            if item.possibly_paid_twice or item.state is None:
                break
            if rt.store.items.transition(item.id, [item.state], item.state, fields={FLAG: why},
                                         incr={f"batch:{FLAG}": 1}).applied:
                n += 1
                break
            item = rt.store.items.get(item.id)
    return n
