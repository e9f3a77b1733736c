"""The output manifests of a finished batch: results.jsonl, results.csv, errors.jsonl.

Every item lands in exactly one place: succeeded items in the results files, every other
item in errors.jsonl as its original row plus `status`, `error_code` and `error_message`,
so that file can be fixed and submitted again as a manifest. Files are written to temporary
files in one pass over the items and then stored, so memory stays flat.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genbatch import providers
from genbatch.errors import ConfigError
from genbatch.models import ItemState, Review
from genbatch.records import Item
from genbatch.storage import ObjectStorage, batch_key, object_key
from genbatch.store.history import attempt_history, compact_history, failed_over_from

# Every key of `result_row`, in its order: the header of results.csv, so the CSV has every
# field of results.jsonl (tests/test_outputs.py holds the two together).
RESULT_FIELDS: tuple[str, ...] = (
    "custom_id", "line", "status", "output_uri", "sha256", "bytes", "provider", "account",
    "model", "provider_model", "remote_task_id", "seed", "cost_usd", "submitted_at", "finished_at",
    "error_code", "error_message", "attempts", "possibly_paid_twice", "failed_over_from",
    "attempt_history", "parent_custom_id", "input_frame", "takes", "review", "variant",
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class OutputFiles:
    results_jsonl: str
    results_csv: str
    errors_jsonl: str
    succeeded: int
    errors: int


def result_row(record: Mapping[str, str],
               review: Review = Review.NOT_REVIEWED) -> dict[str, Any]:
    """One line of results.jsonl from an item record and its review verdict."""
    item = Item.view(record)
    return {
        "custom_id": item.custom_id,
        "line": item.line or None,
        "status": item.state or "",  # an ItemState (a StrEnum: written as its value)
        "output_uri": item.output_uri or None,
        "sha256": item.sha256 or None,
        "bytes": item.bytes,
        "provider": item.provider or None,
        "account": item.account or None,
        "model": item.model or None,
        "provider_model": provider_model(item),
        "remote_task_id": item.remote_id or None,
        "seed": item.seed,
        "cost_usd": _round(item.cost),
        "submitted_at": _iso(item.submitted_at),
        "finished_at": _iso(item.finished_at),
        "error_code": item.error_code or None,
        "error_message": item.error_message or None,
        "attempts": item.attempts,
        # a Redis restart may have lost a submit of it (worker/recovery.py)
        "possibly_paid_twice": bool(item.possibly_paid_twice),
        # failover (genbatch/worker/failover.py): where the first attempt ran, and every attempt
        "failed_over_from": failed_over_from(item),
        "attempt_history": attempt_history(item),
        # chains (worker/chains.py): the shot it started from, and that shot's last frame
        "parent_custom_id": item.parent or None,
        "input_frame": item.input_frame or None,
        # review and redo (worker/redo.py): videos generated, and the verdict on this one
        "takes": item.takes,
        "review": review.value,
        # a variant's values (producer/variants.py), e.g. {"ratio": "9:16", "seed": 1}
        "variant": variant_values(item),
    }


def variant_values(item: Item) -> dict[str, Any] | None:
    """The values that made the item one variant of its row; None for a plain row."""
    try:
        values = json.loads(item.variant_json or "null")
    except ValueError:
        return None
    return values if isinstance(values, dict) else None


def provider_model(record: Mapping[str, str]) -> str | None:
    """The model as its provider names it (e.g. WaveSpeed's `bytedance/...` path)."""
    item = Item.view(record)
    if not item.provider or not item.model:
        return None
    try:
        resolution = json.loads(item.request_json).get("resolution")
        return providers.provider_model_id(item.provider, item.model, resolution)
    except (ConfigError, ValueError, AttributeError):
        return item.model


def error_row(record: Mapping[str, str]) -> dict[str, Any]:
    """One line of errors.jsonl: the original row, resubmittable, plus what went wrong."""
    item = Item.view(record)
    row: dict[str, Any] = original_row(item)
    row.setdefault("custom_id", item.custom_id)
    row["line"] = item.line or None
    row["status"] = item.state or ""
    row["error_code"] = item.error_code or None
    row["error_message"] = item.error_message or None
    row["attempts"] = item.attempts
    row["possibly_paid_twice"] = bool(item.possibly_paid_twice)
    return row


def original_row(item: Item) -> dict[str, Any]:
    """The manifest row the item came from, as it was read."""
    row = json.loads(item.row_text or "{}")
    return row if isinstance(row, dict) else {}


def csv_safe(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def write_outputs(storage: ObjectStorage, batch_id: str,
                  items: Iterable[Mapping[str, str]], presign_s: int = 0,
                  reviews: Mapping[int, Review] | None = None) -> OutputFiles:
    """`reviews` are the batch's verdicts by item seq (store/review.py). `presign_s` > 0
    adds `presigned_url` (valid that long) to each results row, where the
    storage can sign URLs (S3; null for a folder)."""
    fields = RESULT_FIELDS + (("presigned_url",) if presign_s else ())
    with tempfile.TemporaryDirectory(prefix="genbatch-out-") as tmp:
        folder = Path(tmp)
        paths = {n: folder / n for n in ("results.jsonl", "results.csv", "errors.jsonl")}
        ok = bad = 0
        with (paths["results.jsonl"].open("w", encoding="utf-8") as rj,
              paths["results.csv"].open("w", encoding="utf-8", newline="") as rc,
              paths["errors.jsonl"].open("w", encoding="utf-8") as ej):
            writer = csv.writer(rc)
            writer.writerow(fields)
            for item in map(Item.view, items):
                if item.state is ItemState.SUCCEEDED:
                    row = result_row(item, (reviews or {}).get(item.seq, Review.NOT_REVIEWED))
                    if presign_s:
                        row["presigned_url"] = storage.presigned_url(
                            object_key(batch_id, item.custom_id), presign_s)
                    rj.write(json.dumps(row, ensure_ascii=False) + "\n")
                    writer.writerow([csv_safe(_csv_cell(row, f)) for f in fields])
                    ok += 1
                else:
                    ej.write(json.dumps(error_row(item), ensure_ascii=False) + "\n")
                    bad += 1
        uris = {
            name: storage.put_file(batch_key(batch_id, name), path,
                                   content_type=_content_type(name)).uri
            for name, path in paths.items()
        }
    return OutputFiles(uris["results.jsonl"], uris["results.csv"], uris["errors.jsonl"], ok, bad)


def _csv_cell(row: dict[str, Any], name: str) -> Any:
    """A results.csv cell: the value, the attempt history compacted, a variant as JSON."""
    if name == "attempt_history":
        return compact_history(row[name])
    value = row.get(name)
    if name == "variant" and value is not None:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def _content_type(name: str) -> str:
    return "text/csv" if name.endswith(".csv") else "application/x-ndjson"


def _round(value: float | None) -> float | None:
    return round(value, 6) if value is not None else None


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
