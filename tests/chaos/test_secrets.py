"""API keys go to the provider's Authorization header and nowhere else: not the logs, not a
Redis key or value (Celery messages included), not the output files, not a request body.
The webhook and notification signing secrets appear nowhere at all."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from genbatch.demo.redis_server import start_redis
from genbatch.producer.options import BatchOptions
from genbatch.simulator import SimProfile, running_simulator
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration
KEYS = {p: f"sk-{p}-SECRET-{i}7f3a9c" for i, p in
        enumerate(("novita", "highwayapi", "wavespeed", "byteplus"))}
PROFILE = {"time_factor": 50.0, "latency_mean_s": 10.0, "seed": 5, "p_task_fail": 0.2,
           "p_malformed": 0.05, "p_5xx": 0.05, "p_429": 0.05,
           "keys": {KEYS["highwayapi"]: {"provider": "highwayapi"}}}


def redis_dump(url: str) -> Iterator[bytes]:
    """Every key and every value in the database, whatever its type."""
    r: Any = redis.Redis.from_url(url)
    for key in r.scan_iter(count=1000):
        yield key
        kind = r.type(key)
        if kind == b"string":
            yield r.get(key) or b""
        elif kind == b"hash":
            for f, v in r.hgetall(key).items():
                yield f + b"=" + v
        elif kind == b"list":
            yield from r.lrange(key, 0, -1)
        elif kind == b"set":
            yield from r.smembers(key)
        elif kind == b"zset":
            yield from (m for m, _ in r.zrange(key, 0, -1, withscores=True))
        elif kind == b"stream":
            yield json.dumps(r.xrange(key), default=repr).encode()
    r.close()


SIGNING = {"webhook_secret": "whsec-SIGNING-4e1d0b2a9c77", "notify_secret": "ntsec-SIGNING-8a3f"}


def leaks(blob: bytes) -> list[str]:
    return [p for p, k in (KEYS | SIGNING).items() if k.encode() in blob]


def test_api_keys_appear_only_in_the_authorization_header(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis")
    try:
        with running_simulator(SimProfile.model_validate(PROFILE)) as sim_url:
            overrides = {f"{p}_api_key": k for p, k in KEYS.items()} | SIGNING
            # Webhooks on (nobody listens: the safety polls finish those items) and a
            # notification to a closed port, so both secrets are in use.
            cluster = Cluster(server.url, sim_url, tmp_path, log_level="DEBUG",
                              wavespeed_max_in_flight="20", webhook_safety_poll_s="60",
                              webhook_base_url="http://127.0.0.1:9/genbatch",
                              # an ambiguous item's window (the batch waits for it): 10 s
                              reconcile_deadline_s="10", **overrides)
            image = f"{sim_url}/_sim/assets/landscape.png"
            lines = [json.dumps({"custom_id": f"s-{i}", "provider": p, "prompt": f"shot {i}",
                                 "model": "seedance-v1.5-pro-i2v", "image": image,
                                 "resolution": "480p", "duration": 5, "seed": i})
                     for i, p in enumerate(list(KEYS) * 6)]
            manifest = tmp_path / "m.jsonl"
            manifest.write_text("\n".join(lines) + "\n")
            options = BatchOptions.build(notify_url="http://127.0.0.1:9/notify")
            batch_id = str(cluster.submit(manifest, provider=None, model=None,
                                          options=options).batch_id)
            try:
                # Scheduler alone first: its submit messages wait in the Celery queues.
                cluster.start_scheduler()
                cluster.wait_until(lambda: redis.Redis.from_url(server.url).llen(
                    "genbatch.submit") > 0, what="queued submit messages")
                queued = b"\n".join(redis_dump(server.url))
                assert b'"task": "genbatch.submit"' in queued  # Celery headers and args
                assert not leaks(queued)
                cluster.start_worker()
                batch = cluster.wait_batch(batch_id, timeout=180)
                assert int(batch["succeeded"]) > 0 and int(batch["failed"]) > 0
                cluster.wait_until(lambda: int(cluster.store.batches.get(batch_id).get(
                    "notify_attempts") or 0) > 0, what="a notification attempt")
            finally:
                cluster.stop("worker", signal.SIGTERM)
                cluster.stop_all()
            stats = cluster.sim_stats()

        assert not leaks(b"\n".join(redis_dump(server.url))), "a key is stored in Redis"
        for log in tmp_path.glob("*.log"):
            assert not leaks(log.read_bytes()), f"a key is in {log.name}"
        outputs = [p for p in (tmp_path / "storage").rglob("*") if p.is_file()]
        assert any(p.name == "errors.jsonl" for p in outputs)
        for path in outputs:
            assert not leaks(path.read_bytes()), f"a key is in {path}"
        assert stats["webhooks_sent"] > 0  # callback URLs (with their tokens) were used
        seen_in_header = set()
        for entry in stats["request_log"]:
            auth = entry["headers"].pop("authorization", "")
            seen_in_header.update(leaks(auth.encode()))
            assert not leaks(json.dumps(entry).encode()), entry["path"]
            if entry["path"].startswith("/_sim/"):  # downloads never carry a key
                assert not auth, entry["path"]
        assert seen_in_header == set(KEYS)
    finally:
        server.stop()
