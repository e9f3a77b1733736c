"""Local object storage and object keys."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genbatch.errors import StorageError
from genbatch.storage import (
    LocalStorage,
    S3Storage,
    batch_key,
    check_key,
    object_key,
    open_storage,
    safe_name,
)
from genbatch.storage.keys import MAX_SAFE_LEN


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def failing_stream(good_chunks: int) -> Iterator[bytes]:
    for _ in range(good_chunks):
        yield b"x" * 1000
    raise ConnectionError("peer reset the download")


# --- LocalStorage -----------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    data = b"\x00\x00\x00\x18ftypmp42 not really a video"

    stored = storage.put_bytes("b1/clip.mp4", data, "video/mp4")

    assert stored.key == "b1/clip.mp4"
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.uri == (tmp_path / "b1" / "clip.mp4").resolve().as_uri()
    assert stored.uri.startswith("file:///")
    assert storage.exists("b1/clip.mp4")
    assert storage.get_bytes("b1/clip.mp4") == data
    with storage.open_read("b1/clip.mp4") as f:
        assert f.read(4) == data[:4]
        assert f.read() == data[4:]
    assert storage.presigned_url("b1/clip.mp4") is None
    assert (tmp_path / "b1" / "clip.mp4").read_bytes() == data


def test_overwrite_replaces_whole_object(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("b1/a.mp4", b"long old content", "video/mp4")

    storage.put_bytes("b1/a.mp4", b"new", "video/mp4")

    assert storage.get_bytes("b1/a.mp4") == b"new"
    assert all_files(tmp_path) == [(tmp_path / "b1" / "a.mp4").resolve()]


def test_delete_is_idempotent(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("b1/a.mp4", b"x", "video/mp4")

    storage.delete("b1/a.mp4")
    storage.delete("b1/a.mp4")

    assert not storage.exists("b1/a.mp4")


def test_missing_object_is_a_storage_error(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    assert not storage.exists("b1/nope.mp4")
    with pytest.raises(StorageError, match=re.escape("no object 'b1/nope.mp4'")):
        storage.get_bytes("b1/nope.mp4")
    with pytest.raises(StorageError, match="no object"):
        storage.open_read("b1/nope.mp4")


def test_put_file_copies_content(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    storage = LocalStorage(tmp_path / "store")

    stored = storage.put_file("b1/results.jsonl", source, "application/x-ndjson")

    assert storage.get_bytes("b1/results.jsonl") == source.read_bytes()
    assert stored.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()


def test_put_file_of_missing_source_leaves_nothing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    with pytest.raises(StorageError, match="cannot read"):
        storage.put_file("b1/x.csv", tmp_path / "absent.csv", "text/csv")
    assert all_files(tmp_path / "store") == []


def test_stream_of_many_chunks_has_right_content_and_hash(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    chunks = [os.urandom(n) for n in (0, 1, 7, 4096, 65536, 3, 100_000) * 50]

    stored = storage.put_stream("b1/big.mp4", (c for c in chunks))

    whole = b"".join(chunks)
    assert stored.size == len(whole)
    assert stored.sha256 == hashlib.sha256(whole).hexdigest()
    assert storage.get_bytes("b1/big.mp4") == whole


def test_stream_is_not_held_in_memory(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    chunk = os.urandom(1024 * 1024)
    total_chunks = 48

    tracemalloc.start()
    try:
        stored = storage.put_stream("b1/big.mp4", (chunk for _ in range(total_chunks)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert stored.size == total_chunks * len(chunk)
    assert peak < 8 * 1024 * 1024  # the object is 48 MiB


def test_failure_mid_stream_leaves_nothing_behind(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)

    with pytest.raises(StorageError, match="ConnectionError: peer reset") as info:
        storage.put_stream("b1/a.mp4", failing_stream(good_chunks=5))

    assert isinstance(info.value.__cause__, ConnectionError)
    assert not storage.exists("b1/a.mp4")
    assert all_files(tmp_path) == []


def test_failed_overwrite_keeps_the_old_object(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("b1/a.mp4", b"the good one", "video/mp4")

    with pytest.raises(StorageError):
        storage.put_stream("b1/a.mp4", failing_stream(good_chunks=3))

    assert storage.get_bytes("b1/a.mp4") == b"the good one"
    assert all_files(tmp_path) == [(tmp_path / "b1" / "a.mp4").resolve()]


def test_interrupt_mid_stream_cleans_up_and_is_not_wrapped(tmp_path: Path) -> None:
    def interrupted() -> Iterator[bytes]:
        yield b"abc"
        raise KeyboardInterrupt

    storage = LocalStorage(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        storage.put_stream("b1/a.mp4", interrupted())
    assert all_files(tmp_path) == []


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../escape.mp4",
        "b1/../../escape.mp4",
        "b1/../b2/x.mp4",
        "/etc/passwd",
        "b1//x.mp4",
        "b1/./x.mp4",
        "b1/",
        "b1\\..\\x.mp4",
        "b1/x\x00.mp4",
        "b1/x\n.mp4",
        "a" * 1025,
    ],
)
def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "store")
    with pytest.raises(StorageError, match="refusing object key"):
        storage.put_bytes(key, b"x", "video/mp4")
    with pytest.raises(StorageError, match="refusing object key"):
        storage.get_bytes(key)
    assert all_files(tmp_path) == []


def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "store"
    root.mkdir()
    (root / "b1").symlink_to(outside, target_is_directory=True)
    storage = LocalStorage(root)

    with pytest.raises(StorageError, match="resolves outside"):
        storage.put_bytes("b1/x.mp4", b"x", "video/mp4")
    assert list(outside.iterdir()) == []


def test_key_under_an_existing_file_is_a_storage_error(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("b1", b"a file, not a folder", "text/plain")
    with pytest.raises(StorageError, match="cannot write"):
        storage.put_bytes("b1/x.mp4", b"x", "video/mp4")


# --- open_storage -----------------------------------------------------------------------------


def test_open_storage_relative_folder_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    storage = open_storage("out/videos")

    assert isinstance(storage, LocalStorage)
    assert storage.root == (tmp_path / "out" / "videos").resolve()
    assert storage.root.is_dir()
    storage.put_bytes("b1/a.mp4", b"x", "video/mp4")
    assert (tmp_path / "out" / "videos" / "b1" / "a.mp4").read_bytes() == b"x"


def test_open_storage_file_url(tmp_path: Path) -> None:
    storage = open_storage((tmp_path / "with space").as_uri())
    assert isinstance(storage, LocalStorage)
    assert storage.root == (tmp_path / "with space").resolve()


def test_open_storage_s3_url() -> None:
    storage = open_storage("s3://my-bucket/some/prefix/", endpoint_url="http://127.0.0.1:1",
                           region="us-east-1")
    assert isinstance(storage, S3Storage)
    assert storage.uri("b1/a.mp4") == "s3://my-bucket/some/prefix/b1/a.mp4"
    assert open_storage("s3://my-bucket", region="us-east-1").uri("k") == "s3://my-bucket/k"


@pytest.mark.parametrize(
    "url",
    ["", "   ", "http://example.com/out", "gs://bucket/x", "file://relative/path", "s3://",
     "s3:///prefix", "s3://bucket/x?versionId=1", "minio:bucket"],
)
def test_open_storage_rejects_other_urls_in_one_line(url: str) -> None:
    with pytest.raises(StorageError) as info:
        open_storage(url)
    message = str(info.value)
    assert "\n" not in message
    assert "s3://bucket/prefix" in message
    assert "file:///" in message
    if url.strip():
        assert repr(url) in message


def test_open_storage_on_a_file_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(StorageError, match="cannot use"):
        open_storage(str(tmp_path / "f"))


# --- keys -------------------------------------------------------------------------------------

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*")
HASHED = re.compile(r".*-[0-9a-f]{10}")
NASTY = [
    "", ".", "..", "../x", "../../etc/passwd", "/etc/passwd", "a/b", "a\\b", "..\\..\\x",
    "a\x00b", "\x00", " ", "con", ".hidden", "_x", "-rf", "x" * 500, "ünïcødé", "\ud800",
    "名前", "a b", "a_b", "a%2F..%2Fb", "id-e3b0c44298", "x-0123456789", "\u202e4pm.exe",
    "~", "~root", "~/.ssh", "a~/..",
]


@pytest.mark.parametrize("custom_id", ["sku-123", "A.b_c-9", "x" * MAX_SAFE_LEN, "v1.2",
                                       "ad-001~9x16-s1"])
def test_safe_ids_are_kept_readable(custom_id: str) -> None:
    assert safe_name(custom_id) == custom_id
    assert object_key("b1", custom_id) == f"b1/{custom_id}.mp4"


@pytest.mark.parametrize(
    ("custom_id", "prefix"),
    [("a b", "a_b-"), ("../../etc/passwd", "etc_passwd-"), ("", "id-"), ("..", "id-"),
     (".hidden", "hidden-"), ("x" * 200, "x" * MAX_SAFE_LEN + "-")],
)
def test_changed_ids_get_a_hash_of_the_original(custom_id: str, prefix: str) -> None:
    digest = hashlib.sha256(custom_id.encode()).hexdigest()[:10]
    assert safe_name(custom_id) == prefix + digest


def test_an_id_shaped_like_a_hashed_name_cannot_take_its_key() -> None:
    rewritten = safe_name("a b")  # "a_b-<hash>"
    assert safe_name(rewritten) != rewritten
    assert object_key("b1", rewritten) != object_key("b1", "a b")


def assert_key_stays_in_batch(key: str, batch_id: str) -> None:
    assert key.startswith(f"{batch_id}/")
    name = key[len(batch_id) + 1 :]
    assert SAFE_NAME.fullmatch(name), key
    assert name not in (".", "..")
    assert posixpath.normpath(key) == key
    assert len(name) <= MAX_SAFE_LEN + 11 + len(".mp4")
    check_key(key)


@pytest.mark.parametrize("custom_id", NASTY)
def test_nasty_ids_stay_in_their_batch(custom_id: str) -> None:
    assert_key_stays_in_batch(object_key("b1", custom_id), "b1")


def test_nasty_ids_never_collide() -> None:
    keys = {object_key("b1", c) for c in NASTY}
    assert len(keys) == len(NASTY)


ids = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8")),
    st.text(alphabet="./\\_-\x00 aZ9", max_size=300),
    st.from_regex(r"[A-Za-z0-9._-]{0,200}", fullmatch=True),
    st.sampled_from(NASTY),
)


@given(custom_id=ids)
def test_any_id_stays_in_its_batch(custom_id: str) -> None:
    assert_key_stays_in_batch(object_key("batch_01", custom_id), "batch_01")


@given(a=ids, b=ids)
def test_different_ids_get_different_keys(a: str, b: str) -> None:
    if a != b:
        assert object_key("b1", a) != object_key("b1", b)


@given(custom_id=ids)
def test_an_ids_rewritten_form_never_takes_its_key(custom_id: str) -> None:
    # The adversarial case: a second row whose id is exactly the first row's rewritten name.
    rewritten = safe_name(custom_id)
    if rewritten != custom_id:
        assert HASHED.fullmatch(rewritten)
        assert safe_name(rewritten) != rewritten


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(custom_id=ids)
def test_any_id_is_written_inside_the_batch_folder(tmp_path: Path, custom_id: str) -> None:
    storage = LocalStorage(tmp_path)
    stored = storage.put_bytes(object_key("b1", custom_id), b"x", "video/mp4")
    written = (tmp_path / stored.key).resolve()
    assert written.parent == (tmp_path / "b1").resolve()
    assert written.read_bytes() == b"x"


@pytest.mark.parametrize("batch_id", ["", "..", ".", "../b", "b/c", "_b", "b\x00", "b" * 129])
def test_bad_batch_ids_are_refused(batch_id: str) -> None:
    with pytest.raises(StorageError, match="refusing batch id"):
        object_key(batch_id, "x")
    with pytest.raises(StorageError, match="refusing batch id"):
        batch_key(batch_id, "results.jsonl")


@pytest.mark.parametrize("name", ["", "..", "../results.jsonl", "a/b", ".env", "x\\y"])
def test_bad_batch_file_names_are_refused(name: str) -> None:
    with pytest.raises(StorageError, match="refusing batch file name"):
        batch_key("b1", name)


@pytest.mark.parametrize("suffix", ["", "mp4", "/x.mp4", ".mp4/..", ". mp4"])
def test_bad_suffixes_are_refused(suffix: str) -> None:
    with pytest.raises(StorageError, match="refusing file suffix"):
        object_key("b1", "x", suffix)


def test_batch_key() -> None:
    assert batch_key("b1", "results.jsonl") == "b1/results.jsonl"
    assert object_key("b1", "x", ".webm") == "b1/x.webm"


def test_discard_partial_removes_what_a_killed_write_left_of_that_key_only(
        tmp_path: Path) -> None:
    # Given the temporary files of two killed writes of one key, and another key's
    storage = LocalStorage(tmp_path)
    storage.put_bytes("b1/a.mp4", b"old", "video/mp4")
    folder = tmp_path / "b1"
    left = [folder / ".a.mp4.0123456789ab.part", folder / ".a.mp4.ba9876543210.part"]
    other = folder / ".b.mp4.0123456789ab.part"
    for path in [*left, other]:
        path.write_bytes(b"half a video")
    # When the next download of the key cleans up
    removed = storage.discard_partial("b1/a.mp4")
    # Then only that key's leftovers are gone; the object itself stays
    assert removed == 2 and not any(p.exists() for p in left)
    assert other.exists() and storage.get_bytes("b1/a.mp4") == b"old"
    assert storage.discard_partial("b2/never.mp4") == 0
