"""Downloads that outlast outages and refuse bad output, on real parts: Redis, worker and
scheduler processes, the simulator on loopback, a storage folder. Nothing paid is lost or
paid twice: a paid video is fetched again (a fresh URL when the provider signs one per
poll), never generated again unless asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from genbatch.simulator import SimProfile, running_simulator
from genbatch.store import item_id
from genbatch.worker.control import retry_batch
from genbatch.worker.runtime import Runtime
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration
N = 12


def manifest(folder: Path, sim_url: str) -> Path:
    path = folder / "m.jsonl"
    path.write_text("".join(json.dumps({
        "custom_id": f"r-{i}", "provider": "novita", "model": "seedance-v1.5-pro-i2v",
        "prompt": f"shot {i}", "image": f"{sim_url}/_sim/assets/landscape.png",
        "duration": 5, "seed": i}) + "\n" for i in range(N)))
    return path


def items(cluster: Cluster, batch_id: str) -> list[dict[str, Any]]:
    return [cluster.store.items.get(item_id(batch_id, s)) for s in range(1, N + 1)]


def errors_of(batch: dict[str, str]) -> list[dict[str, Any]]:
    text = Path(urlparse(batch["errors_jsonl"]).path).read_text()
    return [json.loads(line) for line in text.splitlines() if line]


def test_a_storage_outage_longer_than_the_urls_loses_nothing(redis_url: str,
                                                           tmp_path: Path) -> None:
    # Given URLs that live 2 s (Novita signs a fresh one per poll) and a storage folder
    # that refuses every write of the batch for longer than that
    profile = SimProfile.model_validate({"time_factor": 50.0, "latency_mean_s": 20.0,
                                         "url_ttl_s": 100.0, "seed": 5})
    with running_simulator(profile) as sim_url:
        cluster = Cluster(redis_url, sim_url, tmp_path, download_max_attempts="2")
        batch_id = str(cluster.submit(manifest(tmp_path, sim_url), provider=None,
                                      model=None).batch_id)
        blocker = tmp_path / "storage" / batch_id  # a file where the batch folder goes
        blocker.write_text("disk full")
        cluster.start_worker()
        cluster.start_scheduler()
        try:
            # When the downloads have outlived more URLs than GENBATCH_DOWNLOAD_MAX_ATTEMPTS
            # for some items (re-polls caused by storage do not count toward output_gone)
            cluster.wait_until(lambda: sum(int(i.get("storage_repolls") or 0) >= 3
                                           for i in items(cluster, batch_id)) >= 3,
                               what="downloads re-polled for fresh URLs")
            blocker.unlink()  # storage is back
            batch = cluster.wait_batch(batch_id, timeout=180)
        finally:
            cluster.stop_all()
        stats = cluster.sim_stats()
    # Then every video is stored, once paid, with the provider's bytes
    assert int(batch["succeeded"]) == N, errors_of(batch)
    assert all(n == 1 for n in stats["submits_by_fingerprint"].values())
    for item in items(cluster, batch_id):
        stored = Path(urlparse(item["output_uri"]).path).read_bytes()
        assert stats["videos"][item["remote_id"]] == item["sha256"]
        assert len(stored) == int(item["bytes"])
    assert not list((tmp_path / "storage" / batch_id).glob(".*.part"))


def test_a_lapsed_fixed_url_ends_output_gone_and_retry_never_regenerates_unasked(
        redis_url: str, tmp_path: Path) -> None:
    # Given a provider that serves one fixed URL per task, which has lapsed by download time
    profile = SimProfile.model_validate({"time_factor": 50.0, "latency_mean_s": 20.0,
                                         "url_ttl_s": 0.01, "fresh_url_per_poll": False,
                                         "seed": 6})
    with running_simulator(profile) as sim_url:
        cluster = Cluster(redis_url, sim_url, tmp_path)
        batch_id = str(cluster.submit(manifest(tmp_path, sim_url), provider=None,
                                      model=None).batch_id)
        cluster.start_worker()
        cluster.start_scheduler()
        try:
            batch = cluster.wait_batch(batch_id, timeout=120)
            # Then each item ends output_gone, saying it was paid
            errors = errors_of(batch)
            assert [e["error_code"] for e in errors] == ["output_gone"] * N
            assert all("paid" in e["error_message"] for e in errors)
            rt = Runtime(cluster.settings, enqueue=lambda kind, ident: None)
            # When retried: downloaded again (a re-poll), not generated again
            report = retry_batch(rt, batch_id, ("failed",))
            assert (report.redownload, report.requeued) == (N, 0)
            cluster.wait_batch(batch_id, timeout=120)
            assert all(n == 1 for n in cluster.sim_stats()["submits_by_fingerprint"].values())
            # And with --regenerate, generated again (paid again, on the user's word)
            report = retry_batch(rt, batch_id, ("failed",), regenerate=True)
            assert (report.redownload, report.requeued) == (0, N)
            cluster.wait_batch(batch_id, timeout=120)
            assert all(n == 2 for n in cluster.sim_stats()["submits_by_fingerprint"].values())
        finally:
            cluster.stop_all()


def test_a_refused_body_fails_bad_output_and_retry_fetches_it_once_allowed(
        redis_url: str, tmp_path: Path) -> None:
    # Given a worker whose size cap is below the simulator's videos
    profile = SimProfile.model_validate({"time_factor": 50.0, "latency_mean_s": 20.0,
                                         "seed": 7})
    with running_simulator(profile) as sim_url:
        cluster = Cluster(redis_url, sim_url, tmp_path, download_max_bytes="100")
        batch_id = str(cluster.submit(manifest(tmp_path, sim_url), provider=None,
                                      model=None).batch_id)
        cluster.start_worker()
        cluster.start_scheduler()
        try:
            batch = cluster.wait_batch(batch_id, timeout=120)
            errors = errors_of(batch)
            assert [e["error_code"] for e in errors] == ["bad_output"] * N
            assert all("paid" in e["error_message"] and "100-byte limit" in e["error_message"]
                       for e in errors)
            assert not list((tmp_path / "storage").rglob("*.mp4"))  # nothing refused stored
            # When the cap is raised and the batch retried
            cluster.stop("worker")
            cluster.values["download_max_bytes"] = str(10**9)
            cluster.start_worker()
            rt = Runtime(cluster.settings, enqueue=lambda kind, ident: None)
            assert retry_batch(rt, batch_id, ("failed",)).redownload == N
            batch = cluster.wait_batch(batch_id, timeout=120)
        finally:
            cluster.stop_all()
        stats = cluster.sim_stats()
    # Then every video is stored, and none was paid twice
    assert int(batch["succeeded"]) == N
    assert all(n == 1 for n in stats["submits_by_fingerprint"].values())
