"""Review verdicts of a batch's videos: `review:{bid}`, a hash item seq -> kept | rejected.

An item with no field has not been reviewed (or was redone since: a new take starts
unreviewed). The hash lives beside the batch's own keys, so the verdicts are stored with
the batch and read in one round trip for a page or the output manifests.

`take_rejected` is the compare-and-delete redo claims an item with: of two redos racing,
only the one that removed the `rejected` mark resubmits it, so each redo is paid once.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from genbatch.models import Review
from genbatch.store import scripts

TAKE_REJECTED = scripts.load("review_take")


class Reviews:
    """Verdicts per item of a batch (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r = client
        self._prefix = prefix
        self._take = client.register_script(TAKE_REJECTED)

    def _key(self, batch_id: str) -> str:
        return f"{self._prefix}review:{batch_id}"

    def mark(self, batch_id: str, seqs: Iterable[int], verdict: Review) -> None:
        """Give `seqs` the verdict (NOT_REVIEWED clears it)."""
        fields = [str(s) for s in seqs]
        if not fields:
            return
        if verdict is Review.NOT_REVIEWED:
            self._r.hdel(self._key(batch_id), *fields)
        else:
            self._r.hset(self._key(batch_id), mapping=dict.fromkeys(fields, verdict.value))

    def all(self, batch_id: str) -> dict[int, Review]:
        """Every verdict of the batch: seq -> kept | rejected (unreviewed items absent)."""
        raw: dict[str, str] = self._r.hgetall(self._key(batch_id))  # type: ignore[assignment]
        return {int(seq): Review(v) for seq, v in raw.items()
                if v in Review._value2member_map_}

    def of(self, batch_id: str, seqs: Iterable[int]) -> dict[int, Review]:
        """The verdicts of `seqs` (NOT_REVIEWED where none)."""
        wanted = list(seqs)
        if not wanted:
            return {}
        values: list[str | None] = self._r.hmget(  # type: ignore[assignment]
            self._key(batch_id), [str(s) for s in wanted])
        return {seq: Review(v) if v and v in Review._value2member_map_ else Review.NOT_REVIEWED
                for seq, v in zip(wanted, values, strict=True)}

    def counts(self, batch_id: str, succeeded: int) -> dict[str, int]:
        """kept, rejected and not_reviewed among the batch's `succeeded` videos."""
        counts = dict.fromkeys(Review, 0)
        for verdict in self.all(batch_id).values():
            counts[verdict] += 1
        counts[Review.NOT_REVIEWED] = max(
            0, succeeded - counts[Review.KEPT] - counts[Review.REJECTED])
        return {k.value: n for k, n in counts.items()}

    def take_rejected(self, batch_id: str, seq: int) -> bool:
        """Remove the item's `rejected` mark if it still has it; whether this call did."""
        return bool(self._take(keys=[self._key(batch_id)], args=[str(seq), Review.REJECTED]))
