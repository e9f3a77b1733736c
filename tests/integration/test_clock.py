"""One clock: a worker whose own clock is two minutes off, either way, still polls as often as
one on time and finishes the batch, because every process works on Redis's clock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genbatch.models import ItemState
from genbatch.simulator import SimProfile, running_simulator
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration
MODEL = "seedance-v1.5-pro-i2v"


def manifest(folder: Path, sim_url: str, n: int) -> Path:
    image = f"{sim_url}/_sim/assets/landscape.png"
    path = folder / "clock.jsonl"
    path.write_text("".join(json.dumps({"custom_id": f"c{i}", "provider": "byteplus",
                                        "prompt": "p", "image": image, "resolution": "480p",
                                        "duration": 5}) + "\n" for i in range(n)))
    return path


@pytest.mark.parametrize("skew", ["-120", "120"])
def test_a_skewed_worker_polls_normally_and_finishes(redis_url: str, folder: Path,
                                                     skew: str) -> None:
    profile = SimProfile(time_factor=50.0, latency_mean_s=20.0, seed=4)
    with running_simulator(profile) as sim_url:
        c = Cluster(redis_url, sim_url, folder)
        c.values["clock_skew_s"] = skew  # the worker's clock only
        c.start_worker()
        c.values["clock_skew_s"] = "0"
        c.start_scheduler()
        try:
            batch_id = str(c.submit(manifest(folder, sim_url, 12), provider=None,
                                    model=MODEL).batch_id)
            batch = c.wait_batch(batch_id, timeout=90)
            items = list(c.store.items.of_batch(batch_id, batch.total))
            assert all(i.state is ItemState.SUCCEEDED for i in items), [
                (i.custom_id, i.state, i.error_code) for i in items]
            # About 2-3 polls a job on time (docs/performance.md); 553 polls for 57 were
            # needed when a worker ran 120 s behind on its own clock.
            assert sum(i.polls for i in items) <= 5 * len(items)
            assert c.sim_stats()["submits"] == 12
        finally:
            c.stop_all()
