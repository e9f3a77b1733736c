"""The same manifest submitted twice (two producers, a retried pipeline step) is one batch,
not two paid ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from genbatch import Client
from genbatch.config import Settings
from genbatch.errors import GenbatchError, ManifestRejected
from genbatch.store import JobStore

HEADER = "custom_id,provider,prompt,image,resolution,duration\n"


@pytest.fixture
def client(redis_url: str, tmp_storage: Path) -> Client:
    return Client(Settings(redis_url=redis_url, storage_url=str(tmp_storage)))


def manifest(folder: Path, *rows: str) -> Path:
    path = folder / "m.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def batches(store: JobStore) -> int:
    return len(store.batches.recent(100))


def test_the_same_manifest_twice_is_refused_naming_its_batch(client: Client, store: JobStore,
                                                            folder: Path) -> None:
    path = manifest(folder, "a,novita,p,images/sneaker.jpg,720p,5")
    first = client.submit(path)
    with pytest.raises(GenbatchError, match=f"already submitted with the same options as "
                                            f"batch {first.id}"):
        client.submit(path)
    assert batches(store) == 1
    # other options, or --allow-duplicate: a batch of its own
    assert client.submit(path, priority="high").id != first.id
    assert client.submit(path, allow_duplicate=True).id != first.id
    assert batches(store) == 3


def test_an_idempotency_key_returns_the_batch_it_made(client: Client, store: JobStore,
                                                      folder: Path) -> None:
    path = manifest(folder, "a,novita,p,images/sneaker.jpg,720p,5")
    first = client.submit(path, idempotency_key="run-42")
    again = client.submit(path, idempotency_key="run-42")
    assert again.id == first.id and again.submitted is not None
    assert again.submitted.duplicate_of == first.id and again.submitted.valid == 0
    assert client.submit(path, idempotency_key="run-43").id != first.id
    assert batches(store) == 2


def test_a_refused_manifest_does_not_block_its_fixed_version(client: Client, store: JobStore,
                                                             folder: Path) -> None:
    path = manifest(folder, "a,novita,p,images/nope.jpg,720p,5")
    with pytest.raises(ManifestRejected):
        client.submit(path, idempotency_key="k")
    with pytest.raises(ManifestRejected):  # refused again on its own merits, not as a repeat
        client.submit(path, idempotency_key="k")
    manifest(folder, "a,novita,p,images/sneaker.jpg,720p,5")
    assert client.submit(path, idempotency_key="k").submitted.valid == 1  # type: ignore[union-attr]
    assert batches(store) == 1
