"""Files from object storage, as the dashboard serves them: a batch's videos and output
manifests (confined to the batch's prefix), input images the items refer to, and the JSONL
manifests read as table rows.

Local storage: the dashboard sends the file itself (with Range support, so a `<video>`
can seek). S3: a redirect to a presigned URL, so the bytes never pass through here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from starlette.responses import (
    FileResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from genbatch.errors import StorageError
from genbatch.storage import LocalStorage, ObjectStorage
from genbatch.storage.keys import check_key

# A file directly under a batch's prefix: what safe_name and batch_key produce.
_BATCH_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,250}")
MEDIA_TYPES = {".mp4": "video/mp4", ".jsonl": "application/x-ndjson", ".csv": "text/csv",
               ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".webp": "image/webp", ".gif": "image/gif"}
PRESIGN_S = 3600


def not_found(why: str = "no such file") -> Response:
    return PlainTextResponse(why, status_code=404)


def batch_file(storage: ObjectStorage, batch_id: str, name: str) -> Response:
    """`<batch_id>/<name>`, refused (404) unless `name` is one plain file name under the
    batch's own prefix: no `/`, no `..`, no leading dot, no link leading elsewhere."""
    if not _BATCH_FILE.fullmatch(name) or ".." in name:
        return not_found()
    return stored_object(storage, f"{batch_id}/{name}", confine_to=batch_id)


def stored_object(storage: ObjectStorage, key: str, confine_to: str = "") -> Response:
    """The object at `key` (a presigned redirect, or the local file), 404 when missing or
    when it resolves outside `confine_to/` (or outside storage) on a local folder."""
    try:
        check_key(key)
        if isinstance(storage, LocalStorage):
            return _local_file(storage.root, key, confine_to)
        url = storage.presigned_url(key, expires_s=PRESIGN_S)
        if url:
            return RedirectResponse(url, status_code=307)
        reader = storage.open_read(key)
    except StorageError:
        return not_found()
    return StreamingResponse(_chunks(reader), media_type=_media_type(key))


def _local_file(root: Path, key: str, confine_to: str) -> Response:
    # resolve() follows symlinks: a link inside the prefix that points out is refused too.
    path = (root / key).resolve()
    fence = (root / confine_to).resolve() if confine_to else root
    if path == fence or not path.is_relative_to(fence) or not path.is_file():
        return not_found()
    return FileResponse(path, media_type=_media_type(key))


def _media_type(key: str) -> str:
    return MEDIA_TYPES.get(Path(key).suffix.lower(), "application/octet-stream")


def _chunks(reader: BinaryIO) -> Iterator[bytes]:
    with reader:
        while chunk := reader.read(1 << 16):
            yield chunk


def jsonl_rows(storage: ObjectStorage, key: str, offset: int,
               limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Rows `offset`..`offset+limit` of a JSONL object (read as a stream, never whole), and
    whether more follow. Raises StorageError when it cannot be read."""
    rows: list[dict[str, Any]] = []
    with storage.open_read(key) as reader:
        for n, line in enumerate(reader):
            if n < offset or not line.strip():
                continue
            if len(rows) == limit:
                return rows, True
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                value = {"unreadable line": line.decode(errors="replace")[:200]}
            rows.append(value if isinstance(value, dict) else {"value": value})
    return rows, False
