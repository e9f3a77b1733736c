"""A callback is a hint; the provider's answer is the truth (docs/design.md, principle 9).

Anyone who learns a callback URL can post to it, so a callback whose signature is not
verified under the provider's scheme changes nothing by itself:

- on a `submitted` item naming the item's task, a claim that the task finished only
  **wakes** the item: the claim is noted (`cb_status`) and the item's poll is made due now
  (news of progress changes nothing); the poll (one GET by task id
  with the account's key, within the account's poll budget) moves it. When the provider's
  answer contradicts the claim, that is counted (`genbatch_callback_disagreements`) and
  logged, and the answer wins;
- on an `ambiguous` item, a callback on the URL of the very attempt that went ambiguous
  proves whose task it is (each attempt has its own URL: worker/callbacks.py). Its task id
  is noted (`cb_task`) and a worker asks the provider for that task: when it exists the
  item adopts it, exactly as reconciliation adopts a listed task; when the provider does
  not know it, nothing changes and the disagreement is counted.
"""

from __future__ import annotations

import logging

from genbatch import metrics
from genbatch.errors import ConfigError, PermanentProviderError, RetryableProviderError
from genbatch.models import ItemState, PollResult, TaskStatus
from genbatch.records import Item
from genbatch.worker import reconcile
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)
HINT_FIELDS = {"cb_status": "", "cb_task": "", "cb_attempt": ""}


def wake(rt: Runtime, item: Item, claimed: PollResult) -> str:
    """A submitted item's unverified callback: when it claims the task finished, note the
    claim and poll the item now ("woken"); news of progress changes nothing ("noted")."""
    if not claimed.status.terminal:
        return "noted"
    rt.store.items.set_fields({item.id: {"cb_status": claimed.status.value}})
    rt.store.items.set_timer(item.id, rt.now())
    return "woken"


def compare(rt: Runtime, item: Item, answer: PollResult) -> None:
    """After a poll of an item a callback woke: count and log a claim the answer
    contradicts (a finished status the provider does not report)."""
    if not item.cb_status:
        return
    rt.store.items.set_fields({item.id: {"cb_status": ""}})
    try:
        claimed = TaskStatus(item.cb_status)
    except ValueError:
        return
    if not claimed.terminal or claimed is answer.status:
        return
    disagree(rt, item, f"a callback said {claimed.value}, the provider says "
                       f"{answer.status.value}")


def hold_for_adoption(rt: Runtime, item: Item, attempt: int, task_id: str) -> str:
    """An ambiguous item's callback on its last attempt's URL: have a worker confirm it."""
    if attempt != item.attempts:
        return "stale"
    rt.store.items.set_fields({item.id: {"cb_task": task_id, "cb_attempt": str(attempt)}})
    rt.enqueue("adopt", item.id)
    return "confirming"


def adopt(rt: Runtime, iid: str) -> str:
    """Ask the provider for the task a callback named; adopt it when it exists."""
    item = rt.store.items.get(iid)
    if item.state is not ItemState.AMBIGUOUS or not item.cb_task \
            or item.cb_attempt != item.attempts:
        return "skipped"
    try:
        rt.provider(item.account).poll(item.model, item.cb_task)
    except (ConfigError, RetryableProviderError) as exc:  # ask again at the next callback
        log.warning("item %s: could not confirm task %s yet: %s", iid, item.cb_task[:80], exc)
        return "later"
    except PermanentProviderError as exc:
        rt.store.items.set_fields({iid: HINT_FIELDS})
        disagree(rt, item, f"a callback named task {item.cb_task[:80]}, which the provider "
                           f"does not know ({exc.code})")
        return "refused"
    verdict = reconcile.adopt(rt, item, item.cb_task, rt.now(),
                              note=f"adopted task {item.cb_task} from its attempt's callback")
    rt.store.items.set_fields({iid: HINT_FIELDS})
    return verdict.outcome


def disagree(rt: Runtime, item: Item, why: str) -> None:
    """A callback the provider's own answer contradicts: counted, logged, and nothing else."""
    metrics.count(rt.store, "callback_disagreements", item.provider)
    log.warning("item %s: callback not confirmed by %s: %s", item.id, item.provider, why)
