"""Cancel and retry on the real set-up: Redis, simulator, worker and scheduler processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from genbatch.simulator import SimProfile
from genbatch.store import item_id
from genbatch.worker.control import cancel_batch, retry_batch
from genbatch.worker.runtime import Runtime
from genbatch.worker.steps import finalize_batch
from tests.integration.cluster import Cluster, running_cluster
from tests.integration.test_pipeline import mixed_manifest, read_jsonl

pytestmark = pytest.mark.integration


def ops_runtime(cluster: Cluster) -> Runtime:
    rt: Runtime

    def enqueue(kind: str, ident: str) -> None:
        if kind == "finalize":
            finalize_batch(rt, ident)

    rt = Runtime(cluster.settings, enqueue=enqueue)
    return rt


@pytest.fixture
def slow_cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    # BytePlus tasks stay queued for a long (simulated) while, so they can be cancelled there.
    profile = SimProfile(time_factor=50.0, latency_mean_s=20.0, queue_delay_s=20.0, seed=5,
                         keys={"test-byteplus-key": {"queue_delay_s": 100000.0}})
    with running_cluster(redis_url, tmp_path, profile, byteplus_max_in_flight="4",
                         novita_max_in_flight="4") as c:
        yield c


def test_cancel_stops_dispatch_cancels_queued_remote_tasks_and_keeps_outputs(
        slow_cluster: Cluster, tmp_path: Path) -> None:
    c = slow_cluster
    rows = [json.dumps({"custom_id": f"r{i}", "provider": "byteplus" if i % 2 else "novita",
                        "prompt": "p", "image": "images/sneaker.jpg"}) for i in range(40)]
    mixed_manifest(tmp_path, c.sim_url, 1)  # copies the sample images
    manifest = tmp_path / "cancel.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    batch_id = str(c.submit(manifest, provider=None, model="seedance-v1.5-pro-i2v").batch_id)
    c.wait_until(lambda: int(c.store.batches.get(batch_id)["succeeded"]) >= 2
                 and c.sim_stats()["tasks_by_status"].get("queued", 0) >= 2,
                 what="some novita results and queued byteplus tasks")

    report = cancel_batch(ops_runtime(c), batch_id)

    assert report.cancelled_remote >= 2  # queued BytePlus tasks cancelled at the provider
    assert report.cancelled > 0  # pending items never submitted
    c.wait_until(lambda: c.store.batches.get(batch_id)["status"] == "cancelled",
                 what="batch cancelled")
    batch = c.store.batches.get(batch_id)
    results = read_jsonl(batch["results_jsonl"])
    errors = read_jsonl(batch["errors_jsonl"])
    assert len(results) >= 2
    assert all(Path(str(r["output_uri"]).removeprefix("file://")).exists() for r in results)
    assert {e["status"] for e in errors} == {"cancelled"}
    assert len(results) + len(errors) == 40
    assert c.sim_stats()["cancels"] == report.cancelled_remote
    submits_after = c.sim_stats()["submits"]
    assert cancel_batch(ops_runtime(c), batch_id).already == "cancelled"
    assert c.sim_stats()["submits"] == submits_after


def test_retry_failed_resubmits_only_those_and_records_attempts(
        redis_url: str, tmp_path: Path) -> None:
    profile = SimProfile(time_factor=50.0, latency_mean_s=10.0, seed=9,
                         keys={"test-byteplus-key": {"p_task_fail": 1.0}})
    with running_cluster(redis_url, tmp_path, profile) as c:
        sim_url = c.sim_url
        manifest = mixed_manifest(tmp_path, sim_url, 10)  # 2 of 10 rows on byteplus
        batch_id = str(c.submit(manifest, provider=None, model=None).batch_id)
        first = c.wait_batch(batch_id)
        assert first["failed"] == "2"
        httpx.put(f"{sim_url}/_sim/profile", timeout=10, json=profile.model_dump(
            mode="json") | {"keys": {}}).raise_for_status()
        submits_before = c.sim_stats()["submits"]

        report = retry_batch(ops_runtime(c), batch_id, ("failed",))

        assert report.requeued == 2
        batch = c.wait_batch(batch_id)
        assert (batch["succeeded"], batch["failed"]) == ("10", "0")
        assert c.sim_stats()["submits"] == submits_before + 2
        retried = [c.store.items.get(item_id(batch_id, s)) for s in (2, 7)]
        for item in retried:
            history = json.loads(item["history"])
            assert [h["state"] for h in history] == ["failed"]
            assert history[0]["remote_id"] != item["remote_id"]
            assert item["attempts"] == "2"
        assert len(read_jsonl(batch["results_jsonl"])) == 10
        assert read_jsonl(batch["errors_jsonl"]) == []


def test_resume_skips_succeeded_replaces_fixed_rows_and_adds_new(
        redis_url: str, tmp_path: Path) -> None:
    from genbatch.producer.resume import resume_manifest

    profile = SimProfile(time_factor=50.0, latency_mean_s=10.0, seed=11)
    with running_cluster(redis_url, tmp_path, profile) as c:
        sim_url = c.sim_url
        mixed_manifest(tmp_path, sim_url, 1)  # copies the sample images
        good = {"custom_id": "a", "prompt": "p", "image": "images/sneaker.jpg"}
        broken = {"custom_id": "b", "prompt": "p", "image": "images/bottle.png",
                  "duration": 99}
        first = tmp_path / "first.jsonl"
        first.write_text(json.dumps(good) + "\n" + json.dumps(broken) + "\n")
        batch_id = str(c.submit(first, provider="novita", model="seedance-v1.5-pro-i2v",
                                skip_invalid=True).batch_id)
        batch = c.wait_batch(batch_id)
        assert (batch["succeeded"], batch["failed"]) == ("1", "1")
        submits = c.sim_stats()["submits"]

        fixed = tmp_path / "fixed.jsonl"
        fixed.write_text("\n".join(json.dumps(r) for r in (
            good, {**broken, "duration": 5},
            {"custom_id": "c", "prompt": "p", "image": "images/watch.jpg"})) + "\n")
        _, changes = resume_manifest(fixed, batch_id, store=c.store, storage=c.storage,
                                     provider="novita", model="seedance-v1.5-pro-i2v")

        assert changes == {"added": 1, "replaced": 1, "kept": 1}
        batch = c.wait_batch(batch_id)
        assert (batch["total"], batch["succeeded"], batch["failed"]) == ("3", "3", "0")
        assert c.sim_stats()["submits"] == submits + 2  # "a" was not paid for again
        ids = sorted(str(r["custom_id"]) for r in read_jsonl(batch["results_jsonl"]))
        assert ids == ["a", "b", "c"]


def test_resume_with_a_bad_row_changes_nothing(tmp_path: Path, redis_url: str) -> None:
    from genbatch.errors import ManifestRejected
    from genbatch.producer.ingest import ingest_manifest
    from genbatch.producer.resume import resume_manifest
    from genbatch.storage import open_storage
    from genbatch.store import JobStore

    js = JobStore.from_url(redis_url)
    storage = open_storage(str(tmp_path / "out"))
    mixed_manifest(tmp_path, "http://127.0.0.1:1", 1)
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps({"custom_id": "a", "prompt": "p", "image": "images/lamp.webp"})
                  + "\n")
    batch_id = str(ingest_manifest(ok, store=js, storage=storage, provider="novita",
                                   model="seedance-v1.5-pro-i2v").batch_id)
    before = js.batches.get(batch_id)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"custom_id": "n", "prompt": "p", "image": "images/lamp.webp",
                               "resolution": "4k"}) + "\n")
    with pytest.raises(ManifestRejected):
        resume_manifest(bad, batch_id, store=js, storage=storage, provider="novita",
                        model="seedance-v1.5-pro-i2v")
    assert js.batches.get(batch_id) == before
