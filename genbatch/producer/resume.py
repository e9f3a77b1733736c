"""`submit MANIFEST --resume BATCH`: bring an existing batch up to date with a manifest.

Rows are matched to the batch's items by custom_id. A row whose item already succeeded, or
is still running, is left alone. A row whose item ended failed, expired, cancelled or
ambiguous is replaced by the row as it is now (so a fixed errors.jsonl can be resubmitted:
its images may come from the folders the batch's own came from)
and queued again, its past attempt kept in the item's history. A new custom_id becomes a
new item of the batch. The whole manifest is validated first: a bad row changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from genbatch import providers
from genbatch.errors import GenbatchError, ManifestError
from genbatch.models import BatchStatus, ItemState
from genbatch.producer.ingest import IngestResult, ingest_manifest
from genbatch.producer.manifest import ManifestSource, Row, iter_rows, manifest_source
from genbatch.producer.options import BatchOptions
from genbatch.producer.records import ImageUploader, invalid_record, item_record
from genbatch.producer.validate import RowValidator, ValidRow
from genbatch.producer.variants import Expansion, VariantLimits
from genbatch.records import Batch, Item
from genbatch.storage import ObjectStorage
from genbatch.storage.roots import SEPARATOR, batch_object_roots
from genbatch.storage.urls import ObjectUrls
from genbatch.store import JobStore
from genbatch.store.budget import set_budget, unpriced_message
from genbatch.store.history import attempt_reset

REPLACEABLE = (ItemState.FAILED, ItemState.EXPIRED, ItemState.CANCELLED, ItemState.AMBIGUOUS)


def batch_input_roots(batch: Batch) -> tuple[Path, ...]:
    """The folders the batch's own images came from (its manifest's, its --input-root ones):
    a resumed manifest (often the batch's errors.jsonl, which names them) may use them."""
    manifest = batch.get("manifest") or ""
    roots = [Path(manifest).parent] if manifest else []
    roots += [Path(r) for r in (batch.get("input_roots") or "").split(os.pathsep) if r]
    return tuple(roots)


def resume_manifest(
    path: Path | str | ManifestSource, batch_id: str, *, store: JobStore,
    storage: ObjectStorage, provider: str | None, model: str | None,
    skip_invalid: bool = False, budget_usd: float | None = None,
    objects: ObjectUrls | None = None, input_roots: tuple[Path, ...] = (),
    limits: VariantLimits | None = None,
    object_roots: tuple[str, ...] = (),
) -> tuple[IngestResult, dict[str, int]]:
    """Apply `path` to batch `batch_id`; returns the validation result and what changed.

    Images may come from the batch's own folders and bucket prefixes and the given ones;
    the resumed manifest's prefix and the given ones join the batch's recorded prefixes
    (what the worker checks) once the manifest is known to be good.

    `budget_usd` (submit --resume --budget) becomes the batch's budget once the manifest is
    known to be good, before anything is queued: a refused manifest changes nothing."""
    source = manifest_source(path, objects)
    batch = store.batches.get(batch_id)
    if batch.status is BatchStatus.VALIDATING:
        raise GenbatchError(f"batch {batch_id} never finished validating; submit it again")
    options = BatchOptions.from_meta(batch)  # the batch's --tier etc. apply to new rows too
    input_roots = (*batch_input_roots(batch), *input_roots)
    object_roots = (*batch_object_roots(batch), *object_roots)
    checked = ingest_manifest(source, store=None, storage=None, provider=provider, model=model,
                              skip_invalid=skip_invalid, dry_run=True, options=options,
                              objects=objects, input_roots=input_roots, limits=limits,
                              object_roots=object_roots)
    if checked.chained:
        raise GenbatchError(
            f"{source.name}: {checked.chained} row(s) chain on another row (@custom_id), and "
            "a chain cannot join a running batch: `genbatch retry` brings parent_failed shots "
            "back with their parent, or submit these rows as a new batch")
    if (budget_usd is not None or options.budget_usd is not None) and checked.unpriced:
        raise GenbatchError(unpriced_message(checked.unpriced))
    if budget_usd is not None:
        set_budget(store, batch_id, budget_usd, providers.names())
    existing = {rec.custom_id: rec for rec in store.items.of_batch(batch_id, batch.total)}
    validator = RowValidator(source.location, provider, model, options.row_defaults(),
                             objects=objects, input_roots=input_roots,
                             object_roots=object_roots)
    recorded = dict.fromkeys((*batch_object_roots(batch), *validator.allowed_object_roots))
    store.batches.set_fields(batch_id, {"object_roots": SEPARATOR.join(recorded)})
    changes = _Changes(store, batch_id, batch.total, ImageUploader(storage))
    try:
        _apply_rows(Expansion(iter_rows(source), source.name, limits), validator, existing,
                    changes)
    finally:
        validator.close()  # its temporary custom_id file
    changes.write_new_items()
    return checked, changes.counts


def _apply_rows(rows: Expansion, validator: RowValidator, existing: dict[str, Item],
                changes: _Changes) -> None:
    """Match each row (each variant: a row of its own) to the batch's item by custom_id:
    add it, replace the item, or keep it."""
    for row in rows:
        outcome = validator.validate(row)
        custom_id = outcome.custom_id if isinstance(outcome, ValidRow) else \
            str(row.data.get("custom_id") or f"line-{row.line}")
        old = existing.get(custom_id)
        if old is None:
            changes.add(row, outcome)
        elif isinstance(outcome, ValidRow) and old.state in REPLACEABLE:
            changes.replace(old, outcome)
        else:
            changes.counts["kept"] += 1


class _Changes:
    """What a resumed manifest does to its batch: replaced items are queued again at once,
    new ones are gathered and written together at the end."""

    def __init__(self, store: JobStore, batch_id: str, total: int,
                 uploads: ImageUploader) -> None:
        self.store = store
        self.batch_id = batch_id
        self.seq = total  # the last item's seq; new items follow it
        self.uploads = uploads
        self.counts = {"added": 0, "replaced": 0, "kept": 0}
        self.new_records: list[dict[str, str]] = []
        self.reopened = False

    def add(self, row: Row, outcome: ValidRow | list[ManifestError]) -> None:
        """A new custom_id: a new item (an invalid one records its problems)."""
        self.seq += 1
        if isinstance(outcome, ValidRow):
            req = self.uploads.request_json(outcome.request)
            self.new_records.append(item_record(self.seq, outcome, req))
        else:
            self.new_records.append(invalid_record(self.seq, row.line, row.data, outcome,
                                                   row.text))
        self.counts["added"] += 1

    def replace(self, old: Item, outcome: ValidRow) -> None:
        """An item that ended without a video: the row as it is now, queued again."""
        record = item_record(old.seq, outcome, self.uploads.request_json(outcome.request))
        record.pop("state")
        record.setdefault("variant", "")  # a variant replaced by a plain row is none any more
        record.update(attempt_reset(old), error_code="", error_message="")
        self._reopen()  # before the first item is queued, so it can finish normally
        if old.state is not None and self.store.items.transition(
                old.id, [old.state], ItemState.PENDING, timer="-", fields=record,
                queue="back").applied:
            self.counts["replaced"] += 1

    def write_new_items(self) -> None:
        if self.new_records:
            self._reopen()
            # pending ones go onto their queues with it
            self.store.ingest.add_items(self.batch_id, self.new_records)

    def _reopen(self) -> None:
        if not self.reopened:
            self.store.batches.reopen(self.batch_id)
            self.reopened = True
