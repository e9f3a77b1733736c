"""fal and Runway end to end on real parts: Redis, the simulator, the `genbatch webhooks`
receiver, worker and scheduler processes.

One manifest mixes fal rows (three models; local images uploaded to fal's storage, each
content once for the account, and submitted by their file URL; one row flex,
which goes as fal's low queue priority), Runway rows (polled; over the key's concurrency
they wait THROTTLED at Runway) and a Seedance row on BytePlus. fal's requests finish by
their webhooks, each verified with ED25519 under the key set the simulator publishes.
Then a Seedance batch on Novita, whose every task fails there, falls back to
`fal:seedance-v1-pro-i2v`: the fallback is checked when the batch is submitted (a row fal
cannot take is named) and the fitting rows succeed on fal.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import httpx
import pytest

from genbatch.demo import SAMPLES
from genbatch.producer.options import BatchOptions
from genbatch.store import item_id
from tests.integration.cluster import Cluster
from tests.integration.test_pipeline import read_jsonl
from tests.integration.test_webhooks import hooked_cluster

pytestmark = pytest.mark.integration
PROFILE = {"time_factor": 50.0, "latency_mean_s": 20.0, "latency_sigma": 0.3,
           "queue_delay_s": 1.0, "seed": 5,
           "keys": {"test-runway-key": {"concurrency": 1},
                    "test-fal-key": {"concurrency": 2},
                    "test-novita-key": {"p_task_fail": 1.0}}}
ROWS: list[dict[str, Any]] = [
    {"provider": "fal", "model": "kling-v2.1-std-i2v", "duration": 5},
    {"provider": "fal", "model": "fal-ai/kling-video/v2.5-turbo/pro/image-to-video",
     "duration": 10, "last_image": "images/bottle.png"},
    {"provider": "fal", "model": "seedance-v1-pro-i2v", "resolution": "480p",
     "ratio": "16:9", "seed": 3, "service_tier": "flex"},
    {"provider": "fal", "model": "kling-v2.1-std-i2v", "duration": 10},
    {"provider": "runway", "model": "gen4_turbo", "ratio": "16:9", "duration": 5},
    {"provider": "runway", "model": "gen4_turbo", "ratio": "9:16", "seed": 9},
    {"provider": "runway", "model": "gen4_turbo", "duration": 2},
    {"provider": "byteplus", "model": "seedance-v1.5-pro-i2v", "resolution": "480p",
     "duration": 5},
]


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with hooked_cluster(redis_url, tmp_path, PROFILE) as c:
        yield c


def write(folder: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    shutil.copytree(SAMPLES / "images", folder / "images", dirs_exist_ok=True)
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"custom_id": f"{name}-{i}", "prompt": f"shot {i}",
                                        "image": "images/sneaker.jpg", **row}) + "\n"
                            for i, row in enumerate(rows)))
    return path


def test_fal_runway_and_seedance_rows_end_with_stored_videos(cluster: Cluster,
                                                             tmp_path: Path) -> None:
    batch_id = str(cluster.submit(write(tmp_path, "mix", ROWS), provider=None,
                                  model=None).batch_id)
    batch = cluster.wait_batch(batch_id, timeout=240)

    results = read_jsonl(batch["results_jsonl"])
    assert read_jsonl(batch["errors_jsonl"]) == [] and len(results) == len(ROWS)
    videos = cluster.sim_stats()["videos"]
    for r in results:
        assert r["status"] == "succeeded"
        stored = Path(urlparse(str(r["output_uri"])).path).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == r["sha256"] == videos[r["remote_task_id"]]
    items = [cluster.store.items.get(item_id(batch_id, s)) for s in range(1, len(ROWS) + 1)]
    fal = [i for i in items if i["provider"] == "fal"]
    # fal's requests finished by their (verified) webhooks; Runway's by polling.
    assert fal and all(i.get("callbacks") == "1" for i in fal)
    assert all(not i.get("callbacks") for i in items if i["provider"] == "runway")
    stats = cluster.sim_stats()
    assert stats["max_running"]["runway"]["test-runway-key"] == 1
    assert stats["max_running"]["fal"]["test-fal-key"] <= 2
    log = stats["request_log"]
    flex = [e for e in log if e["path"].startswith("/fal/fal-ai/bytedance")]
    assert flex and flex[0]["headers"]["x-fal-queue-priority"] == "low"
    assert all(e["headers"].get("x-runway-version") == "2024-11-06"
               for e in log if e["path"].startswith("/runway/"))
    assert all(n == 1 for n in stats["submits_by_fingerprint"].values())
    # Two images among the fal rows (sneaker, bottle): two uploads, however many rows.
    initiated = [e for e in log if e["path"] == "/fal/storage/upload/initiate"]
    assert len(initiated) == stats["uploads"] == 2


def test_a_seedance_row_falls_back_to_fal(cluster: Cluster, tmp_path: Path) -> None:
    rows = [{"resolution": "480p", "duration": 5, "seed": i} for i in range(3)]
    rows.append({"resolution": "480p", "duration": 5, "prompt": ""})  # fal needs a prompt
    ingest = cluster.submit(write(tmp_path, "fb", rows), provider="novita",
                            model="seedance-v1-pro-i2v",
                            options=BatchOptions.build(fallback="fal:seedance-v1-pro-i2v"))
    # Checked at submit: the one row fal cannot take is named, the others may fail over.
    (warning,) = [w for w in ingest.warnings if "fal:seedance-v1-pro-i2v" in w]
    assert "1 row(s) cannot fail over" in warning and "prompt" in warning

    batch = cluster.wait_batch(str(ingest.batch_id), timeout=240)
    results = read_jsonl(batch["results_jsonl"])
    assert len(results) == 3 and len(read_jsonl(batch["errors_jsonl"])) == 1
    for r in results:
        assert (r["provider"], r["status"]) == ("fal", "succeeded")
        assert r["failed_over_from"] == "novita:seedance-v1-pro-i2v"
        assert Path(urlparse(str(r["output_uri"])).path).stat().st_size > 0


def test_an_ambiguous_fal_submit_is_settled_by_its_signed_webhook(cluster: Cluster,
                                                                  tmp_path: Path) -> None:
    # Every fal submit creates its request, then answers 500: the outcome is unknown.
    keys: dict[str, Any] = {**cast(dict[str, Any], PROFILE["keys"]),
                            "test-fal-key": {"p_submit_timeout": 1.0,
                                             "submit_timeout_mode": "error"}}
    answer = httpx.put(f"{cluster.sim_url}/_sim/profile", json={**PROFILE, "keys": keys},
                       timeout=10)
    assert answer.status_code == 200, answer.text
    rows = [{"provider": "fal", "model": "kling-v2.1-std-i2v"} for _ in range(2)]
    batch_id = str(cluster.submit(write(tmp_path, "amb", rows), provider=None,
                                  model=None).batch_id)
    # The batch may complete with both items ambiguous first; their webhooks reopen it.
    cluster.wait_until(lambda: cluster.store.batches.get(batch_id)["succeeded"] == "2", 240,
                       "both ambiguous items to be adopted and succeed")
    for slot in (1, 2):
        item = cluster.store.items.get(item_id(batch_id, slot))
        assert item["state"] == "succeeded" and item["adopted"] == item["remote_id"]
        (past,) = json.loads(item["history"])
        assert past["state"] == "ambiguous" and "signed callback" in past["note"]
    assert cluster.sim_stats()["submits"] == 2  # settled, not submitted again
