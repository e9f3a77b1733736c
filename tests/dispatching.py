"""A test helper: dispatch a provider's pending items through the store's DISPATCH script
with one account named after the provider (no rate limit), as the old per-batch call did."""

from __future__ import annotations

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
