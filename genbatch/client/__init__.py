"""`genbatch.Client`: the Python API, and the one code path behind the `genbatch` commands.

The command line (genbatch/cli/) parses its options, calls one method here and prints what comes
back; a program does the same without a shell::

    import genbatch

    client = genbatch.Client()  # settings from GENBATCH_* (or Client(Settings(...)))
    batch = client.submit("s3://bucket/in/manifest.csv", provider="byteplus", tier="flex",
                          output="s3://bucket/run-42/")
    info = batch.wait(on_progress=lambda s: print(s.done, "/", s.total))
    for row in batch.results():
        print(row.custom_id, row.output_uri)

`submit` and `batch(id)` give a `BatchHandle` (status, wait, results, errors, cancel,
retry); rows and statuses are typed (`client/rows.py`). Methods never print. Every mistake
is a `GenbatchError` (`genbatch.errors`) with the one-line message the CLI shows, an
unreachable Redis included (`StoreUnavailable`). The job store and object storage are
opened on first use, so an estimate (a dry run) needs neither.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from genbatch.client.handle import BatchHandle
from genbatch.client.options import SubmitOptions, submit_options
from genbatch.client.outcomes import AccountsReport, ResumeOutcome, SubmitOutcome
from genbatch.client.rows import BatchInfo
from genbatch.config import Settings, load_settings
from genbatch.console.detail import ErrorCount
from genbatch.errors import GenbatchError, StorageError, StoreError
from genbatch.models import Counter as BatchCounter
from genbatch.models import ItemState, Review
from genbatch.providers import accounts as provider_accounts
from genbatch.records import Batch
from genbatch.store import JobStore

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from genbatch.client.export import ExportReport
    from genbatch.client.review import ReviewReport
    from genbatch.console.health import Diagnosis
    from genbatch.producer.variants import VariantLimits
    from genbatch.storage import ObjectStorage
    from genbatch.storage.urls import ObjectUrls
    from genbatch.store.heartbeats import Beat
    from genbatch.worker.control import CancelReport, RetryReport
    from genbatch.worker.reconcile_batch import BatchReport
    from genbatch.worker.redo import RedoReport
    from genbatch.worker.runtime import Runtime

__all__ = ["AccountsReport", "BatchHandle", "BatchInfo", "Client", "ErrorCount",
           "ResumeOutcome", "SubmitOptions", "SubmitOutcome", "open_store", "submit_options"]

DEFAULT_MODEL = "seedance-v1.5-pro-i2v"  # for rows that name no model
# Where input images may also come from: folders (Path) and bucket prefixes ("s3://b/p").
Roots = tuple[Path | str, ...]
ERRORS_SCANNED = 20_000  # items `errors` looks at (a detail view, not a report)
DEFAULT_RETRY_STATES: tuple[ItemState, ...] = (ItemState.FAILED, ItemState.EXPIRED)
OUTPUT_CHECK_KEY = ".genbatch-write-check"  # written and removed to prove --output works


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
    store = JobStore.from_target(settings.redis_target())
    store.ping()  # StoreUnavailable says what to check
    return store


class Client:
    """One genbatch deployment (its Redis and object storage), as a program sees it."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else load_settings()
        self._store: JobStore | None = None
        self._storage: ObjectStorage | None = None
        self._objects: ObjectUrls | None = None
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

    @property
    def objects(self) -> ObjectUrls:
        """Manifests and images named by `s3://` URL, in any bucket of the S3 endpoint."""
        if self._objects is None:
            from genbatch.storage.urls import ObjectUrls

            s = self.settings
            self._objects = ObjectUrls(endpoint_url=s.s3_endpoint_url, region=s.s3_region)
        return self._objects

    # -- submit ----------------------------------------------------------------------
    def submit(
        self, manifest: str | Path, *, provider: str | None = None,
        model: str | None = DEFAULT_MODEL, skip_invalid: bool = False,
        allow_duplicate: bool = False, idempotency_key: str | None = None,
        input_roots: Roots = (), **options: Unpack[SubmitOptions],
    ) -> BatchHandle:
        """Validate `manifest` (a path, `file:///…` or `s3://bucket/key`, streamed) and
        enqueue it as a new batch. `provider` / `model` apply to rows without one; `options`
        are the batch's (`SubmitOptions`); local images may come from the manifest's folder,
        the folders of `input_roots` and GENBATCH_INPUT_ROOTS; `s3://` images from the
        manifest's bucket prefix and the `s3://bucket/prefix` entries of both. Raises
        ManifestRejected (nothing submitted) when rows are bad and not `skip_invalid`; the
        handle's `submitted` has the counts.

        The same manifest with the same options submitted again within
        GENBATCH_DUPLICATE_WINDOW_S is refused, naming its batch, unless `allow_duplicate`.
        With `idempotency_key`, a submit whose key was used before returns that batch
        (`submitted.duplicate_of`) and submits nothing, `allow_duplicate` or not; another key
        is a new batch."""
        from genbatch.producer.dedupe import submission_key
        from genbatch.producer.ingest import new_batch_id
        from genbatch.producer.manifest import manifest_source

        batch_id, key = new_batch_id(), None
        if idempotency_key or not allow_duplicate:  # a key is honoured whatever else is given
            source = manifest_source(manifest, self.objects)
            key = submission_key(source, provider, model, submit_options(**options),
                                 idempotency_key)
            earlier = self._claim(key, batch_id)
            if earlier is not None:
                if idempotency_key:
                    return BatchHandle(self, earlier, SubmitOutcome.already(earlier))
                raise GenbatchError(
                    f"{source.name}: this manifest was already submitted with the same "
                    f"options as batch {earlier} (`genbatch status {earlier}`); pass "
                    "--allow-duplicate to submit it again, or --idempotency-key")
        try:
            outcome = self._ingest(manifest, provider, model, skip_invalid, False, options,
                                   batch_id, input_roots)
        except BaseException:
            if key is not None:
                self.store.submissions.forget(key, batch_id)
            raise
        assert outcome.batch_id is not None
        return BatchHandle(self, outcome.batch_id, outcome)

    def _claim(self, key: str, batch_id: str) -> str | None:
        """The batch `key` was already submitted as (when it still exists), else None
        with `key` now recorded as `batch_id`."""
        subs = self.store.submissions
        window = self.settings.duplicate_window_s
        earlier = subs.claim(key, batch_id, window)
        if earlier is not None and not self.store.batches.exists(earlier):
            subs.forget(key, earlier)  # discarded (bad manifest) or expired: not a batch
            earlier = subs.claim(key, batch_id, window)
        return earlier

    def estimate(
        self, manifest: str | Path, *, provider: str | None = None,
        model: str | None = DEFAULT_MODEL, skip_invalid: bool = False,
        input_roots: Roots = (), **options: Unpack[SubmitOptions],
    ) -> SubmitOutcome:
        """Validate `manifest` and estimate its cost (`submit --dry-run`): nothing is
        written, no Redis is needed."""
        return self._ingest(manifest, provider, model, skip_invalid, True, options,
                            input_roots=input_roots)

    def _ingest(self, manifest: str | Path, provider: str | None, model: str | None,
                skip_invalid: bool, dry_run: bool, given: SubmitOptions,
                batch_id: str | None = None,
                input_roots: Roots = ()) -> SubmitOutcome:
        from genbatch.producer.ingest import ingest_manifest
        from genbatch.producer.options import BatchOptions

        options = BatchOptions.build(**given)
        check_batch_wide(provider, input_roots)
        if options.notify_url and self.settings.notify_secret is None:
            raise GenbatchError("--notify needs GENBATCH_NOTIFY_SECRET (the key that signs "
                                "the event; set the same one on the workers)")
        if options.notify_url and not self.settings.notify_allow_private:
            check_notify_url(options.notify_url)
        store, storage = (None, None) if dry_run else (self.store, self.storage)
        workers, notes = self._live_workers(dry_run)
        if options.output and not dry_run:
            self._check_output(options.output)
        result = ingest_manifest(manifest, store=store, storage=storage, provider=provider,
                                 model=model, skip_invalid=skip_invalid, dry_run=dry_run,
                                 options=options, objects=self.objects, workers=workers,
                                 batch_id=batch_id, input_roots=self._input_roots(input_roots),
                                 limits=self._variant_limits(),
                                 object_roots=self._object_roots(input_roots))
        return SubmitOutcome.of(result, notes)

    def _variant_limits(self) -> VariantLimits:
        """How far a manifest's variants may expand (GENBATCH_MAX_VARIANTS_PER_ROW, ...)."""
        from genbatch.producer.variants import VariantLimits

        s = self.settings
        return VariantLimits(per_row=s.max_variants_per_row, per_batch=s.max_items_per_batch)

    def _object_roots(self, given: Roots) -> tuple[str, ...]:
        """Bucket prefixes `s3://` images may come from, besides the manifest's own."""
        return (*self.settings.input_object_roots(),
                *(r for r in given if isinstance(r, str)))

    def _input_roots(self, given: Roots) -> tuple[Path, ...]:
        """Folders local images may come from, besides the manifest's own."""
        return (*self.settings.input_root_paths(), *(r for r in given if isinstance(r, Path)))

    def _live_workers(self, dry_run: bool) -> tuple[list[Beat] | None, list[str]]:
        """The live workers' heartbeats, for the key check. A dry run reads them only
        when Redis is set, and goes on without (saying so) when it does not answer."""
        if not dry_run:
            return self.store.heartbeats.workers(), []
        if not self.settings.redis_url and not self.settings.redis_sentinels:
            return None, []
        try:
            return self.store.heartbeats.workers(), []
        except StoreError as exc:
            return None, [f"worker keys not checked: {exc}"]

    def _check_output(self, url: str) -> None:
        """A batch's --output folder must take writes: better refused now than at its
        first video."""
        try:
            folder = self.objects.folder(url)
            folder.put_bytes(OUTPUT_CHECK_KEY, b"", "text/plain")
            folder.delete(OUTPUT_CHECK_KEY)
        except StorageError as exc:
            raise GenbatchError(f"--output {url}: cannot write there: {exc}") from exc

    def resume(
        self, manifest: str | Path, batch_id: str, *, provider: str | None = None,
        model: str | None = DEFAULT_MODEL, skip_invalid: bool = False,
        budget_usd: float | None = None, input_roots: Roots = (),
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
            objects=self.objects, input_roots=self._input_roots(input_roots),
            limits=self._variant_limits(), object_roots=self._object_roots(input_roots))
        return ResumeOutcome(batch_id=batch_id, added=changes["added"],
                             replaced=changes["replaced"], kept=changes["kept"],
                             budget_usd=budget_usd, errors=list(checked.errors))

    # -- read ------------------------------------------------------------------------
    def batch(self, batch_id: str) -> BatchHandle:
        """A handle on batch `batch_id`; NotFoundError for an unknown id."""
        self.record(batch_id)
        return BatchHandle(self, batch_id)

    def batches(self, limit: int = 20) -> list[BatchInfo]:
        """The most recent batches' status, newest first (`batch(info.id)` for a handle)."""
        return [BatchInfo.of(b) for b in self.records(limit)]

    def record(self, batch_id: str) -> Batch:
        """The batch record as stored (a `dict[str, str]`); NotFoundError for an unknown id."""
        return self.store.batches.get(batch_id)

    def records(self, limit: int = 20) -> list[Batch]:
        """The most recent batch records, newest first."""
        return self.store.batches.recent(limit)

    def rows(self, batch_id: str, failed_only: bool = False) -> Iterator[dict[str, Any]]:
        """Every item of the batch as a results.jsonl row (with `failed_only`, the items
        that did not succeed), in manifest order, read a chunk at a time."""
        from genbatch.worker.finalize import result_row

        record = self.record(batch_id)
        reviews = self.store.reviews.all(batch_id)
        for item in self.store.items.of_batch(batch_id, record.total):
            if not failed_only or item.state is not ItemState.SUCCEEDED:
                yield result_row(item, reviews.get(item.seq, Review.NOT_REVIEWED))

    def write_results(self, batch_id: str, path: Path, failed_only: bool = False) -> int:
        """Write every row (results and errors; with `failed_only`, the items that did not
        succeed) as JSONL to `path` (through `<path>.part`, so a reader never sees half a
        file); returns the number of rows."""
        tmp = path.with_name(path.name + ".part")
        written = 0
        try:
            with tmp.open("w", encoding="utf-8") as fh:
                for row in self.rows(batch_id, failed_only):
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    written += 1
            tmp.replace(path)
        except OSError as exc:  # a folder that does not exist, no permission, a full disk
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # no half-written file left behind
            raise GenbatchError(f"cannot write {path}: {exc.strerror or exc}") from None
        return written

    def redis_in_use(self) -> str:
        """Which Redis this client works on: the URL (password masked), or with Sentinels
        the primary they name now (`host:port`, after a failover the promoted replica)."""
        target = self.settings.redis_target()
        primary = self.store.primary()
        if primary is None:
            return target.describe()
        return (f"primary {primary[0]}:{primary[1]} (named {target.master_name!r} by the "
                f"Sentinels {','.join(f'{h}:{p}' for h, p in target.sentinels)})")

    @staticmethod
    def budget_stop(batch: Mapping[str, str]) -> str | None:
        """Why a batch is not finishing, when its budget stopped it, and how to go on; None
        when the budget did not stop it."""
        from genbatch.store import budget

        if not budget.stopped(batch):
            return None
        money = budget.summary(batch)
        pending = batch.get(BatchCounter.PENDING)
        return (f"batch {batch.get('id')} stopped at its budget (${money['budget_usd']:.2f}, "
                f"spent ${money['spent_usd']:.2f}): {pending} items pending; "
                f"`genbatch retry {batch.get('id')} --budget USD` continues it")

    def diagnose(self, batch: Batch) -> Diagnosis:
        """What the batch's open items wait on: processes, keys, account health."""
        from genbatch.console.health import diagnose

        return diagnose(self.store, batch, self._account_names)

    def errors(self, batch: Batch, limit: int = 5, scan: int = ERRORS_SCANNED) -> list[ErrorCount]:
        """The batch's most frequent (error code, message) pairs among its first `scan`
        items, most frequent first."""
        seen: Counter[tuple[str, str]] = Counter()
        for n, item in enumerate(self.store.items.of_batch(batch.id, batch.total)):
            if n >= scan:
                break
            if item.error_code:
                seen[(item.error_code, item.error_message)] += 1
        return [ErrorCount(code, message, n) for (code, message), n in seen.most_common(limit)]

    def _account_names(self, provider: str) -> list[str]:
        return [a.label for a in provider_accounts.accounts(self.settings, provider)]

    # -- accounts --------------------------------------------------------------------
    def accounts(self) -> AccountsReport:
        """Every provider account's health, the live workers and the scheduler leader."""
        store = self.store
        names = [a.label for a in provider_accounts.accounts(self.settings)]
        health = store.health.get_many(names)
        in_flight = store.queues.in_flight_counts(names)
        caps = [a.max_in_flight for a in provider_accounts.accounts(self.settings)]
        return AccountsReport(tuple(health), tuple(zip(in_flight, caps, strict=True)),
                              tuple(store.heartbeats.workers()), store.heartbeats.scheduler())

    def resume_account(self, account: str) -> None:
        """A person fixed what paused the account (its key, its balance): it takes work
        again at once."""
        import time

        provider_accounts.account(self.settings, account)  # an unknown name is a clear ConfigError
        self.store.health.resume(account, time.time())

    # -- act on a batch --------------------------------------------------------------
    def cancel(self, batch_id: str) -> CancelReport:
        """Stop a batch: nothing new is submitted, tasks still queued at a provider that
        can cancel them are cancelled, running generations finish and are kept."""
        from genbatch.worker.control import cancel_batch

        return cancel_batch(self._runtime(), batch_id)

    def retry(self, batch_id: str, states: tuple[str, ...] = DEFAULT_RETRY_STATES,
              budget_usd: float | None = None, *, regenerate: bool = False) -> RetryReport:
        """Queue the batch's items in `states` (failed, expired, ambiguous) again, in the
        same batch (items whose task succeeded are downloaded again, not regenerated,
        unless `regenerate`); with `budget_usd`, first set the batch's budget and let the
        items it held back dispatch again (pass `states=()` for the budget alone)."""
        from genbatch.worker.control import retry_batch

        return retry_batch(self._runtime(), batch_id, states, budget_usd=budget_usd,
                           regenerate=regenerate)

    def reconcile(self, batch_id: str) -> BatchReport:
        """Look for the tasks of the batch's ambiguous items in their providers' task lists
        now (adopt one, resubmit when provably none, else leave), and list the tasks its
        accounts created in its time that no item owns."""
        from genbatch.worker.reconcile_batch import reconcile_batch

        return reconcile_batch(self._runtime(), batch_id)

    # -- review and redo (client/review.py, worker/redo.py, client/export.py) ---------
    def review(self, batch_id: str, keep: Sequence[str] = (),
               reject: Sequence[str] = ()) -> ReviewReport:
        """Mark videos kept or rejected by custom_id (nothing is written when one is unknown
        or not succeeded); a finished batch's output manifests are written again with the
        verdicts."""
        from genbatch.client import review

        report = review.review(self.store, batch_id, keep, reject)
        if self.record(batch_id).finished:
            self._rewrite_outputs(batch_id)
        return report

    def redo(self, batch_id: str) -> RedoReport:
        """Generate the rejected videos again with a new seed, as new attempts of the same
        items in the same batch (budget-checked; each paid once; the earlier take kept in
        the item's history). The batch reopens and finishes again."""
        from genbatch.worker.redo import redo_batch

        return redo_batch(self.store, self.batch_storage(batch_id), batch_id)

    def export_kept(self, batch_id: str, dest: str | Path) -> ExportReport:
        """Copy the kept videos to `dest` (a new folder, `s3://bucket/prefix` or a `.zip`)
        with a manifest.jsonl of them; nothing half-written is left on failure."""
        from genbatch.client.export import export_kept

        return export_kept(self.store, self.batch_storage(batch_id), self.objects, batch_id,
                           str(dest))

    def batch_storage(self, batch_id: str) -> ObjectStorage:
        """Where the batch keeps its videos: its --output folder, else the storage."""
        from genbatch.storage.folder import BatchFolder

        url = self.record(batch_id).get("output_url")
        return BatchFolder(self.objects.folder(url), batch_id) if url else self.storage

    def _rewrite_outputs(self, batch_id: str) -> None:
        from genbatch.worker.finalize import write_outputs

        total = self.record(batch_id).total
        files = write_outputs(self.batch_storage(batch_id), batch_id,
                              self.store.items.of_batch(batch_id, total),
                              presign_s=self.settings.presign_results_s,
                              reviews=self.store.reviews.all(batch_id))
        self.store.batches.set_fields(batch_id, {
            "results_jsonl": files.results_jsonl, "results_csv": files.results_csv,
            "errors_jsonl": files.errors_jsonl})

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


def check_batch_wide(provider: str | None, input_roots: Roots) -> None:
    """Batch-wide options, checked once before the manifest is read (a bad one would
    otherwise be reported on every row): a known provider, input folders that exist,
    bucket prefixes that are s3://bucket/prefix."""
    from genbatch import providers
    from genbatch.storage.roots import object_root

    if provider is not None and provider not in providers.names():
        raise GenbatchError(f"--provider {provider}: unknown provider; choose one of "
                            f"{', '.join(providers.names())}")
    for root in input_roots:
        if isinstance(root, str):
            try:
                object_root(root)
            except StorageError as exc:
                raise GenbatchError(f"--input-root {root}: {exc}") from None
        elif not root.expanduser().is_dir():
            raise GenbatchError(f"--input-root {root}: no such folder")
