"""A producer killed mid-ingest leaves a `validating` batch; the scheduler discards it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genbatch.config import Settings
from genbatch.store import JobStore
from genbatch.worker.runtime import Runtime
from genbatch.worker.scheduler import Scheduler

pytestmark = pytest.mark.integration


def test_batch_of_a_killed_producer_is_reaped_by_the_scheduler(redis_url: str,
                                                              tmp_path: Path) -> None:
    manifest = tmp_path / "big.jsonl"
    with manifest.open("w") as fh:
        for i in range(300_000):
            fh.write(json.dumps({"custom_id": f"r{i}", "prompt": "p",
                                 "image": f"https://example.com/{i}.jpg"}) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENBATCH_")}
    env.update(GENBATCH_REDIS_URL=redis_url, GENBATCH_STORAGE_URL=str(tmp_path / "out"))
    producer = subprocess.Popen(
        [sys.executable, "-m", "genbatch", "submit", str(manifest), "--provider", "byteplus"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = JobStore.from_url(redis_url)
    deadline = time.monotonic() + 120
    batch_id: str | None = None
    while batch_id is None or int(store.batches.get(batch_id).get("total") or 0) < 2000:
        assert producer.poll() is None, "the producer finished before it could be killed"
        assert time.monotonic() < deadline, "no chunk was written in time"
        # redis-py types members as bytes | str; this client decodes responses to str
        ids = store.debug.validating()
        batch_id = next(iter(ids)) if ids else None
        time.sleep(0.05)
    producer.send_signal(signal.SIGKILL)
    producer.wait()
    assert store.batches.get(batch_id)["status"] == "validating"

    scheduler = Scheduler(Runtime(Settings(redis_url=redis_url, validating_timeout_s=1.0),
                                  enqueue=lambda kind, ident: None))
    while batch_id in store.debug.validating():
        assert time.monotonic() < deadline + 60, "the batch was never reaped"
        scheduler.sweep()
        time.sleep(0.2)

    assert store.debug.batch_keys(batch_id) == []
    assert batch_id not in [b["id"] for b in store.batches.recent()]
