"""Output manifests: results.csv has every field of results.jsonl, and errors.jsonl can be
fixed and submitted again from its own folder (image paths absolute)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from genbatch.storage import LocalStorage
from genbatch.worker.finalize import RESULT_FIELDS, result_row, write_outputs


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
