"""GENBATCH_PRESIGN_RESULTS_S: results rows carry a presigned URL that serves the video,
checked against a real S3-compatible server (moto's standalone server on loopback)."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest

from genbatch.config import Settings
from genbatch.storage import LocalStorage, S3Storage, object_key
from genbatch.worker.finalize import write_outputs

BUCKET = "genbatch-presign"


@pytest.fixture(scope="module")
def storage(s3_endpoint: str) -> S3Storage:
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    return S3Storage(BUCKET, "out", client)


def items(storage: S3Storage | LocalStorage) -> list[dict[str, str]]:
    video = b"\x00\x00\x00\x18ftypmp42" + b"v" * 2000
    stored = storage.put_bytes(object_key("b1", "ad/1"), video, "video/mp4")
    return [
        {"state": "succeeded", "batch": "b1", "custom_id": "ad/1", "line": "2",
         "output_uri": stored.uri, "sha256": stored.sha256, "bytes": str(stored.size)},
        {"state": "failed", "batch": "b1", "custom_id": "ad-2", "line": "3",
         "row": json.dumps({"custom_id": "ad-2"}), "error_code": "x", "error_message": "y"},
    ]


def test_results_rows_get_a_presigned_url_that_serves_the_video(storage: S3Storage) -> None:
    records = items(storage)

    files = write_outputs(storage, "b1", records, presign_s=600)

    rows = [json.loads(x) for x in storage.get_bytes("b1/results.jsonl").decode().splitlines()]
    assert [r["custom_id"] for r in rows] == ["ad/1"]
    url = rows[0]["presigned_url"]
    query = parse_qs(urlsplit(url).query)
    if "X-Amz-Expires" in query:  # SigV4
        assert query["X-Amz-Expires"] == ["600"]
    else:  # SigV2: an absolute expiry time
        assert abs(int(query["Expires"][0]) - (time.time() + 600)) < 60
    answer = httpx.get(url)
    assert answer.status_code == 200
    assert answer.content == storage.get_bytes(object_key("b1", "ad/1"))
    table = list(csv.DictReader(io.StringIO(storage.get_bytes("b1/results.csv").decode())))
    assert table[0]["presigned_url"] == url
    errors = storage.get_bytes("b1/errors.jsonl").decode()
    assert "presigned_url" not in errors and files.errors == 1


def test_off_by_default(storage: S3Storage) -> None:
    assert Settings().presign_results_s == 0
    write_outputs(storage, "b1", items(storage))
    row = json.loads(storage.get_bytes("b1/results.jsonl").decode().splitlines()[0])
    assert "presigned_url" not in row
    assert "presigned_url" not in storage.get_bytes("b1/results.csv").decode()


def test_a_folder_cannot_sign_so_the_url_is_null(tmp_path: Path) -> None:
    folder = LocalStorage(tmp_path)
    write_outputs(folder, "b1", items(folder), presign_s=600)
    row = json.loads(folder.get_bytes("b1/results.jsonl").decode().splitlines()[0])
    assert row["presigned_url"] is None
