"""Objects named by URL (`s3://bucket/key`): manifests and input images a pipeline keeps in
its own buckets, apart from genbatch's storage.

`ObjectUrls` opens one `S3Storage` per bucket (endpoint and region from the settings,
credentials from boto3's usual chain) and reads, probes or signs the object a URL names.
"""

from __future__ import annotations

from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from genbatch.errors import StorageError
from genbatch.storage import ObjectStorage, open_storage
from genbatch.storage.s3 import S3Storage

OBJECT_SCHEMES = ("s3://",)
MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4's longest lifetime


def is_object_url(ref: str) -> bool:
    """True for `s3://…` (an object in a bucket)."""
    return ref[:5].lower() in OBJECT_SCHEMES


def split_object_url(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b.png` → ("bucket", "a/b.png"); a StorageError names what is missing."""
    parts = urlsplit(url.strip())
    key = unquote(parts.path).lstrip("/")
    if not is_object_url(url.strip()) or not parts.netloc or not key or parts.query:
        raise StorageError(f"{url!r} is not an object URL like s3://bucket/path/file")
    return parts.netloc, key


def sibling_url(url: str, relative: str) -> str:
    """`relative` (a path as written in a manifest) next to the object `url` names."""
    return f"{url.rsplit('/', 1)[0]}/{relative.removeprefix('./')}"


class ObjectUrls:
    """Reads objects by URL, one storage per bucket (opened on first use)."""

    def __init__(self, *, endpoint_url: str | None = None, region: str | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._buckets: dict[str, ObjectStorage] = {}

    def locate(self, url: str) -> tuple[ObjectStorage, str]:
        """The storage holding the object `url` names, and its key there."""
        bucket, key = split_object_url(url)
        return self._bucket(bucket), key

    def folder(self, url: str) -> ObjectStorage:
        """The storage at `url` (`s3://bucket/prefix`, `file:///abs/path` or a folder);
        buckets share their client."""
        if not is_object_url(url):
            return open_storage(url)
        bucket, _, prefix = url.strip()[5:].partition("/")
        storage = self._bucket(bucket)
        return storage.under(prefix) if isinstance(storage, S3Storage) and prefix else storage

    def _bucket(self, bucket: str) -> ObjectStorage:
        if bucket not in self._buckets:
            self._buckets[bucket] = open_storage(f"s3://{bucket}",
                                                 endpoint_url=self.endpoint_url,
                                                 region=self.region)
        return self._buckets[bucket]

    def open_read(self, url: str) -> BinaryIO:
        storage, key = self.locate(url)
        return storage.open_read(key)

    def read_head(self, url: str, length: int) -> tuple[bytes, int]:
        storage, key = self.locate(url)
        return storage.read_head(key, length)

    def get_bytes(self, url: str) -> bytes:
        storage, key = self.locate(url)
        return storage.get_bytes(key)

    def presigned_url(self, url: str, expires_s: int) -> str:
        """A GET URL for the object, valid `expires_s` (at most 7 days)."""
        storage, key = self.locate(url)
        signed = storage.presigned_url(key, min(expires_s, MAX_PRESIGN_S))
        if signed is None:
            raise StorageError(f"cannot sign a URL for {url}")
        return signed
