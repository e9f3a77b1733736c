"""A third-party provider end to end: the worked example (examples/provider-plugin, the
`genbatch-acme` package, installed by `make install` and CI) is found by its entry points;
a batch of `provider: acme` rows runs through a real Redis, worker and scheduler against
Acme's protocol on genbatch's simulator, and every video is stored with its sha256."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from genbatch import providers
from genbatch.simulator import SimProfile, running_simulator
from genbatch.store import item_id
from tests.integration.cluster import Cluster, running_cluster, sample_manifest

pytestmark = pytest.mark.integration
PROFILE = {"time_factor": 50.0, "latency_mean_s": 20.0, "latency_sigma": 0.3, "seed": 5}
N = 6


def acme_manifest(folder: Path) -> Path:
    manifest = sample_manifest(folder, N, prefix="acme")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({**row, "provider": "acme",
                                            "model": "acme-motion-1"}) + "\n" for row in rows))
    return manifest


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
    manifest = acme_manifest(tmp_path)
    with running_cluster(redis_url, tmp_path, SimProfile.model_validate(PROFILE)) as c:
        batch_id = str(c.submit(manifest, provider=None, model=None).batch_id)
        batch = c.wait_batch(batch_id)
        videos = c.sim_stats()["videos"]

    assert int(batch["succeeded"]) == N, batch
    results = [json.loads(line) for line in
               Path(urlparse(batch["results_jsonl"]).path).read_text().splitlines() if line]
    assert sorted(r["custom_id"] for r in results) == [f"acme-{i:03d}" for i in range(N)]
    for r in results:
        assert r["provider"] == "acme" and r["status"] == "succeeded"
        stored = Path(urlparse(str(r["output_uri"])).path).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == r["sha256"] == videos[r["remote_task_id"]]


def test_signed_callbacks_of_the_plugin_complete_items_without_polls(
        tmp_path: Path, redis_url: str) -> None:
    """Acme's callbacks, signed with the account's secret, reach the `genbatch webhooks`
    receiver, which verifies them with the plugin's own `verify`: every item finishes on
    its callback, none is polled."""
    port = _free_port()
    with running_simulator(SimProfile.model_validate(PROFILE)) as sim_url:
        c = Cluster(redis_url, sim_url, tmp_path, webhook_base_url=f"http://127.0.0.1:{port}",
                    webhook_secret="acme-integration-webhook-secret-0123")
        c.values["acme_webhook_secret"] = _acme_secret(sim_url, c.values["acme_api_key"])
        try:
            c.start("webhooks", "webhooks", "--port", str(port))
            c.wait_until(lambda: _up(f"http://127.0.0.1:{port}/healthz"), 30, "the receiver")
            c.start_worker()
            c.start_scheduler()
            batch_id = str(c.submit(acme_manifest(tmp_path), provider=None, model=None).batch_id)
            batch = c.wait_batch(batch_id)
            stats = c.sim_stats()
        finally:
            c.stop_all()

    assert int(batch["succeeded"]) == N, batch
    assert stats["webhooks_delivered"] == N and stats["polls"] == 0
    items = [c.store.items.get(item_id(batch_id, s)) for s in range(1, N + 1)]
    assert all(i["state"] == "succeeded" and i.get("callbacks") == "1" for i in items)


def _acme_secret(sim_url: str, api_key: str) -> str:
    answer = httpx.get(f"{sim_url}/acme/v1/account/webhook-secret", timeout=10,
                       headers={"Authorization": f"Bearer {api_key}"})
    secret: str = answer.json()["secret"]
    return secret


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
