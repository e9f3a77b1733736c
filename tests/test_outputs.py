"""Output manifests: results.csv has every field of results.jsonl, and errors.jsonl can be
fixed and submitted again from its own folder (image paths absolute)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from genbatch.models import ItemState
from genbatch.producer.ingest import ingest_manifest
from genbatch.producer.resume import resume_manifest
from genbatch.storage import LocalStorage, open_storage
from genbatch.store import JobStore, item_id
from genbatch.worker.finalize import RESULT_FIELDS, result_row, write_outputs

HEADER = "custom_id,prompt,image,duration\n"


def test_results_csv_has_every_field_of_results_jsonl(tmp_path: Path) -> None:
    # Given a succeeded item that failed over once (attempts 2, a history)
    history = [{"provider": "novita", "model": "m", "state": "failed", "error_code": "x"},
               {"provider": "byteplus", "model": "m", "state": "succeeded"}]
    item = {"state": "succeeded", "custom_id": "a", "line": "2", "output_uri": "file:///v",
            "attempts": "2", "provider": "byteplus", "model": "m",
            "failed_over_from": "novita:m", "history": json.dumps(history)}
    storage = LocalStorage(tmp_path)
    # When the outputs are written
    write_outputs(storage, "b1", [item])
    # Then the CSV has a column for every key of the JSONL row, in the same order
    jsonl = json.loads(storage.get_bytes("b1/results.jsonl").decode())
    [row] = list(csv.DictReader(io.StringIO(storage.get_bytes("b1/results.csv").decode())))
    assert list(row) == list(jsonl) == list(RESULT_FIELDS) == list(result_row(item))
    assert row["attempts"] == "2"
    assert row["failed_over_from"] == "novita:m"


def test_a_fixed_errors_jsonl_resubmits_from_its_own_folder(store: JobStore,
                                                            folder: Path) -> None:
    # Given a batch whose second row was refused (relative image path, bad duration)
    manifest = folder / "m.csv"
    manifest.write_text(HEADER + "a,p,images/sneaker.jpg,5\nb,p,images/watch.jpg,99\n",
                        encoding="utf-8")
    storage = open_storage(str(folder / "out"))
    result = ingest_manifest(manifest, store=store, storage=storage, provider="novita",
                             model="seedance-v1.5-pro-i2v", skip_invalid=True)
    batch_id = str(result.batch_id)
    store.items.transition(item_id(batch_id, 1), [ItemState.PENDING], ItemState.CANCELLED)
    # When its outputs are written, and the user fixes errors.jsonl where it lies
    write_outputs(storage, batch_id, store.items.of_batch(batch_id, 2))
    errors_path = folder / "out" / batch_id / "errors.jsonl"
    rows = [json.loads(x) for x in errors_path.read_text(encoding="utf-8").splitlines()]
    assert [r["custom_id"] for r in rows] == ["a", "b"]
    assert all(Path(r["image"]).is_absolute() and Path(r["image"]).is_file() for r in rows)
    rows[1]["duration"] = 5
    errors_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    # Then it is a valid manifest from its own folder (its images allowed by --input-root),
    # and --resume matches it by custom_id (the batch's own image folders are allowed)
    checked = ingest_manifest(errors_path, store=None, storage=None, provider="novita",
                              model="seedance-v1.5-pro-i2v", dry_run=True,
                              input_roots=(folder,))
    assert (checked.valid, checked.invalid) == (2, 0)
    _, changes = resume_manifest(errors_path, batch_id, store=store, storage=storage,
                                 provider="novita", model="seedance-v1.5-pro-i2v")
    assert changes == {"added": 0, "replaced": 2, "kept": 0}
