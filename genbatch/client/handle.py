"""`BatchHandle`: one batch, as a program holds it after `Client.submit` or `Client.batch`.

Every method reads the job store or acts through the client, so a handle is cheap to make
and to keep; it holds no state of its own beyond the id (and the submit's outcome).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from genbatch.client.rows import BatchInfo, ErrorRow, ResultRow
from genbatch.errors import WaitTimeout
from genbatch.models import ItemState, Review

if TYPE_CHECKING:
    from pathlib import Path

    from genbatch.client.export import ExportReport
    from genbatch.client.outcomes import SubmitOutcome
    from genbatch.client.review import ReviewReport
    from genbatch.records import Batch
    from genbatch.store import JobStore
    from genbatch.worker.control import CancelReport, RetryReport
    from genbatch.worker.redo import RedoReport

ProgressCallback = Callable[[BatchInfo], None]


class BatchOps(Protocol):
    """What a handle needs of its client (`genbatch.Client` is one)."""

    @property
    def store(self) -> JobStore: ...

    def record(self, batch_id: str) -> Batch: ...

    def cancel(self, batch_id: str) -> CancelReport: ...

    def retry(self, batch_id: str, states: tuple[str, ...] = ...,
              budget_usd: float | None = None, *, regenerate: bool = False
              ) -> RetryReport: ...

    def review(self, batch_id: str, keep: Sequence[str] = ...,
               reject: Sequence[str] = ...) -> ReviewReport: ...

    def redo(self, batch_id: str) -> RedoReport: ...

    def export_kept(self, batch_id: str, dest: str | Path) -> ExportReport: ...


class BatchHandle:
    """One batch: its status, waiting for it, its rows, cancel and retry, review and redo."""

    def __init__(self, client: BatchOps, batch_id: str,
                 submitted: SubmitOutcome | None = None) -> None:
        self._client = client
        self.id = batch_id
        self.submitted = submitted  # rows, estimate and skipped rows, when just submitted

    def __repr__(self) -> str:
        return f"BatchHandle({self.id!r})"

    def status(self) -> BatchInfo:
        """The batch as it is now: status, counts, spend, output manifest URIs, the hosts
        that served it."""
        return BatchInfo.of(self._client.record(self.id),
                            self._client.store.batches.served_by(self.id))

    def wait(self, timeout: float | None = None, on_progress: ProgressCallback | None = None,
             poll_s: float = 0.5) -> BatchInfo:
        """Block until the batch is finished (or stopped by its budget with nothing left
        running); `on_progress` gets the status first and whenever it changes. Raises
        WaitTimeout after `timeout` seconds (the batch goes on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        shown: BatchInfo | None = None
        while True:
            info = self.status()
            if on_progress is not None and info != shown:
                on_progress(info)
                shown = info
            if info.settled:
                return info
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"batch {self.id} is not finished after {timeout:g} s "
                                  f"({info.done}/{info.total} done, status {info.status})")
            time.sleep(poll_s if deadline is None else
                       max(0.0, min(poll_s, deadline - time.monotonic())))

    def rows(self) -> Iterator[ResultRow]:
        """Every item, in manifest order, as a results row (what `results --json` prints)."""
        total = self._client.record(self.id).total
        reviews = self._client.store.reviews.all(self.id)
        for item in self._client.store.items.of_batch(self.id, total):
            yield ResultRow.of(item, reviews.get(item.seq, Review.NOT_REVIEWED))

    def results(self) -> Iterator[ResultRow]:
        """The items that succeeded, in manifest order (results.jsonl once finished)."""
        total = self._client.record(self.id).total
        reviews = self._client.store.reviews.all(self.id)
        for item in self._client.store.items.of_batch(self.id, total):
            if item.state is ItemState.SUCCEEDED:
                yield ResultRow.of(item, reviews.get(item.seq, Review.NOT_REVIEWED))

    def errors(self) -> Iterator[ErrorRow]:
        """Every other item, in manifest order (errors.jsonl once finished; while the batch
        runs, also the items not finished yet)."""
        total = self._client.record(self.id).total
        for item in self._client.store.items.of_batch(self.id, total):
            if item.state is not ItemState.SUCCEEDED:
                yield ErrorRow.of(item)

    def cancel(self) -> CancelReport:
        """Stop the batch: pending items are cancelled, running generations finish."""
        return self._client.cancel(self.id)

    def retry(self, *, failed: bool = True, expired: bool = True, ambiguous: bool = False,
              budget_usd: float | None = None) -> RetryReport:
        """Queue the items in the chosen states again, in this batch. `ambiguous` may pay
        twice. With `budget_usd`, first set the batch's budget (continues a batch its
        budget stopped)."""
        states = tuple(s for s, on in ((ItemState.FAILED, failed), (ItemState.EXPIRED, expired),
                                       (ItemState.AMBIGUOUS, ambiguous)) if on)
        return self._client.retry(self.id, states, budget_usd=budget_usd)

    def review(self, keep: Sequence[str] = (), reject: Sequence[str] = ()) -> ReviewReport:
        """Mark videos kept or rejected by custom_id (docs/review.md)."""
        return self._client.review(self.id, keep, reject)

    def redo(self) -> RedoReport:
        """Generate the rejected videos again with a new seed, in this batch."""
        return self._client.redo(self.id)

    def export_kept(self, dest: str | Path) -> ExportReport:
        """Copy the kept videos with a manifest.jsonl to a folder, `s3://…` or a `.zip`."""
        return self._client.export_kept(self.id, dest)
