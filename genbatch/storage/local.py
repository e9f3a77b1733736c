"""Object storage in a local folder: one file per key, written atomically."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from genbatch.errors import StorageError
from genbatch.storage.base import (
    Digest,
    StoredObject,
    StreamingPuts,
    raise_write_failed,
)
from genbatch.storage.keys import check_key


class LocalStorage(StreamingPuts):
    """Objects as files under `root` (created if missing).

    A write goes to a hidden temporary file next to its target, is fsynced, then renamed
    over the target with `os.replace`, so a reader never sees half an object.
    """

    def __init__(self, root: Path) -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.root = root.resolve(strict=True)
        except OSError as exc:
            raise StorageError(
                f"cannot use {str(root)!r} as a storage folder: {exc.strerror or exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def put_stream(
        self, key: str, chunks: Iterable[bytes], content_type: str = "video/mp4"
    ) -> StoredObject:
        path = self._path(key)
        with self._os_errors("write", key):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name[:100]}.{secrets.token_hex(6)}.part")
            # os.open (not mkstemp) so the file gets the usual umask-based mode, not 0600.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
        digest = Digest()
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    digest.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise_write_failed(repr(key), exc)
        _fsync_dir(path.parent)
        return StoredObject(key, self.uri(key), digest.hexdigest(), digest.size)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with self._os_errors("read", key):
            return path.read_bytes()

    def open_read(self, key: str) -> BinaryIO:
        path = self._path(key)
        with self._os_errors("read", key):
            return path.open("rb")

    def read_head(self, key: str, length: int) -> tuple[bytes, int]:
        path = self._path(key)
        with self._os_errors("read", key), path.open("rb") as f:
            return f.read(length), os.fstat(f.fileno()).st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        self._path(key)
        return None

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._os_errors("delete", key):
            path.unlink(missing_ok=True)

    def discard_partial(self, key: str) -> int:
        path = self._path(key)
        prefix = f".{path.name[:100]}."
        removed = 0
        with self._os_errors("clean up", key):
            if not path.parent.is_dir():
                return 0
            for tmp in path.parent.iterdir():
                token = tmp.name.removeprefix(prefix).removesuffix(".part")
                if tmp.name.startswith(prefix) and tmp.name.endswith(".part") \
                        and len(token) == 12 and all(c in "0123456789abcdef" for c in token):
                    tmp.unlink(missing_ok=True)
                    removed += 1
        return removed

    def _path(self, key: str) -> Path:
        check_key(key)
        # resolve() follows symlinks, so a link inside root that points outside is caught too.
        path = (self.root / key).resolve()
        if path == self.root or not path.is_relative_to(self.root):
            raise StorageError(f"refusing object key {key!r}: it resolves outside {self.root}")
        return path

    @contextlib.contextmanager
    def _os_errors(self, action: str, key: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if action == "read" and isinstance(exc, FileNotFoundError):
                raise StorageError(f"no object {key!r} in {self.root}") from exc
            raise StorageError(
                f"cannot {action} {key!r} in {self.root}: {exc.strerror or exc}"
            ) from exc


_O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows only; 0 elsewhere


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable. Best effort: not every platform can open a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
