"""Redo: a batch's rejected videos generated again, with a new seed, in the same batch.

A rejected item goes back to `pending` as a new attempt of the same item (the path `genbatch
retry` takes, store/history.py): the dispatcher reserves its estimate against the batch's
budget and submits it once. Before that, its current take is kept: the video is copied to
`<batch>/takes/<name>.take<N>.mp4` and the take (that copy, its seed, task id, cost,
checksum) is appended to the item's history, so the output manifests still show it. The
batch reopens while the redo runs and finishes again with its manifests rewritten.

Each rejected item is claimed by deleting its `rejected` mark (store/review.py) before
anything else happens: two redos at once, or a redo clicked twice, resubmit it once. A
redone item is not reviewed until someone looks at its new take.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

from genbatch import providers
from genbatch.errors import ConfigError, GenbatchError, StorageError
from genbatch.models import BatchStatus, ItemState, Review
from genbatch.records import Batch, Item
from genbatch.storage import ObjectStorage, StoredObject, object_key
from genbatch.storage.keys import safe_name
from genbatch.store import JobStore, budget
from genbatch.store.history import attempt_reset

SEED_MAX = 2**31 - 1  # every provider takes a seed this large


@dataclass
class RedoReport:
    redone: list[str] = field(default_factory=list)  # custom_ids queued again
    skipped: list[str] = field(default_factory=list)  # rejected but not succeeded now
    estimate_usd: float = 0.0  # the estimate of what was queued


def take_key(item: Item, take: int) -> str:
    """Where take `take` of the item is kept once a newer one replaces it."""
    return f"{item.batch_id}/takes/{safe_name(item.custom_id)}.take{take}.mp4"


def redo_batch(store: JobStore, storage: ObjectStorage, batch_id: str) -> RedoReport:
    """Queue the batch's rejected items again (see the module docstring); `storage` is
    where the batch keeps its videos. Refused, with nothing changed, when the batch is
    still being validated or its budget has no room for the estimate of the redo."""
    batch = store.batches.get(batch_id)
    if batch.status is BatchStatus.VALIDATING:
        raise GenbatchError(f"batch {batch_id} never finished validating; nothing to redo")
    rejected = sorted(s for s, v in store.reviews.all(batch_id).items() if v is Review.REJECTED)
    found = store.pages.fetch(batch_id, rejected)
    todo = [i for i in found if i.state is ItemState.SUCCEEDED]
    report = RedoReport(skipped=[i.custom_id for i in found if i.state is not ItemState.SUCCEEDED])
    _check_budget(batch, todo)
    claimed = [i for i in todo if store.reviews.take_rejected(batch_id, i.seq)]  # else: taken
    kept = _keep_takes(store, storage, claimed)
    for item in claimed:
        # Reopened before each item is queued (a no-op once open), so the batch cannot be
        # finalized between the two and every redone item is in the finish it waits for.
        store.batches.reopen(batch_id)
        if _requeue(store, item, kept[item.seq]):
            report.redone.append(item.custom_id)
            report.estimate_usd += item.est_cost or 0.0
        else:
            store.reviews.mark(batch_id, [item.seq], Review.REJECTED)
    return report


def _check_budget(batch: Batch, items: list[Item]) -> None:
    money = budget.summary(batch)
    left = money["left_usd"]
    need = sum(i.est_cost or 0.0 for i in items)
    if left is not None and need > left + 1e-9:
        raise GenbatchError(
            f"redo of {len(items)} rejected items needs about ${need:.2f} and batch {batch.id} "
            f"has ${left:.2f} of its ${money['budget_usd']:.2f} budget left; raise it with "
            f"`genbatch retry {batch.id} --budget USD` first")


def _keep_takes(store: JobStore, storage: ObjectStorage,
                items: list[Item]) -> dict[int, StoredObject]:
    """Copy each item's video to its take key, all before any item is queued (copies take
    time; queueing does not). On a failure the claimed items are rejected again and nothing
    is queued."""
    kept: dict[int, StoredObject] = {}
    for item in items:
        try:
            kept[item.seq] = storage.put_stream(take_key(item, item.takes),
                                                _chunks(storage, item))
        except StorageError as exc:
            store.reviews.mark(item.batch_id, [i.seq for i in items], Review.REJECTED)
            raise GenbatchError(f"{item.custom_id}: cannot keep its take {item.takes} before "
                                f"the redo, nothing redone: {exc}") from None
    return kept


def _requeue(store: JobStore, item: Item, kept: StoredObject) -> bool:
    """succeeded → pending with a new seed, its take in the history, on its queue in the
    same step. False when the item left `succeeded` meanwhile."""
    fields = attempt_reset(item)
    history = json.loads(fields["history"])
    history[-1].update(take=item.takes, output_uri=kept.uri, sha256=item.get("sha256"),
                       seed=item.get("seed") or None, cost=item.get("cost") or None,
                       review=Review.REJECTED.value)
    request = json.loads(item.get("req") or "{}")
    request["seed"] = new_seed(item)
    fields.update(history=json.dumps(history), req=json.dumps(request),
                  takes=str(item.takes + 1), seed=str(request["seed"]))
    return store.items.transition(item.id, [ItemState.SUCCEEDED], ItemState.PENDING,
                                  timer="-", fields=fields, queue="back").applied


def _chunks(storage: ObjectStorage, item: Item) -> Iterator[bytes]:
    with storage.open_read(object_key(item.batch_id, item.custom_id)) as fh:
        while chunk := fh.read(1024 * 1024):
            yield chunk


def new_seed(item: Item) -> int:
    """A random seed the item's model accepts, other than the one it had."""
    try:
        upper = providers.get_spec(item.provider, item.model).seed_max or SEED_MAX
    except ConfigError:
        upper = SEED_MAX
    old = item.get("seed")
    while True:
        seed = secrets.randbelow(min(upper, SEED_MAX) + 1)
        if str(seed) != old:
            return seed
