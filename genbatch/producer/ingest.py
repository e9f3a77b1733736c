"""Ingest: stream a manifest into a new batch in the job store.

One pass over the file: each row is validated and written (in pipelined chunks) to a batch
that stays `validating`, invisible to the dispatcher; the batch itself is created with its
first chunk, so a refused manifest of up to CHUNK rows never touches the store. At the end
the manifest-wide checks run (checks.py: keys on live workers, budget, fallback) and the
batch is committed — or, if any row was bad and the user did not pass `skip_invalid`, or a
check refuses it, deleted again, so a refused manifest leaves nothing behind. Local images
are copied once each into object storage (`inputs/<sha256>.<ext>`), so workers on other
machines can read them. A row with variants becomes one item per variant, each validated
and written as a row of its own (variants.py, within the `limits` given).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from genbatch.errors import GenbatchError, ManifestError, ManifestRejected
from genbatch.producer import chains
from genbatch.producer.checks import ManifestChecks
from genbatch.producer.manifest import ManifestSource, Row, iter_rows, manifest_source
from genbatch.producer.options import BatchOptions
from genbatch.producer.records import ImageUploader, invalid_record, item_record
from genbatch.producer.validate import (
    RowValidator,
    ValidRow,
    duplicate_reason,
)
from genbatch.producer.variants import Expansion, VariantLimits
from genbatch.storage import ObjectStorage
from genbatch.storage.roots import SEPARATOR
from genbatch.storage.urls import ObjectUrls
from genbatch.store import JobStore, item_id
from genbatch.store.budget import unpriced_message
from genbatch.store.heartbeats import Beat
from genbatch.store.writer import Duplicate

CHUNK = 1000
MAX_REPORTED_ERRORS = 200


@dataclass
class IngestResult:
    """What ingest did: the batch id (None on a dry run), counts and estimated cost.
    `rows` counts items (a row's variants each count); `source_rows` the manifest's rows.
    `errors` are the first MAX_REPORTED_ERRORS of `problems` (every problem of every bad
    row); `warnings` do not stop the batch (on a dry run: what would refuse it, too)."""

    batch_id: str | None
    rows: int = 0
    source_rows: int = 0
    valid: int = 0
    invalid: int = 0
    errors: list[ManifestError] = field(default_factory=list)
    problems: int = 0
    warnings: list[str] = field(default_factory=list)
    est_cost: float = 0.0
    unpriced: int = 0
    by_model: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    budget_usd: float | None = None  # --budget: count the rows that fit, in manifest order
    fit: int = 0
    fit_cost: float = 0.0
    chained: int = 0  # rows whose image is another row's last frame (`@custom_id`)

    def count(self, row: ValidRow) -> None:
        self.valid += 1
        if self.budget_usd is not None and self.fit == self.valid - 1 and \
                row.est_cost is not None and self.fit_cost + row.est_cost <= self.budget_usd:
            self.fit += 1
            self.fit_cost += row.est_cost
        n, cost = self.by_model.get((row.provider, row.model), (0, 0.0))
        self.by_model[(row.provider, row.model)] = (n + 1, cost + (row.est_cost or 0.0))
        if row.est_cost is None:
            self.unpriced += 1
        else:
            self.est_cost += row.est_cost

    def report(self, errors: list[ManifestError]) -> None:
        self.problems += len(errors)
        room = MAX_REPORTED_ERRORS - len(self.errors)
        self.errors.extend(errors[: max(room, 0)])


def new_batch_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def ingest_manifest(
    path: Path | str | ManifestSource,
    *,
    store: JobStore | None,
    storage: ObjectStorage | None,
    provider: str | None,
    model: str | None,
    skip_invalid: bool = False,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    options: BatchOptions | None = None,
    workers: list[Beat] | None = None,
    batch_id: str | None = None,
    objects: ObjectUrls | None = None,
    input_roots: tuple[Path, ...] = (),
    limits: VariantLimits | None = None,
    object_roots: tuple[str, ...] = (),
) -> IngestResult:
    """Validate every row of `path`; unless `dry_run`, write them as a new batch.

    Raises ManifestRejected (nothing written) when rows are bad and `skip_invalid` is off,
    or when a manifest-wide check refuses it (`workers`: the live workers' heartbeats, for
    the key check; None skips it). Local images must lie in the manifest's folder or one of
    `input_roots`; `s3://` images in its bucket prefix or one of `object_roots` (recorded on
    the batch: the worker checks them again). custom_ids are made unique in Redis as the
    chunks are written (a dry run keeps them in a temp file, see validate.py): flat memory.
    `path` may be an object URL (`s3://…`, read through `objects`), as may its images.
    """
    source = manifest_source(path, objects)
    options = options or BatchOptions()
    result = IngestResult(None, budget_usd=options.budget_usd)
    validator = RowValidator(source.location, provider, model, options.row_defaults(),
                             check_ids=dry_run, objects=objects, input_roots=input_roots,
                             object_roots=object_roots)
    writer = None
    if not dry_run:
        if store is None or storage is None:
            raise ValueError("ingest needs a store and a storage unless dry_run")
        writer = _BatchWriter(store, storage, source.name, provider, model, options, result,
                              batch_id)
        writer.note_input_roots(input_roots, validator.allowed_object_roots)
    checks = ManifestChecks(workers, options.budget_usd, options.fallback)
    graph = chains.ChainGraph(source.name)
    providers_used: set[str] = set()
    committed = False
    try:
        _validate_rows(Expansion(iter_rows(source), source.name, limits), validator, checks,
                       result, writer, providers_used, graph, skip_invalid=skip_invalid,
                       progress=progress)
        _conclude(source.name, result, checks, skip_invalid=skip_invalid, dry_run=dry_run)
        if writer is not None:
            _commit(writer, result, options.budget_usd, sorted(providers_used), graph)
        committed = True
    finally:
        validator.close()
        if writer is not None and not committed:
            writer.discard(result.rows, sorted(providers_used))
    if progress is not None:
        progress(result.rows)
    return result


def _validate_rows(rows: Expansion, validator: RowValidator, checks: ManifestChecks,
                   result: IngestResult, writer: _BatchWriter | None, providers_used: set[str],
                   graph: chains.ChainGraph, *, skip_invalid: bool,
                   progress: Callable[[int], None] | None) -> None:
    """Validate each row (each variant: a row of its own) in turn, tally it in `result`,
    `checks` and `graph` and, with a `writer`, write it; with a writer, every row is counted
    when this returns. Then the chain links are checked (a broken one makes its row
    invalid)."""
    for seq, row in enumerate(rows, start=1):
        result.rows = seq
        result.source_rows = rows.read
        outcome = validator.validate(row)
        if isinstance(outcome, ValidRow):
            providers_used.add(outcome.provider)
            checks.see(outcome)
            graph.see(seq, row.line, outcome.custom_id, outcome.request)
            if writer is None:
                result.count(outcome)  # else once its chunk is written (no repeat)
        else:
            result.invalid += 1
            result.report(outcome)
            graph.see(seq, row.line, validator.custom_id_of(row), None)
        if writer is not None:
            _write_row(writer, validator, seq, row, outcome,
                       write=skip_invalid or not result.invalid)
        if progress is not None and seq % CHUNK == 0:
            progress(seq)
    if writer is not None:
        writer.drain()
        result.errors.sort(key=lambda e: e.line or 0)  # repeats are found a chunk late
    _check_chains(graph, result)
    provider = validator.default_provider
    if provider and result.valid and provider not in providers_used:
        result.warnings.append(f"--provider {provider} applies to no row: every row "
                               "names its own provider")


def _check_chains(graph: chains.ChainGraph, result: IngestResult) -> None:
    """The manifest's chain links, once every row is read: a broken one makes its row
    invalid (chains.py)."""
    if graph.empty:
        return
    result.chained = len(graph.children)
    problems = graph.resolve()
    result.valid -= len(problems)
    result.invalid += len(problems)
    result.report(problems)
    result.errors.sort(key=lambda e: e.line or 0)


def _write_row(writer: _BatchWriter, validator: RowValidator, seq: int, row: Row,
               outcome: ValidRow | list[ManifestError], *, write: bool) -> None:
    """Write the row, or (once a row is bad and will not be skipped, so nothing more is
    written) only check its custom_id: the rest is still validated, so every problem is
    reported in one go."""
    custom_id = outcome.custom_id if isinstance(outcome, ValidRow) else \
        validator.custom_id_of(row)
    if write:
        writer.add(seq, row, outcome, custom_id)
    elif custom_id is not None:
        writer.check(row.line, custom_id, outcome)


def _commit(writer: _BatchWriter, result: IngestResult, budget_usd: float | None,
            providers: list[str], graph: chains.ChainGraph) -> None:
    """Make the batch visible to the dispatcher, its chain links written first; a budget
    needs every row priced."""
    if budget_usd is not None and result.unpriced:
        raise GenbatchError(unpriced_message(result.unpriced))
    if not graph.empty:
        writer.drain()  # every item written before its links are
        chains.write_links(writer.store, writer.batch_id, graph)
    writer.commit(providers)


def _conclude(path: str, result: IngestResult, checks: ManifestChecks, *,
              skip_invalid: bool, dry_run: bool) -> None:
    """Warn, or refuse the manifest: its bad rows (unless skipped), and what the
    manifest-wide checks refuse (a dry run shows those as warnings)."""
    result.warnings.extend(checks.warnings())
    if dry_run:
        result.warnings.extend(f"would be refused: {r}" for r in checks.refusals())
        refused = []
    else:
        refused = [ManifestError(str(path), None, None, r) for r in checks.refusals()]
    rows = 0 if skip_invalid else result.invalid
    if not dry_run and not result.valid and not refused and (skip_invalid or not result.rows):
        # An empty batch helps nobody: the rows' problems are why nothing was submitted.
        why = ManifestError(str(path), None, None, "no valid row to submit" + (
            f" (all {result.invalid} are invalid)" if result.invalid else " (it has no row)"))
        raise ManifestRejected(str(path), [*result.errors[:MAX_REPORTED_ERRORS - 1], why],
                               result.problems + 1, result.invalid)
    if refused or rows:
        errors = refused + ([] if skip_invalid else result.errors)
        problems = len(refused) + (0 if skip_invalid else result.problems)
        raise ManifestRejected(str(path), errors[:MAX_REPORTED_ERRORS], problems, rows)


@dataclass
class _Chunk:
    records: list[dict[str, str]] = field(default_factory=list)
    unique: list[tuple[str, int] | None] = field(default_factory=list)
    check_only: list[tuple[str, int]] = field(default_factory=list)
    # (line, custom_id) -> the row if valid (a row's variants share its line)
    valid: dict[tuple[int, str | None], ValidRow | None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records) + len(self.check_only)


class _BatchWriter:
    """Writes items of a new batch in chunks; commits or discards it at the end.

    A chunk is sent to Redis and its reply read only when the next chunk is ready (at most
    one write in flight, `ItemWriter`), so Redis's time overlaps the producer's instead of
    adding to it. The write also checks the chunk's custom_ids against the batch's (in
    Redis); a repeat is counted and reported here when its write has landed.
    """

    def __init__(
        self, store: JobStore, storage: ObjectStorage, path: str,
        provider: str | None, model: str | None, options: BatchOptions, result: IngestResult,
        batch_id: str | None = None,
    ) -> None:
        self.store = store
        self.path = path
        self.result = result
        self.batch_id = result.batch_id = batch_id or new_batch_id()
        self.uploads = ImageUploader(storage)
        self.chunk = _Chunk()
        self._written: _Chunk | None = None
        self._meta: dict[str, str] | None = {
            "provider": provider or "", "model": model or "", "manifest": path,
            **options.meta()}
        self._writer = store.ingest.writer()

    def note_input_roots(self, roots: tuple[Path, ...], object_roots: tuple[str, ...]) -> None:
        """Record the batch's input folders: `submit --resume` of its errors.jsonl (whose
        image paths point into them) may read them again; and its bucket prefixes, which
        the worker checks each `s3://` image against before it signs or reads it."""
        if self._meta is not None:
            self._meta["input_roots"] = os.pathsep.join(str(r.resolve()) for r in roots)
            self._meta["object_roots"] = SEPARATOR.join(object_roots)

    def _create(self) -> None:
        """Create the batch (`validating`) once, just before its first chunk is written."""
        if self._meta is not None:
            self.store.ingest.create(self.batch_id, self._meta, created_at=time.time())
            self._meta = None

    def add(
        self, seq: int, row: Row, outcome: ValidRow | list[ManifestError], custom_id: str | None
    ) -> None:
        chunk = self.chunk
        if isinstance(outcome, ValidRow):
            record = item_record(seq, outcome, self.uploads.request_json(outcome.request))
            chains.mark(record, outcome.request)
            chunk.records.append(record)
            chunk.valid[(row.line, custom_id)] = outcome
        else:
            chunk.records.append(invalid_record(seq, row.line, row.data, outcome, row.text))
            chunk.valid[(row.line, custom_id)] = None
        chunk.unique.append(None if custom_id is None else (custom_id, row.line))
        if len(chunk) >= CHUNK:
            self.flush()

    def check(self, line: int, custom_id: str, outcome: ValidRow | list[ManifestError]) -> None:
        """A row that is not written: only its custom_id is checked."""
        self.chunk.check_only.append((custom_id, line))
        self.chunk.valid[(line, custom_id)] = outcome if isinstance(outcome, ValidRow) \
            else None
        if len(self.chunk) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if len(self.chunk):
            self._wait()
            self._create()
            chunk, self.chunk = self.chunk, _Chunk()
            args = self.store.ingest.pack(self.batch_id, chunk.records, unique=chunk.unique,
                                          check_only=chunk.check_only)
            chunk.records, chunk.unique, chunk.check_only = [], [], []
            self._written = chunk
            self._writer.send(args)

    def _fix(self, dups: list[Duplicate]) -> None:
        """The exact message of each repeat's item (the script writes a generic one)."""
        fixes = {
            item_id(self.batch_id, d.seq): {
                "error_message": "custom_id: " + duplicate_reason(d.custom_id, d.first_line)}
            for d in dups if d.seq is not None
        }
        if fixes:
            self.store.items.set_fields(fixes)

    def _wait(self) -> None:
        """Wait for the write in flight and count its rows; its error is raised here."""
        chunk, self._written = self._written, None
        if chunk is None:
            return
        dups = self._writer.receive()
        self._fix(dups)
        repeated = {(d.line, d.custom_id) for d in dups}
        for key, valid in chunk.valid.items():
            if valid is not None and key not in repeated:
                self.result.count(valid)
        for d in dups:
            if chunk.valid[(d.line, d.custom_id)] is not None:
                self.result.invalid += 1  # a valid row that turned out to be a repeat
            self.result.report([ManifestError(self.path, d.line, "custom_id",
                                              duplicate_reason(d.custom_id, d.first_line))])

    def drain(self) -> None:
        """Write what is left and wait for it: every row is counted after this."""
        self.flush()
        self._wait()

    def commit(self, providers: list[str]) -> None:
        try:
            self.drain()
        finally:
            self._writer.close()
        self.store.ingest.commit(self.batch_id, providers)

    def discard(self, rows: int, providers: list[str]) -> None:
        # The write in flight must land before the batch is deleted, or it would leave
        # orphan items; its own error does not matter any more.
        with contextlib.suppress(Exception):
            self._wait()
        self._writer.close()
        if self._meta is None:  # created
            self.store.ingest.discard(self.batch_id, rows, providers)
