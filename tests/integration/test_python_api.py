"""The Python API end to end: a real Redis, worker and scheduler processes, the simulator on
loopback; manifests, images and outputs in a real S3 server (moto) for the pipeline cases."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

import genbatch
from genbatch.demo import SAMPLES
from genbatch.errors import NotFoundError, WaitTimeout
from genbatch.simulator import SimProfile
from tests.integration.cluster import Cluster, running_cluster

pytestmark = pytest.mark.integration
FAILING_BYTEPLUS = {"time_factor": 50.0, "latency_mean_s": 20.0, "latency_sigma": 0.3,
                    "seed": 5, "keys": {"test-byteplus-key": {"p_task_fail": 1.0}}}
PLAN = [("novita", "images/sneaker.jpg"), ("byteplus", "images/bottle.png"),
        ("highwayapi", "images/watch.jpg"), ("wavespeed", "images/lamp.webp")]


def write_manifest(folder: Path, plan: list[tuple[str, str]] = PLAN) -> Path:
    shutil.copytree(SAMPLES / "images", folder / "images", dirs_exist_ok=True)
    lines = ["custom_id,provider,prompt,image,resolution,duration"]
    lines += [f"clip-{i},{p},shot {i},{image},480p,5" for i, (p, image) in enumerate(plan)]
    path = folder / "manifest.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(redis_url, tmp_path, SimProfile.model_validate(FAILING_BYTEPLUS)) as c:
        yield c


def test_submit_wait_and_read_typed_rows(cluster: Cluster, tmp_path: Path) -> None:
    client = genbatch.Client(cluster.settings)
    batch = client.submit(write_manifest(tmp_path / "in"), model="seedance-v1.5-pro-i2v")
    assert batch.submitted is not None and batch.submitted.valid == 4
    with pytest.raises(WaitTimeout, match=f"batch {batch.id} is not finished after 0 s"):
        batch.wait(timeout=0)
    seen: list[genbatch.BatchInfo] = []
    info = batch.wait(on_progress=seen.append)
    assert info.finished and info.status == "completed"
    assert (info.succeeded, info.failed, info.exit_code) == (3, 1, 1)
    assert seen[-1] == info and [s.done for s in seen] == sorted(s.done for s in seen)
    results = list(batch.results())
    assert [r.custom_id for r in results] == ["clip-0", "clip-2", "clip-3"]
    for row in results:
        assert isinstance(row, genbatch.ResultRow) and row.succeeded
        assert row.output_uri and Path(row.output_uri.removeprefix("file://")).is_file()
        assert row.attempt_history[-1].state == "succeeded"
    [bad] = list(batch.errors())
    assert (bad.custom_id, bad.line, bad.status) == ("clip-1", 3, "failed")
    # the row as submitted, its local image path made absolute (resubmittable from anywhere)
    assert str(bad.row["image"]).endswith("/images/bottle.png") and bad.error_code
    assert Path(str(bad.row["image"])).is_absolute()
    assert [b.id for b in client.batches()] == [batch.id]
    assert info.results_jsonl and info.results_jsonl.endswith(f"{batch.id}/results.jsonl")

    retried = client.batch(batch.id).retry()
    assert retried.requeued == 1
    assert batch.wait().exit_code == 1  # BytePlus fails every task in this profile
    assert batch.cancel().already == "completed"
    with pytest.raises(NotFoundError):
        client.batch("no-such-batch")


def upload_run(endpoint: str, folder: Path) -> str:
    """The manifest and its images under s3://pipeline-in/run/; returns the manifest URL.
    One row names its image by URL, the others relative to the manifest."""
    local = write_manifest(folder, [("novita", "images/sneaker.jpg"),
                                    ("wavespeed", "s3://pipeline-in/run/images/lamp.webp"),
                                    ("byteplus", "images/watch.jpg")])
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for image in (folder / "images").iterdir():
        client.upload_file(str(image), "pipeline-in", f"run/images/{image.name}")
    client.upload_file(str(local), "pipeline-in", "run/manifest.csv")
    return "s3://pipeline-in/run/manifest.csv"


def test_manifest_images_and_outputs_in_s3(s3_cluster: Cluster, s3: str,
                                           tmp_path: Path) -> None:
    manifest = upload_run(s3, tmp_path / "in")
    client = genbatch.Client(s3_cluster.settings)
    batch = client.submit(manifest, model="seedance-v1.5-pro-i2v",
                          output="s3://pipeline-out/run-42/")
    info = batch.wait()
    assert info.exit_code == 0, list(batch.errors())
    assert info.output == "s3://pipeline-out/run-42" and info.manifest == manifest
    assert info.results_jsonl == "s3://pipeline-out/run-42/results.jsonl"
    uris = [r.output_uri for r in batch.results()]
    assert uris == [f"s3://pipeline-out/run-42/clip-{i}.mp4" for i in range(3)]
    store = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    listed = {o["Key"] for o in store.list_objects_v2(Bucket="pipeline-out")["Contents"]}
    assert listed == {"run-42/clip-0.mp4", "run-42/clip-1.mp4", "run-42/clip-2.mp4",
                      "run-42/results.jsonl", "run-42/results.csv", "run-42/errors.jsonl"}
    body = store.get_object(Bucket="pipeline-out", Key="run-42/results.jsonl")["Body"].read()
    assert [json.loads(line)["output_uri"] for line in body.splitlines()] == uris
    # Every provider got the images as presigned URLs of the input bucket, never s3://.
    submits = [e["body"] for e in s3_cluster.sim_stats()["request_log"]
               if e["method"] == "POST" and "pipeline-in" in e["body"]]
    assert len(submits) == 3
    assert all("s3://" not in b and "Signature" in b for b in submits)


def test_a_bad_s3_image_or_manifest_is_one_line(s3_cluster: Cluster, s3: str,
                                                tmp_path: Path) -> None:
    upload_run(s3, tmp_path / "in")
    # A local manifest's s3:// images need their prefix among the input roots.
    settings = s3_cluster.settings.model_copy(update={"input_roots": "s3://pipeline-in/run"})
    client = genbatch.Client(settings)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"provider": "novita", "prompt": "x",
                               "image": "s3://pipeline-in/run/manifest.csv"}) + "\n"
                   + json.dumps({"provider": "novita", "prompt": "x",
                                 "image": "s3://pipeline-in/run/images/nope.png"}) + "\n")
    outcome = client.estimate(bad, model="seedance-v1.5-pro-i2v", skip_invalid=True)
    assert [(e.line, e.field) for e in outcome.errors] == [(1, "image"), (2, "image")]
    assert "is not a jpeg, png" in outcome.errors[0].reason
    assert "no object s3://pipeline-in/run/images/nope.png" in outcome.errors[1].reason
    with pytest.raises(genbatch.GenbatchError, match="cannot open"):
        client.estimate("s3://pipeline-in/run/missing.csv")
