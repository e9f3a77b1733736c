"""Redis goes away and comes back (same port, AOF): the worker and the scheduler reconnect
by themselves and the batch finishes with every line accounted for."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis

from genbatch.demo.redis_server import start_redis
from genbatch.models import Counter
from genbatch.simulator import SimProfile, running_simulator
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration


def test_worker_and_scheduler_carry_on_after_redis_restarts(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis")
    try:
        profile = SimProfile.model_validate({"time_factor": 50.0, "latency_mean_s": 20.0,
                                             "seed": 11})
        with running_simulator(profile) as sim_url:
            cluster = Cluster(server.url, sim_url, tmp_path, task_lease_s="8")
            image = f"{sim_url}/_sim/assets/landscape.png"
            n = 60
            (tmp_path / "m.jsonl").write_text("".join(json.dumps({
                "custom_id": f"r-{i}", "provider": "novita", "model": "seedance-v1.5-pro-i2v",
                "prompt": f"shot {i}", "image": image, "duration": 5, "seed": i}) + "\n"
                for i in range(n)))
            batch_id = str(cluster.submit(tmp_path / "m.jsonl", provider=None,
                                          model=None).batch_id)
            cluster.start_worker()
            cluster.start_scheduler()
            try:
                cluster.wait_until(lambda: int(cluster.store.batches.get(batch_id)["succeeded"])
                                   >= 5, what="first results")
                before = cluster.store.batches.recount(batch_id)
                server.stop()
                time.sleep(3.0)  # both processes see the connection refused for a while
                server = start_redis(tmp_path / "redis", server.port)
                cluster.store.debug.client.connection_pool.disconnect()
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline:
                    try:
                        if cluster.store.batches.get(batch_id)["status"] == "completed":
                            break
                    except redis.ConnectionError:
                        pass
                    assert all(p.poll() is None for p in cluster.procs.values()), \
                        cluster.log_tail("worker") + cluster.log_tail("scheduler")
                    time.sleep(0.2)
                batch = cluster.store.batches.get(batch_id)
                assert batch["status"] == "completed", batch
            finally:
                cluster.stop_all()
            stats = cluster.sim_stats()
        # the Celery worker reconnected by itself: not merely restarted by its supervisor
        assert "Unrecoverable error" not in (tmp_path / "worker.log").read_text(errors="replace")
        assert before[Counter.SUCCEEDED] + before[Counter.FAILED] < n  # work was left for after
        done = [json.loads(line) for name in ("results_jsonl", "errors_jsonl")
                for line in Path(urlparse(batch[name]).path).read_text().splitlines()]
        assert sorted(d["custom_id"] for d in done) == sorted(f"r-{i}" for i in range(n))
        assert all(v == 1 for v in stats["submits_by_fingerprint"].values())
        assert cluster.store.batches.recount(batch_id) == {
            k: int(v) for k, v in batch.items() if k in cluster.store.batches.recount(batch_id)}
    finally:
        server.stop()
