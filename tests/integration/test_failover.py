"""Failover on the real set-up: Redis, simulator, worker and scheduler processes. Every
Novita and HighwayAPI task fails at the provider (the simulator's per-key injection)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from genbatch.console.views import batch_summary
from genbatch.producer.options import BatchOptions
from genbatch.simulator import SimProfile
from tests.integration.cluster import Cluster, running_cluster
from tests.integration.test_pipeline import mixed_manifest, read_jsonl

pytestmark = pytest.mark.integration
MODEL = "seedance-v1.5-pro-i2v"
UNFIT = "bytedance/seedance-v1-pro-i2v-1080p"


@pytest.fixture
def failing_cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    profile = SimProfile(time_factor=50.0, latency_mean_s=20.0, seed=7,
                         keys={"test-novita-key": {"p_task_fail": 1.0},
                               "test-highwayapi-key": {"provider": "highwayapi",
                                                       "p_task_fail": 1.0}})
    with running_cluster(redis_url, tmp_path, profile) as c:
        yield c


def manifest(folder: Path, name: str, n: int) -> Path:
    rows = [json.dumps({"custom_id": f"{name}-{i}", "prompt": f"shot {i}",
                        "image": "images/sneaker.jpg", "resolution": "480p", "duration": 5})
            for i in range(n)]
    path = folder / f"{name}.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_failover_once_to_the_fallback(failing_cluster: Cluster, tmp_path: Path) -> None:
    c = failing_cluster
    mixed_manifest(tmp_path, c.sim_url, 1)  # copies the sample images

    def submit(name: str, n: int, fallback: str) -> str:
        return str(c.submit(manifest(tmp_path, name, n), provider="novita", model=MODEL,
                            options=BatchOptions.build(fallback=fallback)).batch_id)

    rescued = submit("rescued", 6, f"byteplus:{MODEL}")  # fails at Novita, succeeds there
    doomed = submit("doomed", 4, f"highwayapi:{MODEL}")  # fails on the fallback too
    # The rows ask 480p; this WaveSpeed id is the 1080p endpoint.
    unfit = submit("unfit", 3, f"wavespeed:{UNFIT}")

    # 1. Every item failed at Novita, was resubmitted once to BytePlus, and succeeded there.
    batch = c.wait_batch(rescued)
    results = read_jsonl(batch["results_jsonl"])
    assert len(results) == 6 and read_jsonl(batch["errors_jsonl"]) == []
    for r in results:
        assert (r["provider"], r["model"], r["status"]) == ("byteplus", MODEL, "succeeded")
        assert r["failed_over_from"] == f"novita:{MODEL}" and r["attempts"] == 2
        first, second = cast(list[dict[str, Any]], r["attempt_history"])
        assert (first["provider"], first["state"], first["error_code"]) == (
            "novita", "failed", "TASK_STATUS_FAILED")
        assert first["remote_task_id"] and first["remote_task_id"] != r["remote_task_id"]
        assert (second["provider"], second["state"]) == ("byteplus", "succeeded")
        assert second["remote_task_id"] == r["remote_task_id"]
    assert batch_summary(batch)["failover"] == {"fallback": f"byteplus:{MODEL}",
                                                 "failed_over": 6}
    csv_text = Path(batch["results_csv"].removeprefix("file://")).read_text()
    assert ",failed_over_from,attempt_history" in csv_text.splitlines()[0]
    assert f"novita:{MODEL}:failed:TASK_STATUS_FAILED > byteplus:{MODEL}:succeeded" in csv_text

    # 2. Failing on the fallback too ends failed after exactly one failover.
    batch = c.wait_batch(doomed)
    errors = read_jsonl(batch["errors_jsonl"])
    assert len(errors) == 4 and read_jsonl(batch["results_jsonl"]) == []
    for e in errors:
        assert (e["status"], e["attempts"]) == ("failed", 2)
        assert f"after failing over from novita:{MODEL}" in str(e["error_message"])
    items = list(c.store.items.of_batch(doomed, 4))
    assert {i["provider"] for i in items} == {"highwayapi"}
    assert all(len(json.loads(i["history"])) == 1 for i in items)

    # 3. A row that does not fit the fallback is not failed over, and says why.
    batch = c.wait_batch(unfit)
    errors = read_jsonl(batch["errors_jsonl"])
    assert len(errors) == 3
    for e in errors:
        assert e["attempts"] == 1
        assert f"not failed over to wavespeed:{UNFIT}" in str(e["error_message"])
        assert "resolution: bytedance/seedance-v1-pro-i2v-1080p is the 1080p endpoint" in str(
            e["error_message"])
    assert {i["provider"] for i in c.store.items.of_batch(unfit, 3)} == {"novita"}

    # One submit per attempt, nothing more: 6 * 2 + 4 * 2 + 3 * 1.
    assert c.sim_stats()["submits"] == 23
    for bid in (rescued, doomed, unfit):
        batch = c.store.batches.get(bid)
        assert c.store.batches.recount(bid) == {
            k: int(v) for k, v in batch.items() if k in c.store.batches.recount(bid)}
