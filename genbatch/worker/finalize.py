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
from genbatch.models import ItemState
from genbatch.storage import ObjectStorage, batch_key, object_key
from genbatch.store.history import attempt_history, compact_history, failed_over_from

# Every key of `result_row`, in its order: the header of results.csv, so the CSV has every
# field of results.jsonl (tests/test_outputs.py holds the two together).
RESULT_FIELDS: tuple[str, ...] = (
    "custom_id", "line", "status", "output_uri", "sha256", "bytes", "provider", "account",
    "model", "provider_model", "remote_task_id", "seed", "cost_usd", "submitted_at", "finished_at",
    "error_code", "error_message", "attempts", "failed_over_from", "attempt_history",
    "variant",
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class OutputFiles:
    results_jsonl: str
    results_csv: str
    errors_jsonl: str
    succeeded: int
    errors: int


def result_row(item: Mapping[str, str]) -> dict[str, Any]:
    """One line of results.jsonl from an item record."""
    return {
        "custom_id": item.get("custom_id", ""),
        "line": _int(item.get("line")),
        "status": item.get("state", ""),
        "output_uri": item.get("output_uri") or None,
        "sha256": item.get("sha256") or None,
        "bytes": _int(item.get("bytes")),
        "provider": item.get("provider") or None,
        "account": item.get("account") or None,
        "model": item.get("model") or None,
        "provider_model": provider_model(item),
        "remote_task_id": item.get("remote_id") or None,
        "seed": _int(item.get("seed")),
        "cost_usd": _float(item.get("cost")),
        "submitted_at": _iso(item.get("submitted_at")),
        "finished_at": _iso(item.get("finished_at")),
        "error_code": item.get("error_code") or None,
        "error_message": item.get("error_message") or None,
        "attempts": _int(item.get("attempts")),
        # failover (genbatch/worker/failover.py): where the first attempt ran, and every attempt
        "failed_over_from": failed_over_from(item),
        "attempt_history": attempt_history(item),
        # a variant's values (producer/variants.py), e.g. {"ratio": "9:16", "seed": 1}
        "variant": variant_values(item),
    }


def variant_values(item: Mapping[str, str]) -> dict[str, Any] | None:
    """The values that made the item one variant of its row; None for a plain row."""
    try:
        values = json.loads(item.get("variant") or "null")
    except ValueError:
        return None
    return values if isinstance(values, dict) else None


def provider_model(item: Mapping[str, str]) -> str | None:
    """The model as its provider names it (e.g. WaveSpeed's `bytedance/...` path)."""
    provider, model = item.get("provider"), item.get("model")
    if not provider or not model:
        return None
    try:
        resolution = json.loads(item.get("req") or "{}").get("resolution")
        return providers.provider_model_id(provider, model, resolution)
    except (ConfigError, ValueError, AttributeError):
        return model


def error_row(item: Mapping[str, str]) -> dict[str, Any]:
    """One line of errors.jsonl: the original row, resubmittable, plus what went wrong."""
    row: dict[str, Any] = json.loads(item.get("row") or "{}")
    row.setdefault("custom_id", item.get("custom_id", ""))
    row["line"] = _int(item.get("line"))
    row["status"] = item.get("state", "")
    row["error_code"] = item.get("error_code") or None
    row["error_message"] = item.get("error_message") or None
    row["attempts"] = _int(item.get("attempts"))
    return row


def csv_safe(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def write_outputs(storage: ObjectStorage, batch_id: str,
                  items: Iterable[Mapping[str, str]], presign_s: int = 0) -> OutputFiles:
    """`presign_s` > 0 adds `presigned_url` (valid that long) to each results row, where the
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
            for item in items:
                if item.get("state") == ItemState.SUCCEEDED:
                    row = result_row(item)
                    if presign_s:
                        row["presigned_url"] = storage.presigned_url(
                            object_key(batch_id, item.get("custom_id", "")), presign_s)
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


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return round(float(value), 6) if value not in (None, "") else None
    except ValueError:
        return None


def _iso(value: str | None) -> str | None:
    ts = _float(value)
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
