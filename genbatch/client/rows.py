"""Typed views the Python API returns and `--json` prints: a batch's status, its result and
error rows. Field names are stable (docs/pipelines.md, "JSON output"); new fields may be added.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from genbatch.console.views import batch_summary
from genbatch.models import ItemState, Review
from genbatch.records import Batch, Item
from genbatch.worker.finalize import error_row, original_row, result_row

# Exit codes of the commands that wait for a batch (docs/pipelines.md, "Exit codes").
EXIT_SUCCEEDED = 0  # finished, every item succeeded
EXIT_FAILURES = 1  # finished, some items did not succeed (see errors)
EXIT_USER_ERROR = 2  # a mistake: bad manifest, option, batch id, setting; Redis unreachable
EXIT_NOT_FINISHED = 3  # stopped by its budget, or the wait timed out


class BatchInfo(BaseModel):
    """A batch as it is now (`Batch.status()`, `genbatch status BATCH --json`)."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: str  # validating, in_progress, finalizing, completed, cancelled, plus the shown
    #              states budget_exhausted (stopped by its budget), cancelling and
    #              settling (waiting for its `ambiguous` items to settle)
    created_at: str
    manifest: str | None
    priority: str
    tier: str | None
    expires_after: int | None
    total: int
    pending: int
    in_flight: int
    downloading: int
    succeeded: int
    failed: int
    expired: int
    cancelled: int
    ambiguous: int
    waiting_parent: int = 0  # chained shots waiting for their parent's last frame
    parent_failed: int = 0  # chained shots whose parent ended without a video
    results_jsonl: str | None
    results_csv: str | None
    errors_jsonl: str | None
    notify: dict[str, Any] | None
    budget: dict[str, Any]
    failover: dict[str, Any] | None
    output: str | None = None  # the batch's own output folder (submit --output)
    possibly_paid_twice: int = 0  # items a Redis restart may have lost a submit of
    finished: bool = False  # completed or cancelled: its output manifests are written
    # host -> {"submits": n, "downloads": m}: the machines whose workers served the batch
    served_by: dict[str, dict[str, int]] = Field(default_factory=dict)
    chains_jsonl: str | None = None  # submit --join-chains: the joined chains, listed

    @classmethod
    def of(cls, batch: Mapping[str, str],
           served_by: Mapping[str, Mapping[str, int]] | None = None) -> BatchInfo:
        record = Batch.view(batch)
        return cls.model_validate({**batch_summary(record),
                                   "output": record.output_url or None,
                                   "finished": record.finished,
                                   "served_by": served_by or {},
                                   "chains_jsonl": record.get("chains_jsonl") or None})

    @property
    def done(self) -> int:
        """Items in a terminal state."""
        return (self.succeeded + self.failed + self.expired + self.cancelled + self.ambiguous
                + self.parent_failed)

    @property
    def settled(self) -> bool:
        """Nothing more will happen without you: finished, or stopped by its budget with
        nothing left running."""
        return self.finished or (self.status == "budget_exhausted" and not self.in_flight
                                 and not self.downloading)

    @property
    def exit_code(self) -> int:
        """0 every item succeeded, 1 finished with failures, 3 not finished."""
        if not self.finished:
            return EXIT_NOT_FINISHED
        return EXIT_SUCCEEDED if self.succeeded == self.total else EXIT_FAILURES


class Attempt(BaseModel):
    """One submit of an item (failover and retry make more than one), oldest first."""

    model_config = ConfigDict(frozen=True)

    provider: str | None
    model: str | None
    remote_task_id: str | None
    state: str | None
    error_code: str | None
    error_message: str | None
    # a take a redo replaced (worker/redo.py): its number, kept video, seed, cost, verdict
    take: int | None = None
    output_uri: str | None = None
    seed: int | None = None
    cost_usd: float | None = None
    review: str | None = None


class ResultRow(BaseModel):
    """One item as a line of results.jsonl (`results --json` prints one per item)."""

    model_config = ConfigDict(frozen=True)

    custom_id: str
    line: int | None
    status: str
    output_uri: str | None  # file:///… or s3://…
    sha256: str | None
    bytes: int | None
    provider: str | None
    model: str | None
    provider_model: str | None
    remote_task_id: str | None
    seed: int | None
    cost_usd: float | None
    submitted_at: str | None
    finished_at: str | None
    error_code: str | None
    error_message: str | None
    attempts: int | None
    possibly_paid_twice: bool = False  # a Redis restart may have lost a submit of it
    failed_over_from: str | None
    attempt_history: list[Attempt]
    takes: int = 1  # videos generated: 1 + each redo
    review: str = Review.NOT_REVIEWED.value  # kept, rejected or not_reviewed
    variant: dict[str, Any] | None = None  # a variant's values, e.g. {"ratio": "9:16"}

    @classmethod
    def of(cls, item: Mapping[str, str], review: Review = Review.NOT_REVIEWED) -> ResultRow:
        return cls.model_validate(result_row(item, review))

    @property
    def succeeded(self) -> bool:
        return self.status == ItemState.SUCCEEDED


class ErrorRow(BaseModel):
    """An item that did not succeed, as a line of errors.jsonl: `row` is the manifest row
    as given (resubmittable), the rest says how it ended."""

    model_config = ConfigDict(frozen=True)

    custom_id: str
    line: int | None
    status: str
    error_code: str | None
    error_message: str | None
    attempts: int | None
    row: dict[str, Any]
    possibly_paid_twice: bool = False  # a Redis restart may have lost a submit of it

    @classmethod
    def of(cls, item: Mapping[str, str]) -> ErrorRow:
        full = error_row(item)
        original = original_row(Item.view(item))
        return cls(custom_id=str(full["custom_id"]), line=full["line"], status=full["status"],
                   error_code=full["error_code"], error_message=full["error_message"],
                   attempts=full["attempts"], row=original,
                   possibly_paid_twice=full["possibly_paid_twice"])
