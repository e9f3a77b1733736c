"""What every object storage backend offers, and the pieces they share."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NoReturn, Protocol

from genbatch.errors import StorageError

READ_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object as written: its key, its full URI, and the sha256 and size of its bytes."""

    key: str
    uri: str
    sha256: str
    size: int


class ObjectStorage(Protocol):
    """A flat key → bytes store. Keys are relative paths such as `<batch_id>/<name>.mp4`.

    Every write is atomic: readers see the whole new object or nothing (or the old one),
    never a prefix. Every failure is a StorageError.
    """

    def put_stream(
        self, key: str, chunks: Iterable[bytes], content_type: str = "video/mp4"
    ) -> StoredObject:
        """Write the concatenated `chunks` without holding them all in memory.

        If `chunks` raises part-way, nothing is left behind and StorageError is raised.
        """

    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject: ...

    def put_file(self, key: str, path: Path, content_type: str) -> StoredObject: ...

    def get_bytes(self, key: str) -> bytes: ...

    def open_read(self, key: str) -> BinaryIO:
        """A binary file object streaming the object's bytes; the caller closes it."""

    def read_head(self, key: str, length: int) -> tuple[bytes, int]:
        """The first `length` bytes of the object (fewer if it is shorter) and its full
        size, without reading the rest (a ranged GET on S3)."""

    def exists(self, key: str) -> bool: ...

    def uri(self, key: str) -> str:
        """`file:///abs/path` or `s3://bucket/prefix/key`."""

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        """A time-limited HTTP GET URL, or None when the backend has no such thing."""

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    def discard_partial(self, key: str) -> int:
        """Remove what unfinished writes of `key` left behind (a writer killed mid-stream:
        a local `.part` file, an S3 multipart upload). Only call it while no other write of
        `key` runs. Returns how many were removed."""


class Digest:
    """The sha256 and byte count of a stream, fed one chunk at a time."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._sha.update(chunk)
        self.size += len(chunk)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def file_chunks(path: Path, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
    """The bytes of a local file, chunk by chunk."""
    try:
        with path.open("rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc


def raise_write_failed(where: str, exc: BaseException) -> NoReturn:
    """Re-raise a failure of a write as StorageError naming its cause.

    KeyboardInterrupt, SystemExit and StorageError itself go through unchanged.
    """
    if isinstance(exc, StorageError) or not isinstance(exc, Exception):
        raise exc
    raise StorageError(f"writing {where} failed: {type(exc).__name__}: {exc}") from exc


class StreamingPuts:
    """put_bytes and put_file for a backend that implements put_stream."""

    def put_stream(self, key: str, chunks: Iterable[bytes],
                   content_type: str = "video/mp4") -> StoredObject:
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes, content_type: str = "video/mp4") -> StoredObject:
        return self.put_stream(key, [data], content_type)

    def put_file(self, key: str, path: Path, content_type: str = "video/mp4") -> StoredObject:
        return self.put_stream(key, file_chunks(path), content_type)

