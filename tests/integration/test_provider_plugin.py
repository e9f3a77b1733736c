"""A third-party provider end to end: the worked example (examples/provider-plugin, the
`genbatch-acme` package, installed by `make install` and CI) is found by its entry points;
a batch of `provider: acme` rows runs through a real Redis, worker and scheduler against
Acme's protocol on genbatch's simulator, and every video is stored with its sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from genbatch import providers
from genbatch.simulator import SimProfile
from tests.integration.cluster import running_cluster, sample_manifest

pytestmark = pytest.mark.integration


def test_installed_plugin_is_found_and_its_simulator_served(tmp_path: Path,
                                                             redis_url: str) -> None:
    assert providers.plugin("acme").package == "genbatch-acme", (
        "the example plugin is not installed: pip install -e examples/provider-plugin "
        "(make install does)")
    with running_cluster(redis_url, tmp_path, SimProfile(), worker=False,
                         scheduler=False) as c:
        health = httpx.get(f"{c.sim_url}/_sim/health", timeout=10).json()
    assert "acme" in health["simulators"] and health["broken"] == []


def test_batch_through_the_example_plugin_succeeds(tmp_path: Path, redis_url: str) -> None:
    profile = SimProfile.model_validate({"time_factor": 50.0, "latency_mean_s": 20.0,
                                         "latency_sigma": 0.3, "seed": 5})
    manifest = sample_manifest(tmp_path, 6, prefix="acme")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({**row, "provider": "acme",
                                            "model": "acme-motion-1"}) + "\n" for row in rows))
    with running_cluster(redis_url, tmp_path, profile) as c:
        batch_id = str(c.submit(manifest, provider=None, model=None).batch_id)
        batch = c.wait_batch(batch_id)
        videos = c.sim_stats()["videos"]

    assert int(batch["succeeded"]) == 6, batch
    results = [json.loads(line) for line in
               Path(urlparse(batch["results_jsonl"]).path).read_text().splitlines() if line]
    assert sorted(r["custom_id"] for r in results) == [f"acme-{i:03d}" for i in range(6)]
    for r in results:
        assert r["provider"] == "acme" and r["status"] == "succeeded"
        stored = Path(urlparse(str(r["output_uri"])).path).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == r["sha256"] == videos[r["remote_task_id"]]
