"""Review verdicts as the command line and the Python API give them: by custom_id.

`genbatch review BATCH --keep ID --reject ID` and `Client.review` name items by their
custom_id; the store keeps verdicts by item seq (store/review.py). A name the batch does not
have, or an item with no video to judge, is refused before any verdict is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from genbatch.errors import GenbatchError
from genbatch.models import Counter, ItemState, Review
from genbatch.records import Item
from genbatch.store import JobStore


@dataclass
class ReviewReport:
    kept: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # kept, rejected, not_reviewed


def split_ids(values: Iterable[str]) -> list[str]:
    """`--keep a --keep b,c` → [a, b, c] (blank pieces dropped, order kept, once each)."""
    return list(dict.fromkeys(p.strip() for v in values for p in v.split(",") if p.strip()))


def find_items(store: JobStore, batch_id: str, ids: Sequence[str]) -> dict[str, Item]:
    """The items of `ids` (custom_ids), read a chunk at a time; an id the batch does not
    have, or whose item did not succeed, is one clear error."""
    wanted = set(ids)
    found: dict[str, Item] = {}
    batch = store.batches.get(batch_id)
    for item in store.items.of_batch(batch_id, batch.total):
        if item.custom_id in wanted:
            found[item.custom_id] = item
    for cid in ids:
        if cid not in found:
            raise GenbatchError(f"batch {batch_id} has no item with custom_id {cid!r}")
        state = found[cid].state
        if state is not ItemState.SUCCEEDED:
            raise GenbatchError(f"{cid}: only a succeeded video can be reviewed (this item "
                                f"is {state or 'unknown'})")
    return found


def review(store: JobStore, batch_id: str, keep: Sequence[str],
           reject: Sequence[str]) -> ReviewReport:
    """Mark `keep` kept and `reject` rejected (custom_ids); nothing is written when one of
    them is unknown, not succeeded, or in both lists."""
    keep, reject = split_ids(keep), split_ids(reject)
    both = sorted(set(keep) & set(reject))
    if both:
        raise GenbatchError(f"{both[0]}: given to both --keep and --reject")
    items = find_items(store, batch_id, [*keep, *reject])
    store.reviews.mark(batch_id, [items[c].seq for c in keep], Review.KEPT)
    store.reviews.mark(batch_id, [items[c].seq for c in reject], Review.REJECTED)
    return ReviewReport(kept=keep, rejected=reject, counts=review_counts(store, batch_id))


def review_counts(store: JobStore, batch_id: str) -> dict[str, int]:
    """kept, rejected and not_reviewed among the batch's succeeded videos."""
    succeeded = store.batches.get(batch_id).count(Counter.SUCCEEDED)
    return store.reviews.counts(batch_id, succeeded)
