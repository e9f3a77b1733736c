"""Producer: bad manifests give clear errors and create nothing; good ones become batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genbatch.errors import ManifestError, ManifestRejected
from genbatch.producer.ingest import IngestResult, ingest_manifest
from genbatch.storage import open_storage
from genbatch.store import JobStore, item_id

HEADER = "custom_id,provider,model,prompt,image,resolution,duration\n"



def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def ingest(store: JobStore, path: Path, provider: str = "novita",
           model: str = "seedance-v1.5-pro-i2v", skip_invalid: bool = False,
           input_roots: tuple[Path, ...] = ()) -> IngestResult:
    storage = open_storage(str(path.parent / "out"))
    return ingest_manifest(path, store=store, storage=storage, provider=provider, model=model,
                           skip_invalid=skip_invalid, input_roots=input_roots)


def nothing_written(store: JobStore) -> bool:
    return store.batches.recent() == [] and not store.debug.keys("item", "*")


def test_good_csv_becomes_a_pending_batch(store: JobStore, folder: Path) -> None:
    path = write(folder, "m.csv", HEADER
                 + "a,novita,seedance-v1.5-pro-i2v,hello,images/sneaker.jpg,720p,5\n"
                 + ",byteplus,seedance-v1.5-pro-i2v,\"multi\nline\",images/bottle.png,480p,4\n")
    result = ingest(store, path)
    batch = store.batches.get(str(result.batch_id))
    assert (batch["status"], batch["total"], batch["pending"]) == ("in_progress", "2", "2")
    second = store.items.get(item_id(batch["id"], 2))
    assert second["custom_id"] == "line-3"  # defaults to line-<n>, n = where the row starts
    assert second["provider"] == "byteplus"
    assert json.loads(second["req"])["image"].startswith("stored:inputs/")


def test_jsonl_with_bom_and_types(store: JobStore, folder: Path) -> None:
    rows = [{"prompt": "p", "image": "images/watch.jpg", "duration": 6, "seed": -1,
             "generate_audio": False}]
    path = write(folder, "m.jsonl", b"\xef\xbb\xbf" + json.dumps(rows[0]).encode() + b"\n")
    result = ingest(store, path)
    req = json.loads(store.items.get(item_id(str(result.batch_id), 1))["req"])
    assert (req["duration"], req["generate_audio"]) == (6, False)


@pytest.mark.parametrize(
    ("name", "content", "line", "field", "reason"),
    [
        ("missing-image-column.csv", "prompt,duration\nhi,5\n", 1, "image", "missing"),
        ("bad-enum.csv", HEADER + "a,novita,seedance-v1.5-pro-i2v,p,images/sneaker.jpg,1080p,5\n",
         2, "resolution", "480p"),
        ("dup.csv", HEADER + "a,,,p,images/sneaker.jpg,,\n" + "a,,,p,images/watch.jpg,,\n",
         3, "custom_id", "duplicate"),
        ("no-file.csv", HEADER + "a,,,p,images/nope.png,,\n", 2, "image", "not found"),
        ("bad-int.jsonl", '{"prompt":"p","image":"images/sneaker.jpg","duration":"five"}\n',
         1, "duration", "integer"),
        ("v1-duration.csv", HEADER + "a,novita,seedance-v1-pro-i2v,p,images/sneaker.jpg,720p,7\n",
         2, "duration", "10"),
        ("unknown-provider.csv", HEADER + "a,nosuchco,m,p,images/sneaker.jpg,,\n", 2, "provider",
         "nosuchco"),
    ],
)
def test_bad_rows_are_reported_and_nothing_is_created(
    store: JobStore, folder: Path, name: str, content: str, line: int, field: str, reason: str
) -> None:
    path = write(folder, name, content)
    with pytest.raises((ManifestRejected, ManifestError)) as info:
        ingest(store, path)
    exc = info.value  # typed as their common base, GenbatchError
    if isinstance(exc, ManifestRejected):
        errors = exc.errors
    else:
        assert isinstance(exc, ManifestError)
        errors = [exc]
    first = errors[0]
    assert (first.path, first.line, first.field) == (str(path), line, field)
    assert reason in first.reason
    assert nothing_written(store)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "no rows"), (HEADER.encode(), "no rows"),
     (HEADER.encode() + b"a,,,caf\xe9,images/sneaker.jpg,,\n", "not UTF-8"),
     (b"\x00\x01\x02garbage", "")],
)
def test_unreadable_manifests_fail_clearly(store: JobStore, folder: Path, content: bytes,
                                           reason: str) -> None:
    path = write(folder, "m.csv", content)
    with pytest.raises((ManifestError, ManifestRejected)) as info:
        ingest(store, path)
    assert str(path) in str(info.value)
    assert reason in str(info.value)
    assert nothing_written(store)


def test_all_bad_rows_are_reported_in_one_go(store: JobStore, folder: Path) -> None:
    rows = "".join(f"r{i},,,p,images/sneaker.jpg,,{7 if i % 2 else 5}\n" for i in range(10))
    path = write(folder, "m.csv", HEADER + rows)
    with pytest.raises(ManifestRejected) as info:
        ingest(store, path, provider="novita", model="seedance-v1-pro-i2v")
    assert info.value.total_errors == 5
    assert [e.line for e in info.value.errors] == [3, 5, 7, 9, 11]
    assert nothing_written(store)


def test_skip_invalid_submits_good_rows_and_records_bad_ones(store: JobStore,
                                                             folder: Path) -> None:
    path = write(folder, "m.csv", HEADER + "good,,,p,images/sneaker.jpg,,5\n"
                 + "bad,,,p,images/sneaker.jpg,,99\n")
    result = ingest(store, path, skip_invalid=True)
    batch = store.batches.get(str(result.batch_id))
    assert (batch["pending"], batch["failed"], batch["total"]) == ("1", "1", "2")
    bad = store.items.get(item_id(batch["id"], 2))
    assert bad["error_code"] == "invalid_row"
    assert "duration" in bad["error_message"]


def test_dry_run_writes_nothing_and_estimates(store: JobStore, folder: Path) -> None:
    path = write(folder, "m.csv", HEADER + "a,,,p,images/sneaker.jpg,720p,5\n")
    result = ingest_manifest(path, store=None, storage=None, provider="byteplus",
                             model="seedance-v1.5-pro-i2v", dry_run=True)
    assert result.batch_id is None
    assert result.valid == 1
    assert result.est_cost > 0
    assert nothing_written(store)


def test_repeated_custom_id_is_checked_in_redis_across_chunks(
    store: JobStore, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks of 2: the repeat (line 6) is in a later chunk than its first occurrence (line 2),
    # and the one after a bad row (line 8, only checked, not written) is still found.
    monkeypatch.setattr("genbatch.producer.ingest.CHUNK", 2)
    rows = ["a,,,p,images/sneaker.jpg,,5", "b,,,p,images/sneaker.jpg,,5",
            "c,,,p,images/sneaker.jpg,,5", "d,,,p,images/sneaker.jpg,,5",
            "a,,,p,images/sneaker.jpg,,5", "e,,,p,images/sneaker.jpg,,99",
            "b,,,p,images/sneaker.jpg,,5"]
    path = write(folder, "m.csv", HEADER + "\n".join(rows) + "\n")
    with pytest.raises(ManifestRejected) as info:
        ingest(store, path)
    errors = info.value.errors
    assert [(e.line, e.field) for e in errors] == [(6, "custom_id"), (7, "duration"),
                                                   (8, "custom_id")]
    assert "duplicate custom_id 'a' (first on line 2)" in errors[0].reason
    assert "(first on line 3)" in errors[2].reason
    assert info.value.total_errors == 3
    assert nothing_written(store)
    assert not store.debug.keys("ids", "*")


def test_skip_invalid_repeat_becomes_an_invalid_row_item(
    store: JobStore, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("genbatch.producer.ingest.CHUNK", 2)
    rows = ["a,,,p,images/sneaker.jpg,,5", "b,,,p,images/sneaker.jpg,,5",
            "a,,,p,images/watch.jpg,,5"]
    path = write(folder, "m.csv", HEADER + "\n".join(rows) + "\n")
    result = ingest(store, path, skip_invalid=True)
    assert (result.valid, result.invalid) == (2, 1)
    assert [(e.line, e.field) for e in result.errors] == [(4, "custom_id")]
    batch = store.batches.get(str(result.batch_id))
    assert (batch["total"], batch["pending"], batch["failed"]) == ("3", "2", "1")
    repeat = store.items.get(item_id(batch["id"], 3))
    assert (repeat["state"], repeat["error_code"]) == ("failed", "invalid_row")
    assert repeat["error_message"] == (
        "custom_id: duplicate custom_id 'a' (first on line 2); each must be unique")
    assert store.debug.pending("novita", batch["id"]) == [
        item_id(batch["id"], 1), item_id(batch["id"], 2)]
    assert not store.debug.keys("ids", "*")  # the temporary check hash is gone


def test_dry_run_finds_repeats_without_redis(folder: Path) -> None:
    path = write(folder, "m.jsonl", "".join(
        json.dumps({"custom_id": cid, "prompt": "p", "image": "images/sneaker.jpg"}) + "\n"
        for cid in ("x", "y", "x")))
    result = ingest_manifest(path, store=None, storage=None, provider="novita",
                             model="seedance-v1.5-pro-i2v", dry_run=True, skip_invalid=True)
    assert (result.valid, result.invalid) == (2, 1)
    assert (result.errors[0].line, result.errors[0].field) == (3, "custom_id")
    assert "(first on line 1)" in result.errors[0].reason


def test_jsonl_row_is_stored_as_written(store: JobStore, folder: Path) -> None:
    image = folder / "images" / "sneaker.jpg"  # absolute already: nothing to rewrite
    line = json.dumps({"custom_id": "é-1", "prompt": "café", "image": str(image), "seed": 3},
                      ensure_ascii=False)
    path = write(folder, "m.jsonl", line + "\n")
    result = ingest(store, path)
    item = store.items.get(item_id(str(result.batch_id), 1))
    assert json.loads(item["row"]) == json.loads(line)


def test_provider_model_ids_are_stored_under_genbatchs_name(store: JobStore,
                                                           folder: Path) -> None:
    """`--model` and the `model` column take the provider's own id; a WaveSpeed V1 id sets
    the row's resolution; the local image on WaveSpeed is accepted (uploaded by the worker)."""
    path = write(folder, "m.csv", HEADER
                 + "a,wavespeed,bytedance/seedance-v1-pro-i2v-1080p,hi,images/sneaker.jpg,,5\n"
                 + "b,byteplus,,hi,images/bottle.png,480p,4\n")
    result = ingest(store, path, provider="byteplus", model="seedance-1-5-pro-251215")
    first, second = (store.items.get(item_id(str(result.batch_id), n)) for n in (1, 2))
    assert (first["model"], json.loads(first["req"])["resolution"]) == (
        "seedance-v1-pro-i2v", "1080p")
    assert second["model"] == "seedance-v1.5-pro-i2v"


