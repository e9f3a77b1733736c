"""A test helper: dispatch a provider's pending items through the store's DISPATCH script
with one account named after the provider (no rate limit), as the old per-batch call did."""

from __future__ import annotations

import json

from genbatch.models import ItemState
from genbatch.store import DispatchAccount, JobStore
from genbatch.store.limits import Rate

NO_RATE = Rate(1e9, 60.0, 1.0)


def dispatch_items(store: JobStore, provider: str, batch_id: str | None, limit: int, max_n: int,
                   lease_until: float, now: float = 1.0) -> list[str]:
    """Up to `max_n` pending items of `provider` to `dispatched` within an in-flight cap of
    `limit`; the ids (all of batch `batch_id` when given: the caller queued only that one)."""
    done = store.queues.dispatch(provider, [DispatchAccount(provider, limit, 1e9)], max_n, now,
                                 lease_until, NO_RATE)
    ids = [iid for iid, _ in done.items]
    assert batch_id is None or all(iid.rsplit(":", 1)[0] == batch_id for iid in ids), ids
    return ids


def claimed(store: JobStore, now: float, lease_until: float,
            max_n: int) -> list[tuple[str, ItemState]]:
    """The due timers the scheduler claims (no poll budget): (item id, state) pairs."""
    return [(i, ItemState(st)) for i, st in store.limits.claim_due(now, lease_until, max_n, {})
            if i]


def dispatched_novita_batch(store: JobStore, model: str, n: int = 2,
                            batch_id: str = "b1") -> list[str]:
    """Batch `batch_id` of `n` Novita rows (one image URL each), committed and every item
    dispatched: the ids, in order."""
    store.ingest.create(batch_id, {"provider": "novita", "model": model}, 1.0)
    store.ingest.add_items(batch_id, [
        {"seq": str(i), "state": "pending", "provider": "novita", "line": str(i + 1),
         "custom_id": f"c{i}", "model": model,
         "req": json.dumps({"prompt": "a slow pan", "image": "https://example.com/a.png"})}
        for i in range(1, n + 1)])
    store.ingest.commit(batch_id, ["novita"])
    return dispatch_items(store, "novita", batch_id, limit=n + 7, max_n=n + 7,
                          lease_until=1e12)
