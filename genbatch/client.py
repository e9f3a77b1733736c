"""`Client`: what the `genbatch` commands do, as one function per command.

The command line (cli.py) parses its options, calls one method here and prints what comes
back; a program can do the same without a shell::

    from genbatch import Client
    from genbatch.producer.options import BatchOptions

    client = Client()  # settings from GENBATCH_* (or Client(Settings(...)))
    outcome = client.submit(Path("manifest.csv"), options=BatchOptions(tier="flex"))
    client.batch(outcome.batch_id)["status"]

Methods return data (dataclasses, records, rows) and never print. A mistake is a
`GenbatchError` with the same one-line message the CLI shows; an unreachable Redis is a
`redis.ConnectionError` at the first method that needs the job store. The job store and
object storage are opened on first use, so a dry run needs neither.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from genbatch.config import Settings, load_settings
from genbatch.errors import GenbatchError, ManifestError
from genbatch.models import ItemState
from genbatch.records import Batch
from genbatch.store import JobStore
from genbatch.store.health import AccountHealth
from genbatch.store.heartbeats import Beat

if TYPE_CHECKING:
    from collections.abc import Mapping

    from genbatch.console.health import Diagnosis
    from genbatch.producer.ingest import IngestResult
    from genbatch.producer.options import BatchOptions
    from genbatch.storage import ObjectStorage
    from genbatch.store.heartbeats import Beat
    from genbatch.worker.control import CancelReport, RetryReport
    from genbatch.worker.reconcile import BatchReport
    from genbatch.worker.runtime import Runtime

DEFAULT_MODEL = "seedance-v1.5-pro-i2v"  # for rows that name no model
ERRORS_SCANNED = 20_000  # items `errors` looks at (a detail view, not a report)
DEFAULT_RETRY_STATES = ("failed", "expired")


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

    @classmethod
    def of(cls, result: IngestResult, warnings: list[str] | None = None) -> SubmitOutcome:
        return cls(batch_id=result.batch_id, rows=result.rows, valid=result.valid,
                   invalid=result.invalid, est_cost=result.est_cost, unpriced=result.unpriced,
                   by_model=dict(result.by_model), errors=list(result.errors),
                   budget_usd=result.budget_usd, fit=result.fit, fit_cost=result.fit_cost,
                   warnings=[*(warnings or ()), *result.warnings])


@dataclass(frozen=True)
class ErrorCount:
    """One kind of error in a batch and how many items ended with it."""

    code: str
    message: str
    count: int


@dataclass(frozen=True)
class AccountsReport:
    """Provider accounts' health with (in flight, cap) per account, in PROVIDER_NAMES order,
    and the processes alive now."""

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


def submit_options(
    *, resume: bool = False, priority: str | None = None, tier: str | None = None,
    expires_after: int | None = None, budget_usd: float | None = None,
    notify_url: str | None = None, fallback: str | None = None,
) -> BatchOptions:
    """The batch options of a submit, checked as the user typed them (None = not given).
    A resumed batch keeps its own options: with `resume`, only a budget may be given."""
    from genbatch.producer.options import BatchOptions

    if resume and any(v is not None for v in (priority, tier, expires_after, notify_url,
                                              fallback)):
        raise GenbatchError("--resume keeps the batch's own --priority, --tier, "
                            "--expires-after, --notify and --fallback; leave them out")
    return BatchOptions.build(priority=priority, tier=tier, expires_after=expires_after,
                              budget_usd=budget_usd, notify_url=notify_url, fallback=fallback)


def check_notify_url(url: str) -> None:
    """Refuse a --notify URL whose host is not public (GENBATCH_NOTIFY_ALLOW_PRIVATE allows
    it); the worker checks again, after resolving the host, before each delivery. A host
    that does not resolve yet passes here: each delivery attempt resolves it again."""
    from genbatch.addresses import UnresolvedHost, non_public

    try:
        why = non_public(url)
    except UnresolvedHost:
        return
    if why:
        raise GenbatchError(f"--notify {why}: refused (set GENBATCH_NOTIFY_ALLOW_PRIVATE=true "
                            "to allow a receiver on your own network)")


def open_store(settings: Settings) -> JobStore:
    """The job store of `settings`, pinged so that an unreachable Redis fails now."""
    store = JobStore.from_url(settings.require_redis_url())
    store.ping()
    return store


class Client:
    """One genbatch deployment (its Redis and object storage), as a program sees it."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else load_settings()
        self._store: JobStore | None = None
        self._storage: ObjectStorage | None = None
        self._rt: Runtime | None = None

    @property
    def store(self) -> JobStore:
        """The job store, opened (and pinged) on first use."""
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    @property
    def storage(self) -> ObjectStorage:
        """Object storage for inputs and outputs, opened on first use."""
        if self._storage is None:
            from genbatch.storage import open_storage

            s = self.settings
            self._storage = open_storage(s.storage_url, endpoint_url=s.s3_endpoint_url,
                                         region=s.s3_region)
        return self._storage

    # -- submit ----------------------------------------------------------------------
    def submit(
        self, manifest: Path, *, provider: str | None = None, model: str | None = DEFAULT_MODEL,
        skip_invalid: bool = False, dry_run: bool = False, options: BatchOptions | None = None,
        input_roots: tuple[Path, ...] = (),
    ) -> SubmitOutcome:
        """Validate `manifest` and enqueue it as a new batch; with `dry_run`, only validate
        and estimate (nothing is written, no Redis needed: the worker keys are checked when
        Redis is set and answers). `provider` / `model` apply to rows without one; local
        images may come from the manifest's folder, `input_roots` and the settings'. Raises
        ManifestRejected when rows are bad and not `skip_invalid`, or when no live worker
        holds a key the rows need, or the budget fits no row.
        """
        from genbatch.producer.ingest import ingest_manifest
        from genbatch.producer.options import BatchOptions

        options = options or BatchOptions()
        if options.notify_url and self.settings.notify_secret is None:
            raise GenbatchError("--notify needs GENBATCH_NOTIFY_SECRET (the key that signs "
                                "the event; set the same one on the workers)")
        if options.notify_url and not self.settings.notify_allow_private:
            check_notify_url(options.notify_url)
        store, storage = (None, None) if dry_run else (self.store, self.storage)
        workers, notes = self._live_workers(dry_run)
        result = ingest_manifest(manifest, store=store, storage=storage, provider=provider,
                                 model=model, skip_invalid=skip_invalid, dry_run=dry_run,
                                 options=options, workers=workers,
                                 input_roots=self._input_roots(input_roots))
        return SubmitOutcome.of(result, notes)

    def _input_roots(self, given: tuple[Path, ...]) -> tuple[Path, ...]:
        """Folders local images may come from, besides the manifest's own."""
        return (*self.settings.input_root_paths(), *given)

    def _live_workers(self, dry_run: bool) -> tuple[list[Beat] | None, list[str]]:
        """The live workers' heartbeats, for the key check. A dry run reads them only
        when Redis is set, and goes on without (saying so) when it does not answer."""
        if not dry_run:
            return self.store.heartbeats.workers(), []
        if not self.settings.redis_url:
            return None, []
        try:
            return self.store.heartbeats.workers(), []
        except redis.RedisError as exc:
            return None, [f"worker keys not checked: cannot reach Redis ({exc})"]

    def resume(
        self, manifest: Path, batch_id: str, *, provider: str | None = None,
        model: str | None = DEFAULT_MODEL, skip_invalid: bool = False,
        budget_usd: float | None = None, input_roots: tuple[Path, ...] = (),
    ) -> ResumeOutcome:
        """Apply `manifest` to batch `batch_id` (matched by custom_id): new rows are added,
        rows whose item ended failed/expired/cancelled/ambiguous are replaced and queued
        again, the rest are kept. `budget_usd` becomes the batch's budget. A bad manifest
        changes nothing."""
        from genbatch.producer.resume import resume_manifest
        from genbatch.store.budget import check_budget

        if budget_usd is not None:
            check_budget(budget_usd)
        checked, changes = resume_manifest(
            manifest, batch_id, store=self.store, storage=self.storage, provider=provider,
            model=model, skip_invalid=skip_invalid, budget_usd=budget_usd,
            input_roots=self._input_roots(input_roots))
        return ResumeOutcome(batch_id=batch_id, added=changes["added"],
                             replaced=changes["replaced"], kept=changes["kept"],
                             budget_usd=budget_usd, errors=list(checked.errors))

    # -- read ------------------------------------------------------------------------
    def batch(self, batch_id: str) -> Batch:
        """The batch record (a `dict[str, str]`); NotFoundError for an unknown id."""
        return self.store.get_batch(batch_id)

    def batches(self, limit: int = 20) -> list[Batch]:
        """The most recent batches, newest first."""
        return self.store.list_batches(limit)

    def results(self, batch_id: str) -> list[dict[str, Any]]:
        """Every item of the batch as a results.jsonl row, in manifest order."""
        from genbatch.worker.finalize import result_row

        record = self.batch(batch_id)
        return [result_row(item) for item in self.store.iter_items(batch_id, record.total)]

    def write_results(self, batch_id: str, path: Path, failed_only: bool = False) -> int:
        """Write every row (results and errors; with `failed_only`, the items that did not
        succeed) as JSONL to `path`, all at once (through `<path>.part`, so a reader never
        sees half a file); returns the number of rows."""
        rows = [r for r in self.results(batch_id)
                if not failed_only or r["status"] != ItemState.SUCCEEDED]
        tmp = path.with_name(path.name + ".part")
        with tmp.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(path)
        return len(rows)

    @staticmethod
    def budget_stop(batch: Mapping[str, str]) -> str | None:
        """Why a batch is not finishing, when its budget stopped it, and how to go on; None
        when the budget did not stop it."""
        from genbatch.store import budget

        if not budget.stopped(batch):
            return None
        money = budget.summary(batch)
        return (f"batch {batch.get('id')} stopped at its budget (${money['budget_usd']:.2f}, "
                f"spent ${money['spent_usd']:.2f}): {batch.get('pending')} items pending; "
                f"`genbatch retry {batch.get('id')} --budget USD` continues it")

    def diagnose(self, batch: Batch) -> Diagnosis:
        """What the batch's open items wait on: processes, keys, account health."""
        from genbatch.console.health import diagnose

        return diagnose(self.store, batch)

    def errors(self, batch: Batch, limit: int = 5, scan: int = ERRORS_SCANNED) -> list[ErrorCount]:
        """The batch's most frequent (error code, message) pairs among its first `scan`
        items, most frequent first."""
        seen: Counter[tuple[str, str]] = Counter()
        for n, item in enumerate(self.store.iter_items(batch.id, batch.total)):
            if n >= scan:
                break
            if item.error_code:
                seen[(item.error_code, item.get("error_message", ""))] += 1
        return [ErrorCount(code, message, n) for (code, message), n in seen.most_common(limit)]

    # -- accounts --------------------------------------------------------------------
    def accounts(self) -> AccountsReport:
        """Every provider account's health, the live workers and the scheduler leader."""
        from genbatch.config import PROVIDER_NAMES

        store = self.store
        health = store.health.get_many(PROVIDER_NAMES)
        in_flight = store.in_flight_counts(PROVIDER_NAMES)
        caps = [self.settings.provider(p).max_in_flight for p in PROVIDER_NAMES]
        return AccountsReport(tuple(health), tuple(zip(in_flight, caps, strict=True)),
                              tuple(store.heartbeats.workers()), store.heartbeats.scheduler())

    def resume_account(self, provider: str) -> None:
        """A person fixed what paused the account (its key, its balance): it takes work
        again at once."""
        import time

        self.settings.provider(provider)  # an unknown name is a clear ConfigError
        self.store.health.resume(provider, time.time())

    # -- act on a batch --------------------------------------------------------------
    def cancel(self, batch_id: str) -> CancelReport:
        """Stop a batch: nothing new is submitted, tasks still queued at a provider that
        can cancel them are cancelled, running generations finish and are kept."""
        from genbatch.worker.control import cancel_batch

        return cancel_batch(self._runtime(), batch_id)

    def retry(self, batch_id: str, states: tuple[str, ...] = DEFAULT_RETRY_STATES,
              budget_usd: float | None = None) -> RetryReport:
        """Queue the batch's items in `states` (failed, expired, ambiguous) again, in the
        same batch; with `budget_usd`, first set the batch's budget and let the items it
        held back dispatch again (pass `states=()` for the budget alone)."""
        from genbatch.worker.control import retry_batch

        return retry_batch(self._runtime(), batch_id, states, budget_usd=budget_usd)

    def reconcile(self, batch_id: str) -> BatchReport:
        """Look for the tasks of the batch's ambiguous items in their providers' task lists
        now (adopt one, resubmit when provably none, else leave), and list the tasks its
        accounts created in its time that no item owns."""
        from genbatch.worker.reconcile import reconcile_batch

        return reconcile_batch(self._runtime(), batch_id)

    def resend_notify(self, batch_id: str) -> str:
        """Queue a finished batch's --notify event for delivery again; returns its id (""
        when none was made yet: the first attempt makes it)."""
        from genbatch.worker import notify

        return notify.resend(self._runtime(), batch_id)

    def _runtime(self) -> Runtime:
        """A runtime that acts on batches in this process: finalize runs inline (no worker
        needs to be up for a cancelled batch to get its output manifests); other work (a
        submit into a slot a cancel freed) goes to the workers as usual."""
        if self._rt is None:
            from genbatch.worker.app import connect, send
            from genbatch.worker.runtime import Runtime
            from genbatch.worker.steps import finalize_batch

            connect(self.settings)

            def enqueue(kind: str, ident: str) -> None:
                if kind == "finalize":
                    finalize_batch(rt, ident)
                else:
                    send(kind, ident)

            rt = Runtime(self.settings, enqueue=enqueue)
            rt.store.ping()
            self._rt = rt
        return self._rt
