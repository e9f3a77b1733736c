"""S3Storage against a real S3-compatible HTTP server (moto's standalone server, on loopback)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import httpx
import pytest

from genbatch.errors import StorageError
from genbatch.storage import PART_SIZE, S3Storage, open_storage

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


BUCKET = "genbatch-test"
PREFIX = "runs/2024"


@pytest.fixture
def endpoint(s3_endpoint: str) -> str:
    return s3_endpoint


@pytest.fixture
def client(endpoint: str) -> Iterator[S3Client]:
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=BUCKET)
    yield s3
    for upload in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    s3.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def storage(client: S3Client) -> S3Storage:
    return S3Storage(BUCKET, PREFIX, client)


def stream(total: int, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    """Deterministic pseudo-random bytes, so the expected hash can be recomputed."""
    sent = 0
    block = 0
    while sent < total:
        piece = hashlib.sha256(block.to_bytes(8, "big")).digest() * (chunk // 32 + 1)
        piece = piece[: min(chunk, total - sent)]
        sent += len(piece)
        block += 1
        yield piece


def test_small_object_is_one_put(storage: S3Storage, client: S3Client) -> None:
    data = os.urandom(1000)

    stored = storage.put_bytes("b1/a.mp4", data, "video/mp4")

    assert stored.uri == f"s3://{BUCKET}/{PREFIX}/b1/a.mp4"
    assert stored.size == 1000
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    head = client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/b1/a.mp4")
    assert "-" not in head["ETag"].strip('"')  # a single PutObject, not a multipart upload
    assert head["ContentType"] == "video/mp4"
    assert storage.get_bytes("b1/a.mp4") == data
    assert storage.exists("b1/a.mp4")


def test_large_stream_is_a_multipart_upload_of_8_mib_parts(
    storage: S3Storage, client: S3Client
) -> None:
    total = 2 * PART_SIZE + 12345  # three parts: 8 MiB, 8 MiB, the rest
    expected = hashlib.sha256()
    for piece in stream(total, chunk=777_777):
        expected.update(piece)

    stored = storage.put_stream("b1/big.mp4", stream(total, chunk=777_777))

    assert stored.size == total
    assert stored.sha256 == expected.hexdigest()
    full_key = f"{PREFIX}/b1/big.mp4"
    head = client.head_object(Bucket=BUCKET, Key=full_key)
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentLength"] == total
    assert head["ContentType"] == "video/mp4"
    first_part = client.head_object(Bucket=BUCKET, Key=full_key, PartNumber=1)
    assert first_part["ContentLength"] == PART_SIZE
    with storage.open_read("b1/big.mp4") as f:
        got = hashlib.sha256()
        while piece := f.read(1_000_000):
            got.update(piece)
    assert got.hexdigest() == expected.hexdigest()
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_stream_of_exactly_one_part_round_trips(storage: S3Storage) -> None:
    data = b"".join(stream(PART_SIZE))
    stored = storage.put_stream("b1/one.mp4", iter([data]))
    assert stored.size == PART_SIZE
    assert storage.get_bytes("b1/one.mp4") == data


def test_failure_mid_multipart_aborts_the_upload(storage: S3Storage, client: S3Client) -> None:
    def broken() -> Iterator[bytes]:
        yield from stream(PART_SIZE + 1)  # enough to start the multipart upload
        raise ConnectionError("download dropped")

    with pytest.raises(StorageError, match="ConnectionError: download dropped"):
        storage.put_stream("b1/broken.mp4", broken())

    assert not storage.exists("b1/broken.mp4")
    assert client.list_objects_v2(Bucket=BUCKET).get("Contents", []) == []
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_failure_before_one_part_writes_nothing(storage: S3Storage, client: S3Client) -> None:
    def broken() -> Iterator[bytes]:
        yield b"abc"
        raise ConnectionError("download dropped")

    with pytest.raises(StorageError):
        storage.put_stream("b1/broken.mp4", broken())

    assert client.list_objects_v2(Bucket=BUCKET).get("Contents", []) == []


def test_presigned_url_serves_the_bytes(storage: S3Storage) -> None:
    data = os.urandom(5000)
    storage.put_bytes("b1/a.mp4", data, "video/mp4")

    url = storage.presigned_url("b1/a.mp4", expires_s=600)

    assert url is not None
    assert "X-Amz-Signature=" in url or "Signature=" in url
    answer = httpx.get(url)
    assert answer.status_code == 200
    assert answer.content == data


def test_missing_object(storage: S3Storage) -> None:
    assert not storage.exists("b1/nope.mp4")
    with pytest.raises(StorageError, match="no object s3://"):
        storage.get_bytes("b1/nope.mp4")
    with pytest.raises(StorageError, match="no object s3://"):
        storage.open_read("b1/nope.mp4")


def test_delete(storage: S3Storage) -> None:
    storage.put_bytes("b1/a.mp4", b"x", "video/mp4")
    storage.delete("b1/a.mp4")
    storage.delete("b1/a.mp4")
    assert not storage.exists("b1/a.mp4")


def test_missing_bucket_is_a_storage_error(client: S3Client) -> None:
    storage = S3Storage("no-such-bucket", "", client)
    with pytest.raises(StorageError, match="NoSuchBucket"):
        storage.put_bytes("b1/a.mp4", b"x", "video/mp4")
    with pytest.raises(StorageError, match="NoSuchBucket"):
        storage.put_stream("b1/big.mp4", stream(PART_SIZE + 1))


def test_unsafe_keys_are_refused(storage: S3Storage, client: S3Client) -> None:
    for key in ("../x.mp4", "/abs.mp4", "b1/../../x.mp4"):
        with pytest.raises(StorageError, match="refusing object key"):
            storage.put_bytes(key, b"x", "video/mp4")
    assert client.list_objects_v2(Bucket=BUCKET).get("Contents", []) == []


def test_open_storage_reaches_the_server(
    endpoint: str, client: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    storage = open_storage(f"s3://{BUCKET}/out", endpoint_url=endpoint, region="us-east-1")
    storage.put_bytes("b1/results.jsonl", b"{}\n", "application/x-ndjson")

    body = client.get_object(Bucket=BUCKET, Key="out/b1/results.jsonl")["Body"].read()
    assert body == b"{}\n"


def test_discard_partial_aborts_the_key_s_unfinished_multipart_uploads(
        storage: S3Storage, client: S3Client) -> None:
    # Given uploads of a killed writer (never completed nor aborted), one for another key
    full = f"{PREFIX}/b1/a.mp4"
    for key in (full, full, f"{PREFIX}/b1/other.mp4"):
        client.create_multipart_upload(Bucket=BUCKET, Key=key)
    # When the next download of the key cleans up
    assert storage.discard_partial("b1/a.mp4") == 2
    # Then only the other key's upload is left
    left = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [u["Key"] for u in left] == [f"{PREFIX}/b1/other.mp4"]
    client.abort_multipart_upload(Bucket=BUCKET, Key=left[0]["Key"], UploadId=left[0]["UploadId"])
