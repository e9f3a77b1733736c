"""A batch's own output folder (`genbatch submit --output URL`).

Workers write a batch's files under keys `<batch_id>/<name>` (`object_key`, `batch_key`).
`BatchFolder` stores them at `<URL>/<name>` instead, so a pipeline finds `results.jsonl`
and the videos exactly where it asked for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from genbatch.storage.base import ObjectStorage, StoredObject


class BatchFolder:
    """`storage` (opened at the folder's URL) seen through the keys of batch `batch_id`."""

    def __init__(self, storage: ObjectStorage, batch_id: str) -> None:
        self.storage = storage
        self._prefix = f"{batch_id}/"

    def __repr__(self) -> str:
        return f"BatchFolder({self.storage!r})"

    def _key(self, key: str) -> str:
        return key.removeprefix(self._prefix)

    def put_stream(self, key: str, chunks: Iterable[bytes],
                   content_type: str = "video/mp4") -> StoredObject:
        stored = self.storage.put_stream(self._key(key), chunks, content_type)
        return StoredObject(key, stored.uri, stored.sha256, stored.size)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        return self.put_stream(key, [data], content_type)

    def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        stored = self.storage.put_file(self._key(key), path, content_type)
        return StoredObject(key, stored.uri, stored.sha256, stored.size)

    def get_bytes(self, key: str) -> bytes:
        return self.storage.get_bytes(self._key(key))

    def open_read(self, key: str) -> BinaryIO:
        return self.storage.open_read(self._key(key))

    def read_head(self, key: str, length: int) -> tuple[bytes, int]:
        return self.storage.read_head(self._key(key), length)

    def exists(self, key: str) -> bool:
        return self.storage.exists(self._key(key))

    def uri(self, key: str) -> str:
        return self.storage.uri(self._key(key))

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        return self.storage.presigned_url(self._key(key), expires_s)

    def delete(self, key: str) -> None:
        self.storage.delete(self._key(key))

    def discard_partial(self, key: str) -> int:
        return self.storage.discard_partial(self._key(key))
