"""Objects named by URL (manifests and images in S3), a batch's own --output folder, and
how an s3:// image goes on the wire, against a real S3-compatible server (moto)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from genbatch.config import Settings
from genbatch.demo import SAMPLES
from genbatch.errors import GenbatchError, ManifestError, StorageError
from genbatch.models import GenerationRequest
from genbatch.producer.manifest import iter_rows, manifest_source
from genbatch.producer.objects import object_image_problem
from genbatch.producer.options import BatchOptions, parse_output
from genbatch.storage import LocalStorage, batch_key, object_key
from genbatch.storage.folder import BatchFolder
from genbatch.storage.urls import MAX_PRESIGN_S, ObjectUrls, sibling_url, split_object_url
from genbatch.worker.runtime import Runtime, presign_lifetime_s

BUCKET = "pipeline-in"


@pytest.fixture
def objects(s3: str) -> ObjectUrls:
    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    client.upload_file(str(SAMPLES / "images" / "sneaker.jpg"), BUCKET, "run/images/a.jpg")
    client.put_object(Bucket=BUCKET, Key="run/manifest.csv",
                      Body=b"custom_id,prompt,image\nx,hi,images/a.jpg\ny,ho,images/a.jpg\n")
    return ObjectUrls(endpoint_url=s3, region="us-east-1")


def test_a_ranged_read_gives_the_head_and_the_whole_size(objects: ObjectUrls,
                                                         tmp_path: Path) -> None:
    size = (SAMPLES / "images" / "sneaker.jpg").stat().st_size
    head, total = objects.read_head(f"s3://{BUCKET}/run/images/a.jpg", 100)
    assert (len(head), total) == (100, size) and head[:3] == b"\xff\xd8\xff"
    whole, total = objects.read_head(f"s3://{BUCKET}/run/images/a.jpg", size + 50)
    assert (len(whole), total) == (size, size)
    local = LocalStorage(tmp_path)
    local.put_bytes("k/x.bin", b"0123456789", "application/octet-stream")
    assert local.read_head("k/x.bin", 4) == (b"0123", 10)


def test_object_urls_are_split_and_relative_names_sit_beside_them() -> None:
    assert split_object_url("s3://b/a/c.png") == ("b", "a/c.png")
    for bad in ("s3://bucket", "s3://bucket/", "s3:///key", "s3://b/k?x=1"):
        with pytest.raises(StorageError, match="is not an object URL"):
            split_object_url(bad)
    assert sibling_url("s3://b/in/m.csv", "images/a.png") == "s3://b/in/images/a.png"
    assert sibling_url("s3://b/m.csv", "./a.png") == "s3://b/a.png"


def test_an_image_in_s3_is_checked_by_its_header(objects: ObjectUrls) -> None:
    assert object_image_problem(objects, f"s3://{BUCKET}/run/images/a.jpg") is None
    problem = object_image_problem(objects, f"s3://{BUCKET}/run/manifest.csv")
    assert problem is not None and "is not a jpeg, png" in problem
    assert object_image_problem(objects, f"s3://{BUCKET}/run/nope.png") == \
        f"no object s3://{BUCKET}/run/nope.png"
    assert object_image_problem(None, f"s3://{BUCKET}/run/images/a.jpg") is not None


def test_a_manifest_in_s3_streams_its_rows(objects: ObjectUrls) -> None:
    source = manifest_source(f"s3://{BUCKET}/run/manifest.csv", objects)
    rows = list(iter_rows(source))
    assert [(r.line, r.data["custom_id"]) for r in rows] == [(2, "x"), (3, "y")]
    with pytest.raises(ManifestError, match=f"s3://{BUCKET}/run/gone.csv: cannot open: "):
        list(iter_rows(manifest_source(f"s3://{BUCKET}/run/gone.csv", objects)))


def test_a_file_url_names_a_local_manifest(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"image": "https://example.com/a.png"}\n')
    assert manifest_source(path.as_uri()).location == path
    assert [r.line for r in iter_rows(path.as_uri())] == [1]
    with pytest.raises(ManifestError, match="file:///absolute/path"):
        manifest_source("file://host/m.csv")


def test_output_is_checked_and_recorded_on_the_batch(tmp_path: Path) -> None:
    assert parse_output("s3://bucket/run-42/") == "s3://bucket/run-42"
    assert parse_output(str(tmp_path / "out")) == str(tmp_path / "out")
    assert parse_output("file:///srv/out/") == "file:///srv/out"
    for bad in ("http://example.com/out", "s3:///nobucket", "s3://b/p?x=1"):
        with pytest.raises(GenbatchError, match="--output must be s3://bucket/prefix"):
            parse_output(bad)
    options = BatchOptions.build(output="s3://bucket/run-42")
    assert BatchOptions.from_meta(options.meta()).output == "s3://bucket/run-42"


def test_a_batch_folder_drops_the_batch_id_from_its_keys(objects: ObjectUrls) -> None:
    folder = BatchFolder(objects.folder("s3://pipeline-out/run-42"), "b1")
    stored = folder.put_bytes(object_key("b1", "clip 7"), b"video", "video/mp4")
    assert stored.key == object_key("b1", "clip 7")
    assert stored.uri == f"s3://pipeline-out/run-42/{object_key('b1', 'clip 7')[3:]}"
    assert folder.get_bytes(object_key("b1", "clip 7")) == b"video"
    assert folder.uri(batch_key("b1", "results.jsonl")) == "s3://pipeline-out/run-42/results.jsonl"


def test_an_s3_image_goes_presigned_for_the_generation_or_inline(s3: str,
                                                                objects: ObjectUrls) -> None:
    request = GenerationRequest(image=f"s3://{BUCKET}/run/images/a.jpg", prompt="hi")
    settings = Settings(s3_endpoint_url=s3, s3_region="us-east-1")
    wired = Runtime(settings, enqueue=lambda *_: None).wire_request(request)
    assert wired.image.startswith(f"{s3}/{BUCKET}/run/images/a.jpg?")
    assert "Signature" in wired.image
    inline = settings.model_copy(update={"s3_images": "inline"})
    rt = Runtime(inline, enqueue=lambda *_: None)
    assert rt.wire_request(request).image.startswith("data:image/jpeg;base64,/9j/")
    assert rt.wire_request(request, inline=False).image.startswith(f"{s3}/")  # URL-only
    assert presign_lifetime_s(settings, request) == settings.item_deadline_s + 3600
    flex = request.model_copy(update={"execution_expires_after": 259200})
    assert presign_lifetime_s(settings, flex) == 259200 + 3600
    long = settings.model_copy(update={"item_deadline_s": 10 * 86400.0})
    assert presign_lifetime_s(long, request) == MAX_PRESIGN_S
