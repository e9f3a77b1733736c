"""`s3://` input images are confined like local ones: to the manifest's own bucket prefix and
the `s3://bucket/prefix` entries of GENBATCH_INPUT_ROOTS, at submit (one line naming the
file, line, field and the allowed prefixes, the same whether or not the object exists) and
again at dispatch, against the prefixes recorded on the batch. A real S3-compatible server
(moto) on loopback, real Redis, the simulator on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from genbatch.client import Client
from genbatch.config import Settings
from genbatch.demo import SAMPLES
from genbatch.errors import GenbatchError, InputNotAllowed, ManifestRejected, StorageError
from genbatch.models import ItemState
from genbatch.producer.ingest import ingest_manifest
from genbatch.producer.resume import resume_manifest
from genbatch.simulator import SimProfile, running_simulator
from genbatch.storage import open_storage
from genbatch.storage.roots import batch_roots, check_inside, inside, object_root
from genbatch.storage.urls import ObjectUrls
from genbatch.store import item_id
from genbatch.worker.runtime import Runtime
from genbatch.worker.steps import submit_item
from tests.dispatching import dispatch_items

MODEL = "seedance-v1.5-pro-i2v"
MANIFEST = "s3://pipeline-in/run/manifest.csv"
SECRET = "s3://other-team/private/secret.png"


@pytest.fixture
def buckets(s3: str) -> Iterator[ObjectUrls]:
    """pipeline-in/run/ holds an image; other-team/private/ holds one too (that exists)."""
    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    client.create_bucket(Bucket="other-team")
    image = SAMPLES / "images" / "bottle.png"
    client.upload_file(str(image), "pipeline-in", "run/images/ok.png")
    client.upload_file(str(image), "other-team", "private/secret.png")
    yield ObjectUrls(endpoint_url=s3, region="us-east-1")
    for obj in client.list_objects_v2(Bucket="other-team").get("Contents", []):
        client.delete_object(Bucket="other-team", Key=obj["Key"])
    client.delete_bucket(Bucket="other-team")


def put_manifest(s3: str, images: list[str]) -> None:
    rows = "".join(f"r{n},a slow pan,{image}\n" for n, image in enumerate(images))
    boto3.client("s3", endpoint_url=s3, region_name="us-east-1").put_object(
        Bucket="pipeline-in", Key="run/manifest.csv",
        Body=("custom_id,prompt,image\n" + rows).encode())


def refusals(objects: ObjectUrls, **kwargs: object) -> list[str]:
    try:
        ingest_manifest(MANIFEST, store=None, storage=None, provider="novita", model=MODEL,
                        dry_run=True, objects=objects, **kwargs)  # type: ignore[arg-type]
    except ManifestRejected as exc:
        return [str(e) for e in exc.errors]
    return []


def test_a_root_is_a_bucket_prefix_not_a_string_prefix() -> None:
    assert object_root("s3://b/run") == object_root("s3://b/run/") == "s3://b/run/"
    assert object_root("s3://b") == "s3://b/"
    roots = (object_root("s3://b/run"),)
    assert inside("s3://b/run/x.png", roots) and inside("s3://b/run/a/b/x.png", roots)
    assert not inside("s3://b/run2/x.png", roots)
    assert not inside("s3://bb/run/x.png", roots)
    assert not inside("s3://b/run/../other/x.png", roots)  # a client may collapse it
    assert not inside("s3://b/run/./x.png", roots)
    assert inside("s3://b2/anything.png", ("s3://b2/",))
    with pytest.raises(StorageError, match="is not s3://bucket or s3://bucket/prefix"):
        object_root("s3://b/run/../x")


def test_a_batch_allows_its_manifests_prefix_and_the_recorded_ones() -> None:
    assert batch_roots(MANIFEST, "") == ("s3://pipeline-in/run/",)
    assert batch_roots("/srv/jobs/m.csv", "") == ()
    assert batch_roots("s3://pipeline-in/m.csv", "s3://x/y/\ns3://x/y/") == \
        ("s3://pipeline-in/", "s3://x/y/")


def test_input_roots_hold_folders_and_bucket_prefixes() -> None:
    settings = Settings(input_roots="/srv/a:s3://team/in:/srv/b::S3://other")
    assert settings.input_root_paths() == (Path("/srv/a"), Path("/srv/b"))
    assert settings.input_object_roots() == ("s3://team/in", "S3://other")


def test_an_image_in_another_bucket_is_refused_alike_whether_or_not_it_exists(
        s3: str, buckets: ObjectUrls) -> None:
    put_manifest(s3, [SECRET, "s3://other-team/private/missing.png", "images/ok.png",
                      "s3://pipeline-in/run2/x.png", "images/../../run2/x.png"])
    found = refusals(buckets)
    assert len(found) == 4
    allowed = "(s3://pipeline-in/run/)"
    for line, url in ((2, SECRET), (3, "s3://other-team/private/missing.png"),
                      (5, "s3://pipeline-in/run2/x.png"),
                      (6, "s3://pipeline-in/run/images/../../run2/x.png")):
        assert f"{MANIFEST}:{line}: image: {url} is outside the allowed input prefixes " \
               f"{allowed}; add its prefix to GENBATCH_INPUT_ROOTS (s3://bucket/prefix)" in found
    assert all("\n" not in f for f in found)


def test_an_input_root_lets_its_prefix_in_and_the_batch_records_it(
        s3: str, buckets: ObjectUrls, store: object, tmp_path: Path) -> None:
    put_manifest(s3, [SECRET, "images/ok.png"])
    assert refusals(buckets, object_roots=("s3://other-team/private",)) == []
    assert refusals(buckets, object_roots=("s3://other-team/priv",)) != []  # not a prefix
    result = ingest_manifest(MANIFEST, store=store, storage=open_storage(str(tmp_path)),  # type: ignore[arg-type]
                             provider="novita", model=MODEL, objects=buckets,
                             object_roots=("s3://other-team/private",))
    batch = store.batches.get(str(result.batch_id))  # type: ignore[attr-defined]
    assert batch["object_roots"].split("\n") == ["s3://pipeline-in/run/",
                                                 "s3://other-team/private/"]


@pytest.fixture
def sim_url() -> Iterator[str]:
    with running_simulator(SimProfile(time_factor=100)) as url:
        yield url


def test_the_worker_signs_nothing_outside_the_batchs_recorded_prefixes(
        s3: str, buckets: ObjectUrls, redis_url: str, tmp_path: Path, sim_url: str) -> None:
    settings = Settings(redis_url=redis_url, storage_url=str(tmp_path / "storage"),
                        novita_api_key="nv-key", novita_base_url=sim_url,
                        s3_endpoint_url=s3, s3_region="us-east-1", dispatch_on_free=False)
    rt = Runtime(settings, enqueue=lambda kind, ident: None)
    # Written another way than a checked submit: the batch's manifest and recorded prefix
    # allow pipeline-in/run/ only, yet one item names another team's object.
    rt.store.ingest.create("b1", {"manifest": MANIFEST, "object_roots": "s3://pipeline-in/run/",
                                  "provider": "novita", "model": MODEL}, 1.0)
    rt.store.ingest.add_items("b1", [
        {"seq": str(n), "state": "pending", "provider": "novita", "line": str(n + 1),
         "custom_id": f"c{n}", "model": MODEL,
         "req": json.dumps({"prompt": "a slow pan", "image": image})}
        for n, image in ((1, SECRET), (2, "s3://pipeline-in/run/images/ok.png"))])
    rt.store.ingest.commit("b1", ["novita"])
    ids = dispatch_items(rt.store, "novita", "b1", limit=9, max_n=9, lease_until=1e12)
    assert ids == [item_id("b1", 1), item_id("b1", 2)]

    outcomes = [submit_item(rt, iid) for iid in ids]

    assert outcomes == [ItemState.FAILED, ItemState.SUBMITTED]
    refused = rt.store.items.get(ids[0])
    assert refused.error_code == "input_not_allowed"
    assert refused.error_message == (
        f"image: {SECRET} is outside the allowed input prefixes (s3://pipeline-in/run/); "
        "add its prefix to GENBATCH_INPUT_ROOTS (s3://bucket/prefix)")
    log = httpx.get(f"{sim_url}/_sim/stats", timeout=10).json()["request_log"]
    posts = [e["body"] for e in log if e["method"] == "POST"]
    assert len(posts) == 1 and "other-team" not in posts[0] and "pipeline-in" in posts[0]


def test_check_inside_names_the_field() -> None:
    with pytest.raises(InputNotAllowed, match=r"^last_image: s3://x/y.png is outside .*\(none\)"):
        check_inside("last_image", "s3://x/y.png", ())


def test_a_resume_keeps_the_batchs_prefixes_and_records_its_own(
        s3: str, buckets: ObjectUrls, store: object, tmp_path: Path) -> None:
    put_manifest(s3, ["images/ok.png"])
    storage = open_storage(str(tmp_path))
    batch_id = str(ingest_manifest(MANIFEST, store=store, storage=storage,  # type: ignore[arg-type]
                                   provider="novita", model=MODEL, objects=buckets).batch_id)
    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    client.upload_file(str(SAMPLES / "images" / "bottle.png"), "pipeline-out", "fix/new.png")
    rows = [{"custom_id": "r0", "prompt": "again", "image": "s3://pipeline-in/run/images/ok.png"},
            {"custom_id": "r1", "prompt": "new", "image": "new.png"},
            {"custom_id": "r2", "prompt": "no", "image": SECRET}]
    client.put_object(Bucket="pipeline-out", Key="fix/m.jsonl",
                      Body="".join(json.dumps(r) + "\n" for r in rows).encode())

    with pytest.raises(ManifestRejected) as refused:
        resume_manifest("s3://pipeline-out/fix/m.jsonl", batch_id, store=store,  # type: ignore[arg-type]
                        storage=storage, provider="novita", model=MODEL, objects=buckets)
    assert [(e.line, e.field) for e in refused.value.errors] == [(3, "image")]
    assert "(s3://pipeline-out/fix/, s3://pipeline-in/run/)" in refused.value.errors[0].reason

    _, changes = resume_manifest("s3://pipeline-out/fix/m.jsonl", batch_id, store=store,  # type: ignore[arg-type]
                                 storage=storage, provider="novita", model=MODEL,
                                 objects=buckets, skip_invalid=True)
    assert changes["added"] == 2
    batch = store.batches.get(batch_id)  # type: ignore[attr-defined]
    assert batch["object_roots"].split("\n") == ["s3://pipeline-in/run/", "s3://pipeline-out/fix/"]


def test_input_root_takes_a_bucket_prefix_too(s3: str, buckets: ObjectUrls) -> None:
    put_manifest(s3, [SECRET])
    client = Client(Settings(s3_endpoint_url=s3, s3_region="us-east-1"))
    with pytest.raises(ManifestRejected):
        client.estimate(MANIFEST, provider="novita", model=MODEL)
    outcome = client.estimate(MANIFEST, provider="novita", model=MODEL,
                              input_roots=("s3://other-team/private",))
    assert outcome.valid == 1 and outcome.errors == []
    via_setting = Client(Settings(s3_endpoint_url=s3, s3_region="us-east-1",
                                  input_roots="/nonexistent:s3://other-team/private/"))
    assert via_setting.estimate(MANIFEST, provider="novita", model=MODEL).valid == 1
    with pytest.raises(GenbatchError, match=r"^--input-root s3://: input root 's3://' is not"):
        client.estimate(MANIFEST, provider="novita", model=MODEL, input_roots=("s3://",))
