"""Quota-aware dispatch end to end: two worker processes and the scheduler against a
simulator that enforces an RPM and a concurrency limit on one key (Novita answers 429 over
either), with time compressed."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genbatch.simulator import SimProfile, running_simulator
from genbatch.store.limits import Limits
from tests.integration.cluster import Cluster, sample_manifest

pytestmark = pytest.mark.integration
KEY = "test-novita-key"
R, C = 60, 6


def manifest(folder: Path, n: int) -> Path:
    return sample_manifest(folder, n, "q")


@pytest.fixture
def make_cluster(redis_url: str, tmp_path: Path) -> Iterator[Any]:
    stack: list[Any] = []

    def make(profile: dict[str, Any], **overrides: str) -> Cluster:
        sim = running_simulator(SimProfile.model_validate(profile))
        url = sim.__enter__()
        stack.append(sim)
        c = Cluster(redis_url, url, tmp_path, novita_max_in_flight=str(C),
                    novita_submit_rpm=str(R), **overrides)
        stack.append(c)
        c.start_worker("worker-1")
        c.start_worker("worker-2")
        c.start_scheduler()
        return c

    yield make
    for thing in reversed(stack):
        if isinstance(thing, Cluster):
            thing.stop_all()
        else:
            thing.__exit__(None, None, None)


BASE = {"time_factor": 50.0, "latency_mean_s": 10.0, "latency_sigma": 0.3,
        "queue_delay_s": 0.0, "seed": 5, "keys": {KEY: {"rpm": R, "concurrency": C}}}


def test_two_workers_stay_within_rpm_and_concurrency(make_cluster: Any,
                                                     tmp_path: Path) -> None:
    c = make_cluster(BASE)
    batch_id = str(c.submit(manifest(tmp_path, 80), provider="novita",
                            model="seedance-v1.5-pro-i2v").batch_id)
    batch = c.wait_batch(batch_id, timeout=120)

    assert int(batch["succeeded"]) == 80
    stats = c.sim_stats()
    assert stats["max_in_flight"]["novita"][KEY] <= C
    assert stats["max_submits_per_minute"]["novita"][KEY] <= R
    assert stats["responses_429"] == 0
    assert all(n == 1 for n in stats["submits_by_fingerprint"].values())
    assert c.store.queues.in_flight("novita") == 0


def test_a_burst_of_429s_slows_down_and_fails_nothing(make_cluster: Any,
                                                      tmp_path: Path) -> None:
    profile = {**BASE, "keys": {KEY: {"rpm": R, "concurrency": C, "p_429": 0.3}}}
    c = make_cluster(profile, aimd_recover_s="600")
    batch_id = str(c.submit(manifest(tmp_path, 30), provider="novita",
                            model="seedance-v1.5-pro-i2v").batch_id)
    batch = c.wait_batch(batch_id, timeout=120)

    assert int(batch["succeeded"]) == 30  # every 429 was put back, none counted as failure
    assert c.sim_stats()["responses_429"] > 0
    limits = Limits(c.store.debug.client, c.store.prefix)
    now = float(c.store.server.time())
    assert (limits.factor("novita", "submit", now, 600 / 50) < 1.0
            or limits.factor("novita", "poll", now, 600 / 50) < 1.0)


def test_a_killed_workers_slots_come_back(make_cluster: Any, tmp_path: Path) -> None:
    c = make_cluster(BASE, task_lease_s="3")
    batch_id = str(c.submit(manifest(tmp_path, 40), provider="novita",
                            model="seedance-v1.5-pro-i2v").batch_id)
    c.wait_until(lambda: c.store.queues.in_flight("novita") > 0, what="work in flight")
    c.stop("worker-1", signal.SIGKILL)
    c.stop("worker-2", signal.SIGKILL)
    held = c.store.queues.in_flight("novita")
    assert held > 0
    c.start_worker("worker-3")

    batch = c.wait_batch(batch_id, timeout=120)

    assert c.store.queues.in_flight("novita") == 0  # every slot the dead workers held came back
    assert int(batch["succeeded"]) + int(batch["ambiguous"]) == 40
    assert c.sim_stats()["max_in_flight"]["novita"][KEY] <= C
