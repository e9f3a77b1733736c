"""Several accounts of one provider end to end: two workers, three BytePlus accounts (an
accounts file), a simulator enforcing each key's RPM and concurrency and one key's per-model
limit. The simulator never sees an account over its limits; an account refused mid-batch
loses no item; a key added while running starts taking work."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from genbatch.simulator import SimProfile, running_simulator
from tests.integration.cluster import Cluster, sample_manifest

pytestmark = pytest.mark.integration
R, C, AHEAD, MODEL_CAP = 40, 4, 2, 2
MODEL_ID = "seedance-1-5-pro-251215"
KEYS = {"bp-1": "key-one", "bp-2": "key-two", "bp-3": "key-three"}
PROFILE: dict[str, Any] = {"time_factor": 50.0, "latency_mean_s": 10.0, "latency_sigma": 0.3,
           "queue_delay_s": 0.0, "seed": 7, "rpm": R, "concurrency": C,
           "keys": {KEYS["bp-1"]: {"model_limits": {MODEL_ID: {"concurrency": MODEL_CAP}}}}}


def accounts_file(path: Path, names: list[str]) -> Path:
    text = "".join(f'[{n}]\nprovider = "byteplus"\napi_key = "{KEYS[n]}"\nconcurrency = {C}\n'
                   f"submit_rpm = {R}\n" for n in names)
    text += f'[bp-1.models."{MODEL_ID}"]\nconcurrency = {MODEL_CAP}\n' if "bp-1" in names \
        else ""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # whole, as an editor's save: never read half-written
    return path


def manifest(folder: Path, n: int) -> Path:
    return sample_manifest(folder, n, "a")


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Any]:
    made: list[tuple[Any, Cluster]] = []

    def make(names: list[str]) -> Cluster:
        sim = running_simulator(SimProfile.model_validate(PROFILE))
        url = sim.__enter__()
        c = Cluster(redis_url, url, tmp_path,
                    accounts_file=str(accounts_file(tmp_path / "accounts.toml", names)),
                    queue_ahead_max=str(AHEAD))
        made.append((sim, c))
        c.start_worker("worker-1")
        c.start_worker("worker-2")
        c.start_scheduler()
        return c

    yield make
    for sim, c in made:
        c.stop_all()
        sim.__exit__(None, None, None)


def submit(c: Cluster, tmp_path: Path, n: int) -> str:
    return str(c.submit(manifest(tmp_path, n), provider="byteplus",
                        model="seedance-v1.5-pro-i2v").batch_id)


def served_by(c: Cluster, batch_id: str) -> Counter[str]:
    return Counter(item.account for item in c.store.items.of_batch(batch_id, 10_000))


def assert_within_limits(c: Cluster) -> None:
    stats = c.sim_stats()
    for name, key in KEYS.items():
        if key not in stats["max_in_flight"].get("byteplus", {}):
            continue
        assert stats["max_submits_per_minute"]["byteplus"][key] <= R, name
        assert stats["max_in_flight"]["byteplus"][key] <= C + AHEAD, name
        assert stats["max_running"]["byteplus"][key] <= C, name
    one = stats["by_model"]["byteplus"][KEYS["bp-1"]][MODEL_ID]
    assert one["max_in_flight"] <= MODEL_CAP and one["max_running"] <= MODEL_CAP
    assert stats["responses_429"] == 0


def test_three_accounts_share_a_batch_within_their_own_limits(cluster: Any,
                                                              tmp_path: Path) -> None:
    c = cluster(["bp-1", "bp-2", "bp-3"])
    batch_id = submit(c, tmp_path, 60)
    batch = c.wait_batch(batch_id, timeout=180)

    assert int(batch["succeeded"]) == 60
    by_account = served_by(c, batch_id)
    assert set(by_account) == {"bp-1", "bp-2", "bp-3"}
    assert by_account["bp-1"] < by_account["bp-2"]  # its model limit leaves it less room
    assert_within_limits(c)
    rows = [json.loads(line) for line in
            c.storage.get_bytes(f"{batch_id}/results.jsonl").decode().splitlines()]
    assert Counter(r["account"] for r in rows) == by_account  # results say who served it
    text = json.dumps(rows) + c.log_tail("worker-1", 10**6) + c.log_tail("scheduler", 10**6)
    assert not any(key in text for key in KEYS.values())  # names, never keys
    assert all(c.store.queues.in_flight(n) == 0 for n in KEYS)


def test_an_account_refused_mid_batch_loses_no_item(cluster: Any, tmp_path: Path) -> None:
    c = cluster(["bp-1", "bp-2", "bp-3"])
    batch_id = submit(c, tmp_path, 60)
    c.wait_until(lambda: int(c.store.batches.get(batch_id)["succeeded"]) >= 10,
                 what="a first part done")
    broke = {**PROFILE, "keys": {**PROFILE["keys"], KEYS["bp-2"]: {"out_of_balance": True}}}
    httpx.put(f"{c.sim_url}/_sim/profile", json=broke, timeout=10).raise_for_status()

    batch = c.wait_batch(batch_id, timeout=180)

    assert int(batch["succeeded"]) == 60 and int(batch["failed"]) == 0
    assert c.store.health.get("bp-2").state == "paused"
    assert served_by(c, batch_id)["bp-2"] >= 1  # it worked before it was refused
    assert_within_limits(c)


def test_a_key_added_while_running_starts_taking_work(cluster: Any, tmp_path: Path) -> None:
    c = cluster(["bp-1"])
    batch_id = submit(c, tmp_path, 150)  # long enough to outlast the file's re-read (2 s)
    c.wait_until(lambda: int(c.store.batches.get(batch_id)["succeeded"]) >= 3,
                 what="work under one account")
    accounts_file(tmp_path / "accounts.toml", ["bp-1", "bp-2"])  # no restart

    batch = c.wait_batch(batch_id, timeout=180)

    assert int(batch["succeeded"]) == 150
    assert served_by(c, batch_id)["bp-2"] >= 5
    assert_within_limits(c)
