"""End to end on real parts: Redis, the simulator on loopback, worker and scheduler
processes, a storage folder. Every manifest line must end in exactly one output file."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from genbatch.config import Settings
from genbatch.demo import SAMPLES
from genbatch.providers.accounts import env_account
from genbatch.simulator import SimProfile
from genbatch.store import item_id
from genbatch.worker import download, steps
from genbatch.worker.runtime import Runtime
from tests.integration.cluster import Cluster, running_cluster

pytestmark = pytest.mark.integration
PROFILE = {"time_factor": 50.0, "latency_mean_s": 20.0, "latency_sigma": 0.4,
           "queue_delay_s": 2.0, "seed": 3,
           "keys": {"test-highwayapi-key": {"provider": "highwayapi"},
                    "test-byteplus-key": {"p_task_fail": 0.1}}}


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(redis_url, tmp_path, SimProfile.model_validate(PROFILE)) as c:
        yield c


def mixed_manifest(folder: Path, sim_url: str, n: int) -> Path:
    shutil.copytree(SAMPLES / "images", folder / "images", dirs_exist_ok=True)
    plan = [("novita", "seedance-v1.5-pro-i2v", "images/sneaker.jpg"),
            ("byteplus", "seedance-v1.5-pro-i2v", "images/bottle.png"),
            ("highwayapi", "seedance-v1.5-pro-i2v", "images/watch.jpg"),
            ("novita", "seedance-v1-lite-i2v", "images/lamp.webp"),
            ("wavespeed", "seedance-v1.5-pro-i2v", f"{sim_url}/_sim/assets/landscape.png")]
    lines = []
    for i in range(n):
        provider, model, image = plan[i % len(plan)]
        row = {"custom_id": f"ad-{i:04d}", "provider": provider, "model": model,
               "prompt": f"product shot {i}", "image": image, "resolution": "480p",
               "duration": 5, "seed": i}
        lines.append(json.dumps(row))
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_jsonl(uri: str) -> list[dict[str, Any]]:
    text = Path(urlparse(uri).path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line]


def test_mixed_manifest_every_line_accounted_and_bytes_match(cluster: Cluster,
                                                             tmp_path: Path) -> None:
    manifest = mixed_manifest(tmp_path, cluster.sim_url, 200)
    batch_id = str(cluster.submit(manifest, provider=None, model=None).batch_id)

    batch = cluster.wait_batch(batch_id, timeout=240)

    results = read_jsonl(batch["results_jsonl"])
    errors = read_jsonl(batch["errors_jsonl"])
    ids = [r["custom_id"] for r in results] + [e["custom_id"] for e in errors]
    assert sorted(ids) == [f"ad-{i:04d}" for i in range(200)]
    assert len(results) > 150  # 10 % task failures on one provider only
    assert all(e["status"] == "failed" and e["error_code"] for e in errors)
    videos = cluster.sim_stats()["videos"]
    for r in results:
        stored = Path(urlparse(str(r["output_uri"])).path).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == r["sha256"] == videos[r["remote_task_id"]]
    assert cluster.store.batches.recount(batch_id) == {
        k: int(v) for k, v in batch.items() if k in cluster.store.batches.recount(batch_id)}
    csv_lines = Path(urlparse(batch["results_csv"]).path).read_text().splitlines()
    assert len(csv_lines) == len(results) + 1
    assert all(n == 1 for n in cluster.sim_stats()["submits_by_fingerprint"].values())


def test_duplicate_and_late_messages_change_nothing(cluster: Cluster, tmp_path: Path) -> None:
    manifest = mixed_manifest(tmp_path, cluster.sim_url, 5)
    batch_id = str(cluster.submit(manifest, provider=None, model=None).batch_id)
    cluster.wait_batch(batch_id)
    before_items = [cluster.store.items.get(item_id(batch_id, s)) for s in range(1, 6)]
    before_stats = cluster.sim_stats()
    rt = Runtime(cluster.settings, enqueue=lambda kind, ident: None)

    outcomes = [step(rt, item_id(batch_id, s))
                for s in range(1, 6)
                for step in (steps.submit_item, steps.poll_item, download.download_item)]
    outcomes.append(steps.finalize_batch(rt, batch_id))

    assert set(outcomes) == {"skipped"}
    assert [cluster.store.items.get(item_id(batch_id, s)) for s in range(1, 6)] == before_items
    after = cluster.sim_stats()
    assert (after["submits"], after["polls"], after["downloads"]) == (
        before_stats["submits"], before_stats["polls"], before_stats["downloads"])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_worker_replaced_mid_batch_finishes_with_nothing_lost(
        cluster: Cluster, tmp_path: Path, sig: int) -> None:
    manifest = mixed_manifest(tmp_path, cluster.sim_url, 60)
    batch_id = str(cluster.submit(manifest, provider=None, model=None).batch_id)
    cluster.wait_until(lambda: int(cluster.store.batches.get(batch_id)["succeeded"]) >= 5,
                       what="first results")

    cluster.stop("worker", sig)
    cluster.start_worker("worker2")
    batch = cluster.wait_batch(batch_id, timeout=240)

    results = read_jsonl(batch["results_jsonl"])
    errors = read_jsonl(batch["errors_jsonl"])
    assert len(results) + len(errors) == 60
    assert len({r["custom_id"] for r in results} | {e["custom_id"] for e in errors}) == 60
    # Nothing is paid twice: one accepted submit per request, ever.
    assert all(n == 1 for n in cluster.sim_stats()["submits_by_fingerprint"].values())
    if sig == signal.SIGTERM:  # a warm shutdown finishes what it started
        assert not any(e["status"] == "ambiguous" for e in errors)


def test_settings_never_hold_a_key_in_text() -> None:
    s = Settings(novita_api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(s)
    assert "sk-very-secret" not in str(env_account(s, "novita"))
