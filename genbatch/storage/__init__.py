"""Object storage: where videos and batch result files end up.

    open_storage(url)  →  LocalStorage   a folder, or file:///abs/path
                      →  S3Storage      s3://bucket/prefix (AWS, MinIO, any S3 endpoint)

Keys come from `object_key` / `batch_key` (see `keys.py`): `<batch_id>/<name>`, never able
to leave the batch prefix. Every failure is a `genbatch.errors.StorageError`.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from genbatch.errors import StorageError
from genbatch.storage.base import ObjectStorage, StoredObject
from genbatch.storage.keys import batch_key, check_key, object_key, safe_name
from genbatch.storage.local import LocalStorage
from genbatch.storage.s3 import PART_SIZE, S3Storage

__all__ = [
    "PART_SIZE",
    "LocalStorage",
    "ObjectStorage",
    "S3Storage",
    "StoredObject",
    "batch_key",
    "check_key",
    "object_key",
    "open_storage",
    "safe_name",
]

ACCEPTED_FORMS = "a folder path, file:///absolute/path or s3://bucket/prefix"

# Two or more letters before the colon, so a Windows drive ("C:\out") still reads as a path.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


def open_storage(
    url: str, *, endpoint_url: str | None = None, region: str | None = None
) -> ObjectStorage:
    """The storage named by `url`: a folder (created if missing), `file:///…` or `s3://…`.

    `endpoint_url` and `region` apply to S3 only (an S3-compatible server such as MinIO).
    S3 credentials come from boto3's usual chain (AWS_* variables, profile, instance role).
    """
    text = url.strip()
    if not text:
        raise StorageError(f"storage URL is empty; use {ACCEPTED_FORMS}")
    scheme = _SCHEME.match(text)
    if scheme is None:
        return LocalStorage(Path(text).expanduser())
    name = scheme.group(1).lower()
    if name == "file":
        return LocalStorage(_file_url_path(url, text))
    if name == "s3":
        return _open_s3(url, text, endpoint_url, region)
    raise StorageError(f"unsupported storage URL {url!r}; use {ACCEPTED_FORMS}")


def _file_url_path(url: str, text: str) -> Path:
    parts = urlsplit(text)
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost") or not path.startswith("/") or parts.query:
        raise StorageError(
            f"storage URL {url!r} is not a file:///absolute/path; use {ACCEPTED_FORMS}"
        )
    return Path(path)


def _open_s3(url: str, text: str, endpoint_url: str | None, region: str | None) -> S3Storage:
    parts = urlsplit(text)
    if not _BUCKET.fullmatch(parts.netloc) or parts.query or parts.fragment:
        raise StorageError(
            f"storage URL {url!r} is not s3://bucket or s3://bucket/prefix; use {ACCEPTED_FORMS}"
        )
    import boto3  # here, so local-only runs never pay for importing it
    from botocore.config import Config

    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(retries={"mode": "standard", "max_attempts": 5}),
        )
    except Exception as exc:  # botocore raises ValueError and its own errors alike here
        raise StorageError(f"cannot create an S3 client for {url!r}: {exc}") from exc
    return S3Storage(parts.netloc, unquote(parts.path), client)