def test_stored_rows_carry_absolute_image_paths(store: JobStore, folder: Path) -> None:
    # Given rows naming their images relative to the manifest (CSV and JSONL, a bad row too)
    (folder / "sub").mkdir()
    csv_path = write(folder / "sub", "m.csv", HEADER + "a,,,p,../images/sneaker.jpg,,5\n"
                     + "b,,,p,../images/watch.jpg,,99\n")
    jsonl_path = write(folder, "m.jsonl", json.dumps(
        {"custom_id": "c", "prompt": "p", "image": "images/sneaker.jpg",
         "last_image": "https://example.com/x.jpg"}) + "\n")
    # When they are ingested
    first = ingest(store, csv_path, skip_invalid=True, input_roots=(folder / "images",))
    second = ingest(store, jsonl_path)
    # Then every stored row names its local images by absolute path; URLs stay as they are
    rows = [json.loads(store.items.get(item_id(str(first.batch_id), n))["row"]) for n in (1, 2)]
    rows.append(json.loads(store.items.get(item_id(str(second.batch_id), 1))["row"]))
    images = folder.resolve() / "images"
    assert [r["image"] for r in rows] == [str(images / "sneaker.jpg"),
                                          str(images / "watch.jpg"),
                                          str(images / "sneaker.jpg")]
    assert rows[2]["last_image"] == "https://example.com/x.jpg"
