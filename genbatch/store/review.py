"""Review verdicts of a batch's videos: `review:{bid}:kept` and `review:{bid}:rejected`, two
sorted sets of item seqs (each scored by its seq, so they list in manifest order).

An item in neither has not been reviewed (or was redone since: a new take starts
unreviewed). The sets live beside the batch's own keys, so the verdicts are stored with the
batch. Every read the review page makes is cheap however many items are judged: counts are
ZCARD, a page of one verdict is a range from a cursor, a tile's verdict is ZMSCORE.

`take_rejected` is how redo claims an item: ZREM returns 1 to one caller only, so of two
redos racing (or one clicked twice) only one resubmits the item, and each redo is paid once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from genbatch.models import Review

JUDGED = (Review.KEPT, Review.REJECTED)


class Reviews:
    """Verdicts per item of a batch (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r = client
        self._prefix = prefix

    def _key(self, batch_id: str, verdict: Review) -> str:
        return f"{self._prefix}review:{batch_id}:{verdict.value}"

    def mark(self, batch_id: str, seqs: Iterable[int], verdict: Review) -> None:
        """Give `seqs` the verdict (NOT_REVIEWED clears it), in one atomic step."""
        wanted = list(seqs)
        if not wanted:
            return
        pipe = self._r.pipeline(transaction=True)
        for judged in JUDGED:
            if judged is verdict:
                pipe.zadd(self._key(batch_id, judged), {str(s): s for s in wanted})
            else:
                pipe.zrem(self._key(batch_id, judged), *[str(s) for s in wanted])
        pipe.execute()

    def all(self, batch_id: str) -> dict[int, Review]:
        """Every verdict of the batch: seq -> kept | rejected (unreviewed items absent)."""
        pipe = self._r.pipeline(transaction=False)
        for judged in JUDGED:
            pipe.zrange(self._key(batch_id, judged), 0, -1)
        found: dict[int, Review] = {}
        for judged, members in zip(JUDGED, pipe.execute(), strict=True):
            found.update(dict.fromkeys((int(s) for s in members), judged))
        return found

    def of(self, batch_id: str, seqs: Sequence[int]) -> dict[int, Review]:
        """The verdicts of `seqs` (NOT_REVIEWED where none), in one round trip."""
        if not seqs:
            return {}
        pipe = self._r.pipeline(transaction=False)
        for judged in JUDGED:
            pipe.zmscore(self._key(batch_id, judged), [str(s) for s in seqs])
        kept, rejected = pipe.execute()
        return {seq: Review.KEPT if k is not None else Review.REJECTED if r is not None
                else Review.NOT_REVIEWED for seq, k, r in zip(seqs, kept, rejected, strict=True)}

    def counts(self, batch_id: str, succeeded: int) -> dict[str, int]:
        """kept, rejected and not_reviewed among the batch's `succeeded` videos."""
        pipe = self._r.pipeline(transaction=False)
        for judged in JUDGED:
            pipe.zcard(self._key(batch_id, judged))
        kept, rejected = (int(n) for n in pipe.execute())
        return {Review.KEPT.value: kept, Review.REJECTED.value: rejected,
                Review.NOT_REVIEWED.value: max(0, succeeded - kept - rejected)}

    def page(self, batch_id: str, verdict: Review, limit: int, *, after: int = 0,
             before: int | None = None) -> tuple[list[int], bool]:
        """Up to `limit` seqs with `verdict` after seq `after` (or, with `before`, the last
        ones before it), in manifest order, and whether more lie beyond them."""
        key = self._key(batch_id, verdict)
        raw: list[str]
        if before is not None:
            raw = self._r.zrevrangebyscore(  # type: ignore[assignment]
                key, f"({before}", "-inf", start=0, num=limit + 1)
            seqs = [int(s) for s in raw]
            return sorted(seqs[:limit]), len(seqs) > limit
        raw = self._r.zrangebyscore(  # type: ignore[assignment]
            key, f"({after}", "+inf", start=0, num=limit + 1)
        seqs = [int(s) for s in raw]
        return seqs[:limit], len(seqs) > limit

    def take_rejected(self, batch_id: str, seq: int) -> bool:
        """Remove the item's `rejected` mark if it still has it; whether this call did."""
        return bool(self._r.zrem(self._key(batch_id, Review.REJECTED), str(seq)))
