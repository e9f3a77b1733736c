"""A batch that waits says why — on the real set-up (Redis, simulator, worker and scheduler
processes): a dead base URL, no scheduler, no worker, a worker without the key, a wrong key,
an account out of money; and the account comes back once the cause is fixed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from genbatch.client import Client
from genbatch.demo.redis_server import free_port
from genbatch.models import Counter, ItemState
from genbatch.simulator import SimProfile
from tests.integration.cluster import Cluster, running_cluster

pytestmark = pytest.mark.integration
FAST_HEALTH = {"heartbeat_s": "0.5", "account_probe_s": "100"}  # a probe every 2 s real


def manifest(folder: Path, n: int, provider: str = "novita") -> Path:
    path = folder / f"{provider}-{n}.jsonl"
    path.write_text("".join(json.dumps({"custom_id": f"r{i}", "provider": provider,
                                        "prompt": "p", "image": "images/sneaker.jpg"}) + "\n"
                            for i in range(n)))
    return path


@contextmanager
def cluster(redis_url: str, folder: Path, profile: SimProfile, *, worker: bool = True,
            scheduler: bool = True, **overrides: str) -> Iterator[Cluster]:
    with running_cluster(redis_url, folder, profile, worker=worker, scheduler=scheduler,
                         **{**FAST_HEALTH, **overrides}) as c:
        yield c


def reasons(c: Cluster, batch_id: str) -> tuple[str, ...]:
    client = Client(c.settings)
    return client.diagnose(client.record(batch_id)).reasons


def said(c: Cluster, batch_id: str, words: str) -> bool:
    return any(words in r for r in reasons(c, batch_id))


def no_item_failed(c: Cluster, batch_id: str) -> bool:
    batch = c.store.batches.get(batch_id)
    return batch.count(Counter.FAILED) == 0 and batch.count(Counter.AMBIGUOUS) == 0


MODEL = "seedance-v1.5-pro-i2v"
PROFILE = SimProfile(time_factor=50.0, latency_mean_s=20.0, seed=3)


def test_a_dead_base_url_backs_off_and_says_degraded(redis_url: str, folder: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with cluster(redis_url, folder, PROFILE, novita_base_url=dead) as c:
        batch_id = str(c.submit(manifest(folder, 2), provider=None, model=MODEL).batch_id)
        c.wait_until(lambda: c.store.health.get("novita").state == "degraded",
                     what="novita degraded")
        health = c.store.health.get("novita")
        assert health.reason.startswith("connect: ")
        assert health.failures["connect"] >= 3
        assert said(c, batch_id, "account novita is degraded: connect")
        # nothing lost, nothing failed
        assert c.store.batches.get(batch_id).count(Counter.PENDING) == 2


def test_no_scheduler_is_named(redis_url: str, folder: Path) -> None:
    with cluster(redis_url, folder, PROFILE, scheduler=False) as c:
        c.wait_until(lambda: bool(c.store.heartbeats.workers()), what="a worker heartbeat")
        batch_id = str(c.submit(manifest(folder, 1), provider=None, model=MODEL).batch_id)
        assert said(c, batch_id, "no scheduler running")
        assert not said(c, batch_id, "no worker running")


def test_no_worker_is_named(redis_url: str, folder: Path) -> None:
    with cluster(redis_url, folder, PROFILE, worker=False) as c:
        c.wait_until(lambda: c.store.heartbeats.scheduler() is not None,
                     what="the scheduler's heartbeat")
        batch_id = str(c.submit(manifest(folder, 2), provider=None, model=MODEL).batch_id)
        c.wait_until(lambda: c.store.batches.get(batch_id).count(Counter.IN_FLIGHT) == 2,
                     what="items dispatched")
        assert said(c, batch_id, "no worker running")
        assert not said(c, batch_id, "no scheduler running")


def test_a_worker_without_the_key_pauses_the_account_and_fails_nothing(
        redis_url: str, folder: Path) -> None:
    with cluster(redis_url, folder, PROFILE, novita_api_key="") as c:
        c.wait_until(lambda: bool(c.store.heartbeats.workers()), what="a worker heartbeat")
        assert "novita" not in c.store.heartbeats.workers()[0].keys
        batch_id = str(c.submit(manifest(folder, 6), provider=None, model=MODEL).batch_id)
        c.wait_until(lambda: c.store.health.get("novita").state == "paused",
                     what="novita paused")
        health = c.store.health.get("novita")
        assert "no API key" in health.reason and "worker worker@" in health.reason
        assert "GENBATCH_NOVITA_API_KEY" in health.fix
        assert said(c, batch_id, "no worker holds a key for novita")
        assert said(c, batch_id, "account novita is paused")
        assert no_item_failed(c, batch_id)


def test_a_wrong_key_pauses_after_three_refusals_not_item_by_item(
        redis_url: str, folder: Path) -> None:
    profile = SimProfile(time_factor=50.0, latency_mean_s=20.0, seed=3,
                         api_keys=["the-right-key"])
    with cluster(redis_url, folder, profile, novita_max_in_flight="1") as c:
        batch_id = str(c.submit(manifest(folder, 8), provider=None, model=MODEL).batch_id)
        c.wait_until(lambda: c.store.health.get("novita").state == "paused",
                     what="novita paused")
        health = c.store.health.get("novita")
        assert health.reason.startswith("auth: INVALID_API_KEY")
        assert no_item_failed(c, batch_id)
        assert c.store.batches.get(batch_id).count(Counter.PENDING) == 8
        assert c.sim_stats()["submits"] == 0


def test_an_account_out_of_money_pauses_then_a_probe_resumes_it(
        redis_url: str, folder: Path) -> None:
    profile = SimProfile(time_factor=50.0, latency_mean_s=20.0, seed=3, out_of_balance=True)
    with cluster(redis_url, folder, profile, novita_max_in_flight="2") as c:
        batch_id = str(c.submit(manifest(folder, 5), provider=None, model=MODEL).batch_id)
        c.wait_until(lambda: c.store.health.get("novita").state == "paused",
                     what="novita paused")
        health = c.store.health.get("novita")
        assert health.reason.startswith("balance: BILLING_BALANCE_NOT_ENOUGH")
        assert "top up" in health.fix
        assert said(c, batch_id, "account novita is paused: balance")
        assert no_item_failed(c, batch_id)
        # Topped up: the next probe gets through and the account takes work again.
        httpx.put(f"{c.sim_url}/_sim/profile", timeout=10,
                  json={"time_factor": 50.0, "latency_mean_s": 20.0}).raise_for_status()
        batch = c.wait_batch(batch_id)
        assert batch.count(Counter.SUCCEEDED) == 5
        assert c.store.health.get("novita").state == "ok"


def test_accounts_resume_lifts_a_pause(redis_url: str, folder: Path) -> None:
    profile = SimProfile(time_factor=50.0, latency_mean_s=20.0, seed=3, out_of_balance=True)
    with cluster(redis_url, folder, profile, account_probe_s="1000000") as c:
        batch_id = str(c.submit(manifest(folder, 3), provider=None, model=MODEL).batch_id)
        c.wait_until(lambda: c.store.health.get("novita").state == "paused",
                     what="novita paused")
        httpx.put(f"{c.sim_url}/_sim/profile", timeout=10,
                  json={"time_factor": 50.0, "latency_mean_s": 20.0}).raise_for_status()
        Client(c.settings).resume_account("novita")
        batch = c.wait_batch(batch_id)
        assert batch.count(Counter.SUCCEEDED) == 3
        items = list(c.store.items.of_batch(batch_id, batch.total))
        assert all(i.state is ItemState.SUCCEEDED for i in items)
