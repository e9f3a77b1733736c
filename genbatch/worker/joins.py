"""`submit --join-chains`: each finished chain as one video, when the batch finalizes.

A chain runs from a root row (one with children and no parent) down to a last shot. A
parent with several children branches: each path from the root to a last shot is a chain
of its own, named `<root>` when the root has one path and `<root>.<last shot>` otherwise.
A chain whose shots all succeeded is joined (frames.join: stream copy when the shots agree,
one H.264 encode otherwise) into `chains/<name>.mp4` in the batch's output folder; every
chain, joined or not, is one line of `chains.jsonl`:

    {"chain": root custom_id, "shots": [custom_ids in order], "path": URI or null,
     "reencoded": bool or null, "frames": n or null, "status": "joined" | "incomplete" |
     "unreadable", "error": null or why}

Only chain items are kept in memory while the batch is read (their seq, custom_id, state,
links), never the whole batch.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genbatch import frames
from genbatch.errors import GenbatchError
from genbatch.models import ItemState
from genbatch.records import Item
from genbatch.storage import ObjectStorage, batch_key, object_key, safe_name

CHAINS_FILE = "chains.jsonl"


@dataclass(frozen=True, slots=True)
class Shot:
    seq: int
    custom_id: str
    state: ItemState | None
    parent_seq: int
    children: tuple[int, ...]


def chain_shots(items: Iterable[Item]) -> dict[int, Shot]:
    """The batch's chain items (a parent or a child) by seq."""
    return {i.seq: Shot(i.seq, i.custom_id, i.state, i.parent_seq, tuple(i.children))
            for i in items if i.children or i.parent_seq}


def paths(shots: dict[int, Shot]) -> Iterator[tuple[str, list[Shot]]]:
    """(name, shots in order) of every chain: each path from a root to a last shot."""
    for root in (s for s in shots.values() if not s.parent_seq):
        found = list(_walk(shots, [root]))
        for path in found:
            name = root.custom_id if len(found) == 1 else \
                f"{root.custom_id}.{path[-1].custom_id}"
            yield name, path


def _walk(shots: dict[int, Shot], path: list[Shot]) -> Iterator[list[Shot]]:
    kids = [shots[c] for c in path[-1].children if c in shots]
    if not kids:
        yield path
    for kid in kids:
        yield from _walk(shots, [*path, kid])


def join_chains(storage: ObjectStorage, batch_id: str, items: Iterable[Item]) -> str | None:
    """Join the batch's finished chains and write chains.jsonl; returns its URI (None when
    the batch has no chain)."""
    shots = chain_shots(items)
    if not shots:
        return None
    with tempfile.TemporaryDirectory(prefix="genbatch-join-") as tmp:
        folder = Path(tmp)
        listing = folder / CHAINS_FILE
        with listing.open("w", encoding="utf-8") as out:
            for name, path in paths(shots):
                line = _join_one(storage, batch_id, name, path, folder)
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
        return storage.put_file(batch_key(batch_id, CHAINS_FILE), listing,
                                content_type="application/x-ndjson").uri


def _join_one(storage: ObjectStorage, batch_id: str, name: str, path: list[Shot],
              folder: Path) -> dict[str, Any]:
    line: dict[str, Any] = {
        "chain": path[0].custom_id, "shots": [s.custom_id for s in path], "path": None,
        "reencoded": None, "frames": None, "status": "incomplete", "error": None}
    missing = [s.custom_id for s in path if s.state is not ItemState.SUCCEEDED]
    if missing:
        line["error"] = "not succeeded: " + ", ".join(missing)
        return line
    videos = []
    for n, shot in enumerate(path):
        local = folder / f"shot-{n}.mp4"
        with storage.open_read(object_key(batch_id, shot.custom_id)) as src, \
                local.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        videos.append(local)
    try:
        joined = frames.join(videos, folder / "joined.mp4")
    except GenbatchError as exc:
        line.update(status="unreadable", error=str(exc))
        return line
    key = f"{batch_key(batch_id, 'chains')}/{safe_name(name)}.mp4"
    line.update(path=storage.put_file(key, joined.path, content_type="video/mp4").uri,
                reencoded=joined.reencoded, frames=joined.frames, status="joined")
    for video in [*videos, joined.path]:
        video.unlink()
    return line
