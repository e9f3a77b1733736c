"""What the Client's commands return: plain frozen dataclasses, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from genbatch.errors import ManifestError

if TYPE_CHECKING:
    from genbatch.producer.ingest import IngestResult
    from genbatch.store.health import AccountHealth
    from genbatch.store.heartbeats import Beat


@dataclass(frozen=True)
class SubmitOutcome:
    """A submit or dry run: the new batch's id (None on a dry run), row counts and the
    estimated cost. `errors` are the first rows refused (with skip_invalid); `warnings`
    what the batch may run into (no worker up yet, rows that cannot fail over; on a dry
    run also what would refuse it)."""

    batch_id: str | None
    rows: int
    valid: int
    invalid: int
    est_cost: float  # USD, rows with a known price
    unpriced: int  # valid rows without a known price
    by_model: dict[tuple[str, str], tuple[int, float]]  # (provider, model) -> (rows, USD)
    errors: list[ManifestError] = field(default_factory=list)
    budget_usd: float | None = None
    fit: int = 0  # with a budget: the first `fit` valid rows fit in it ...
    fit_cost: float = 0.0  # ... at this estimated cost
    warnings: list[str] = field(default_factory=list)
    duplicate_of: str | None = None  # the batch an idempotency key already made: nothing new
    manifest_rows: int = 0  # the manifest's rows; `rows` counts items (each variant is one)

    @classmethod
    def already(cls, batch_id: str) -> SubmitOutcome:
        """A submit that found its idempotency key used: that batch, nothing submitted."""
        return cls(batch_id=batch_id, rows=0, valid=0, invalid=0, est_cost=0.0, unpriced=0,
                   by_model={}, duplicate_of=batch_id)

    @classmethod
    def of(cls, result: IngestResult, warnings: list[str] | None = None) -> SubmitOutcome:
        return cls(batch_id=result.batch_id, rows=result.rows, valid=result.valid,
                   invalid=result.invalid, est_cost=result.est_cost, unpriced=result.unpriced,
                   by_model=dict(result.by_model), errors=list(result.errors),
                   budget_usd=result.budget_usd, fit=result.fit, fit_cost=result.fit_cost,
                   warnings=[*(warnings or ()), *result.warnings],
                   manifest_rows=result.source_rows)


@dataclass(frozen=True)
class AccountsReport:
    """Provider accounts' health with (in flight, concurrency) per account, in provider
    order, and the processes alive now."""

    health: tuple[AccountHealth, ...]
    load: tuple[tuple[int, int], ...]
    workers: tuple[Beat, ...]
    scheduler: Beat | None


@dataclass(frozen=True)
class ResumeOutcome:
    """A manifest applied to an existing batch (`submit --resume`): rows added as new
    items, failed rows replaced and queued again, rows kept (succeeded or still running)."""

    batch_id: str
    added: int
    replaced: int
    kept: int
    budget_usd: float | None = None  # the batch's new budget, when one was given
    errors: list[ManifestError] = field(default_factory=list)

