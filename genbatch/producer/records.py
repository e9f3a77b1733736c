"""Item records as the producer writes them, and the local images they refer to.

A record is what `store.ingest.add_items` stores for one manifest row: every value a string.
A valid row's record is `pending` with its normalised request (`req`); a bad row's is
`failed` with `error_code` `invalid_row`, so the row still lands in errors.jsonl. Local
images are copied once each into object storage (`inputs/<sha256>.<ext>`) and the request
refers to them as `stored:<key>` (`genbatch.images.STORED_PREFIX`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from genbatch.errors import ManifestError
from genbatch.images import STORED_PREFIX, is_chained, is_data_uri, is_remote, sniff_format
from genbatch.models import GenerationRequest, ItemState
from genbatch.producer.manifest import IMAGE_FIELDS
from genbatch.producer.validate import MAX_CACHED_REFS, ValidRow
from genbatch.producer.variants import variant_label
from genbatch.storage import ObjectStorage
from genbatch.storage.urls import is_object_url

# One encoder each, built once: json.dumps with options builds a new one per call.
_row_json = json.JSONEncoder(ensure_ascii=False, default=str).encode
_request_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def item_record(seq: int, row: ValidRow, request_json: str) -> dict[str, str]:
    """The record of a valid row's item, pending (every value a string); a variant's item
    also holds its values (`variant`, JSON) for the results."""
    record = {
        "seq": str(seq),
        "line": str(row.line),
        "custom_id": row.custom_id,
        "provider": row.provider,
        "model": row.model,
        "state": ItemState.PENDING.value,
        "req": request_json,
        "row": row.text if row.text is not None else _row_json(row.row),
        "est_cost": "" if row.est_cost is None else repr(row.est_cost),
    }
    label = variant_label(row)
    if label is not None:
        record["variant"] = _row_json(label)
    return record


def invalid_record(
    seq: int, line: int, data: dict[str, Any], problems: list[ManifestError],
    text: str | None = None,
) -> dict[str, str]:
    """The record of a bad row's item: failed `invalid_row`, its problems as the message."""
    return {
        "seq": str(seq),
        "line": str(line),
        "custom_id": str(data.get("custom_id") or f"line-{line}"),
        "provider": str(data.get("provider") or ""),
        "model": str(data.get("model") or ""),
        "state": ItemState.FAILED.value,
        "row": text if text is not None else _row_json(data),
        "error_code": "invalid_row",
        "error_message": "; ".join(f"{p.field}: {p.reason}" if p.field else p.reason
                                   for p in problems),
    }


class ImageUploader:
    """Copies each distinct local image once into object storage, content-addressed."""

    def __init__(self, storage: ObjectStorage | None) -> None:
        self.storage = storage
        self.done: dict[str, str] = {}  # local path -> stored reference (bounded)
        self.remote: set[str] = set()  # references seen to be URLs (bounded, see below)

    def request_json(self, request: GenerationRequest) -> str:
        """The request as stored in the item (`req`), local images as stored objects."""
        updates = {}
        for name in IMAGE_FIELDS:
            ref = getattr(request, name)
            if ref is None or ref in self.remote or is_chained(ref):
                continue
            if ref in self.done:
                updates[name] = self.done[ref]
                continue
            if is_remote(ref) or is_data_uri(ref) or is_object_url(ref):
                if len(self.remote) >= MAX_CACHED_REFS:
                    self.remote.clear()
                self.remote.add(ref)
                continue
            updates[name] = self._upload(Path(ref))
        text = request.model_dump_json(exclude_none=True)
        for name, stored in updates.items():
            # `"image":"…"` can only be the field itself: a quote inside a JSON string is
            # escaped, so the pattern cannot start inside another value.
            local = getattr(request, name)
            text = text.replace(f'"{name}":{_request_json(local)}',
                                f'"{name}":{_request_json(stored)}', 1)
        return text

    def _upload(self, path: Path) -> str:
        key = str(path)
        if key not in self.done:
            assert self.storage is not None
            if len(self.done) >= MAX_CACHED_REFS:
                self.done.clear()  # bounded: a repeat after this costs one `exists` call
            with path.open("rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
                fh.seek(0)
                fmt = sniff_format(fh.read(64))
            object_key = f"inputs/{digest}.{fmt}"
            if not self.storage.exists(object_key):
                self.storage.put_file(object_key, path, content_type=f"image/{fmt}")
            self.done[key] = STORED_PREFIX + object_key
        return self.done[key]
