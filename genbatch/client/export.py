"""`genbatch export BATCH --kept DEST`: the kept videos of a batch, copied out with a
`manifest.jsonl` that lists them (custom_id, file, prompt, seed, provider, model, …).

DEST is a local folder (new or empty), `s3://bucket/prefix`, or a path ending in `.zip`.
Nothing half-written is left behind: a folder is filled under a temporary name beside it
and renamed into place, a zip is written to `<DEST>.part` and renamed, and on S3 the
manifest is written last (a reader that finds it finds every video) while a failure
removes the objects already written.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genbatch.errors import GenbatchError, StorageError
from genbatch.models import ItemState, Review
from genbatch.records import Item
from genbatch.storage import ObjectStorage, object_key
from genbatch.storage.base import READ_CHUNK
from genbatch.storage.keys import safe_name
from genbatch.storage.urls import ObjectUrls
from genbatch.store import JobStore
from genbatch.worker.finalize import provider_model

MANIFEST = "manifest.jsonl"


@dataclass(frozen=True, slots=True)
class ExportReport:
    dest: str
    videos: int
    bytes: int


def kept_items(store: JobStore, batch_id: str) -> list[Item]:
    """The batch's kept videos in manifest order (an item redone since is not kept)."""
    store.batches.get(batch_id)  # NotFoundError for an unknown batch
    seqs = sorted(s for s, v in store.reviews.all(batch_id).items() if v is Review.KEPT)
    items = [i for i in store.pages.fetch(batch_id, seqs) if i.state is ItemState.SUCCEEDED]
    if not items:
        raise GenbatchError(f"batch {batch_id} has no kept video to export; keep some first "
                            f"(`genbatch review {batch_id} --keep ID`)")
    return items


def manifest_row(item: Item, file: str) -> dict[str, Any]:
    """One line of the export's manifest.jsonl."""
    request = json.loads(item.get("req") or "{}")
    seed = item.get("seed") or request.get("seed")
    return {"custom_id": item.custom_id, "file": file, "prompt": request.get("prompt"),
            "seed": int(seed) if seed not in (None, "") else None,
            "provider": item.provider or None, "model": item.model or None,
            "provider_model": provider_model(item), "sha256": item.get("sha256") or None,
            "bytes": int(item.get("bytes") or 0), "cost_usd": item.cost, "takes": item.takes,
            "line": item.line, "batch_id": item.batch_id, "source": item.get("output_uri")}


def export_kept(store: JobStore, source: ObjectStorage, objects: ObjectUrls, batch_id: str,
                dest: str) -> ExportReport:
    """Copy the kept videos of `batch_id` from `source` (where the batch keeps them) to
    `dest` with their manifest (see the module docstring)."""
    items = kept_items(store, batch_id)
    if dest.startswith("s3://"):
        return _to_objects(items, source, objects.folder(dest), dest)
    path = Path(dest).expanduser()
    if path.suffix.lower() == ".zip":
        return _to_zip(items, source, path)
    return _to_folder(items, source, path)


def _file(item: Item) -> str:
    return f"{safe_name(item.custom_id)}.mp4"


def _chunks(source: ObjectStorage, item: Item) -> Iterator[bytes]:
    with source.open_read(object_key(item.batch_id, item.custom_id)) as fh:
        while chunk := fh.read(READ_CHUNK):
            yield chunk


def _manifest(items: list[Item]) -> bytes:
    return "".join(json.dumps(manifest_row(i, _file(i)), ensure_ascii=False) + "\n"
                   for i in items).encode()


def _to_folder(items: list[Item], source: ObjectStorage, dest: Path) -> ExportReport:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise GenbatchError(f"--kept {dest}: exists and is not an empty folder; name a new one")
    tmp = dest.with_name(f".{dest.name}.part-{secrets.token_hex(4)}")
    try:
        tmp.mkdir(parents=True)
        size = _write_all(items, source, lambda name, chunks: _write_file(tmp / name, chunks))
        (tmp / MANIFEST).write_bytes(_manifest(items))
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    except (OSError, StorageError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _failed(dest, exc) from None
    return ExportReport(str(dest), len(items), size)


def _to_zip(items: list[Item], source: ObjectStorage, dest: Path) -> ExportReport:
    if dest.exists():
        raise GenbatchError(f"--kept {dest}: already exists; name a new .zip")
    tmp = dest.with_name(dest.name + ".part")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:

            def put(name: str, chunks: Iterator[bytes]) -> int:
                written = 0
                with zf.open(name, "w", force_zip64=True) as out:
                    for chunk in chunks:
                        out.write(chunk)
                        written += len(chunk)
                return written

            size = _write_all(items, source, put)
            zf.writestr(MANIFEST, _manifest(items))
        os.replace(tmp, dest)
    except (OSError, StorageError, zipfile.BadZipFile) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise _failed(dest, exc) from None
    return ExportReport(str(dest), len(items), size)


def _to_objects(items: list[Item], source: ObjectStorage, folder: ObjectStorage,
                dest: str) -> ExportReport:
    if folder.exists(MANIFEST):
        raise GenbatchError(f"--kept {dest}: already holds an export ({MANIFEST}); name a "
                            "new prefix")
    written: list[str] = []

    def put(name: str, chunks: Iterator[bytes]) -> int:
        written.append(name)
        return folder.put_stream(name, chunks).size

    try:
        size = _write_all(items, source, put)
        folder.put_bytes(MANIFEST, _manifest(items), "application/x-ndjson")
    except StorageError as exc:
        for name in written:
            with contextlib.suppress(StorageError):
                folder.delete(name)
        raise _failed(dest, exc) from None
    return ExportReport(dest, len(items), size)


def _write_all(items: list[Item], source: ObjectStorage,
               put: Callable[[str, Iterator[bytes]], int]) -> int:
    return sum(put(_file(item), _chunks(source, item)) for item in items)


def _write_file(path: Path, chunks: Iterator[bytes]) -> int:
    written = 0
    with path.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
            written += len(chunk)
    return written


def _failed(dest: object, exc: BaseException) -> GenbatchError:
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return GenbatchError(f"--kept {dest}: export failed, nothing written: {why}")
