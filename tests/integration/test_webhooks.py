"""Webhooks in, end to end on real parts: Redis, the simulator (which POSTs the callbacks in
each provider's shape, WaveSpeed's signed), the `genbatch webhooks` receiver, worker and
scheduler processes. Every row has a local image: WaveSpeed's are uploaded first."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from genbatch.demo import SAMPLES
from genbatch.simulator import SimProfile, running_simulator
from genbatch.store import item_id
from genbatch.worker.callbacks import callback_url
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration
SECRET = "integration-webhook-secret-0123456789"
PROFILE = {"time_factor": 50.0, "latency_mean_s": 20.0, "latency_sigma": 0.3,
           "queue_delay_s": 1.0, "seed": 11}
N = 12
# Each provider's rows, named by the provider's own model id for two of them.
ROWS = [("novita", "seedance-v1.5-pro-i2v"), ("highwayapi", "seedance-v1.5-pro-i2v"),
        ("wavespeed", "bytedance/seedance-v1.5-pro/image-to-video"),
        ("byteplus", "seedance-1-5-pro-251215")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def hooked_cluster(redis_url: str, tmp_path: Path, profile: dict[str, Any],
                   **values: str) -> Iterator[Cluster]:
    """A cluster whose workers send webhook URLs, with the receiver running and WaveSpeed's
    signing secret set as its account shows it."""
    port = free_port()
    with running_simulator(SimProfile.model_validate(profile)) as sim_url:
        c = Cluster(redis_url, sim_url, tmp_path, webhook_base_url=f"http://127.0.0.1:{port}",
                    webhook_secret=SECRET, wavespeed_webhook_secret=wavespeed_secret(sim_url),
                    **values)
        try:
            c.start("webhooks", "webhooks", "--port", str(port))
            wait_healthy(c, f"http://127.0.0.1:{port}/healthz")
            c.start_worker()
            c.start_scheduler()
            yield c
        finally:
            c.stop_all()


@pytest.fixture
def hooked(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with hooked_cluster(redis_url, tmp_path, PROFILE) as c:
        yield c


def wait_healthy(c: Cluster, url: str) -> None:
    def up() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    c.wait_until(up, 30, "the webhook receiver to start")


def wavespeed_secret(sim_url: str) -> str:
    """The signing secret WaveSpeed shows the account (`whsec_...`)."""
    answer = httpx.get(f"{sim_url}/api/v3/webhook/secret", timeout=10,
                       headers={"Authorization": "Bearer test-wavespeed-key"})
    secret: str = answer.json()["data"]["secret"]
    return secret


def manifest(folder: Path, sim_url: str) -> Path:
    shutil.copytree(SAMPLES / "images", folder / "images", dirs_exist_ok=True)
    rows = []
    for i in range(N):
        provider, model = ROWS[i % len(ROWS)]
        image = "images/bottle.png" if i % 8 < 4 else "images/sneaker.jpg"
        rows.append({"custom_id": f"hook-{i:02d}", "provider": provider, "model": model,
                     "prompt": f"shot {i}", "image": image, "resolution": "480p",
                     "duration": 5})
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_batch(c: Cluster, path: Path) -> tuple[str, dict[str, Any]]:
    """Submit, wait for completion; the batch id and the simulator's counters it cost."""
    before = c.sim_stats()
    batch_id = str(c.submit(path, provider=None, model=None).batch_id)
    batch = c.wait_batch(batch_id, timeout=180)
    assert batch["succeeded"] == str(N), batch
    after = c.sim_stats()
    cost = {k: after[k] - before[k]
            for k in ("polls", "webhooks_sent", "webhooks_delivered", "uploads")}
    return batch_id, cost


def test_items_complete_via_callbacks_with_far_fewer_polls_and_forgeries_fail(
        hooked: Cluster, tmp_path: Path) -> None:
    path = manifest(tmp_path, hooked.sim_url)

    hooked_batch, with_hooks = run_batch(hooked, path)

    assert with_hooks["webhooks_delivered"] == with_hooks["webhooks_sent"] == N
    items = [hooked.store.items.get(item_id(hooked_batch, s)) for s in range(1, N + 1)]
    assert {i["provider"] for i in items} == {p for p, _ in ROWS}
    assert all(i["state"] == "succeeded" for i in items)
    # WaveSpeed signs its callbacks: a verified one finishes its item, no poll at all. The
    # others' callbacks are hints: each wakes its item, whose one poll (the provider's own
    # answer) finishes it, long before its safety poll was due.
    signed = [i for i in items if i["provider"] == "wavespeed"]
    hinted = [i for i in items if i["provider"] != "wavespeed"]
    assert all(i.get("callbacks") == "1" and not i.get("polls") for i in signed)
    assert all(i.get("polls") == "1" and not i.get("callbacks") for i in hinted)
    assert with_hooks["polls"] == len(hinted)
    assert hooked.sim_stats()["webhook_statuses"] == {"200": N}
    # WaveSpeed's local images were uploaded once per distinct content (two images).
    assert with_hooks["uploads"] == 2
    results = hooked.storage.get_bytes(f"{hooked_batch}/results.jsonl").decode().splitlines()
    shown = {json.loads(r)["provider"]: json.loads(r)["provider_model"] for r in results}
    assert shown["wavespeed"] == "bytedance/seedance-v1.5-pro/image-to-video"
    assert shown["byteplus"] == "seedance-1-5-pro-251215"

    # A forged callback (right URL, another task's id) and a wrong token: both refused,
    # the item untouched.
    iid = item_id(hooked_batch, 1)
    url = callback_url(hooked.settings, items[0]["provider"], iid, 1)
    assert url is not None
    before = hooked.store.items.get(iid)
    forged = {"event_type": "ASYNC_TASK_RESULT", "payload": {"task": {
        "task_id": "not-" + before["remote_id"], "status": "TASK_STATUS_FAILED"}}}
    assert httpx.post(url, json=forged, timeout=10).status_code == 401
    assert httpx.post(url[:-64] + "f" * 64, json=forged, timeout=10).status_code == 404
    assert hooked.store.items.get(iid) == before

    # The same manifest with webhooks off: every item is found done by polling.
    hooked.stop("scheduler")
    hooked.stop("worker")
    del hooked.values["webhook_base_url"]
    hooked.start_worker("worker-polling")
    hooked.start_scheduler()
    polled_batch, without = run_batch(hooked, path)

    print("with webhooks", with_hooks, "without", without)
    assert without["webhooks_sent"] == 0 and without["uploads"] == 0  # uploads remembered
    assert without["polls"] >= N  # at least one poll per item
    polled = hooked.store.items.get(item_id(polled_batch, 1))
    assert polled.get("polls") and not polled.get("callbacks")
    tokens = _tokens(hooked, hooked_batch)
    for name in ("worker", "webhooks", "scheduler"):  # never a token (nor the secret) in a log
        log = hooked.log_tail(name, 10**8)
        assert SECRET not in log and not any(t in log for t in tokens), name


def _tokens(c: Cluster, batch_id: str) -> list[str]:
    urls = [callback_url(c.settings, c.store.items.get(item_id(batch_id, s))["provider"],
                         item_id(batch_id, s), 1) for s in range(1, N + 1)]
    return [u.rsplit("/", 1)[1] for u in urls if u]


def test_a_lost_callback_is_caught_by_the_safety_poll(redis_url: str, tmp_path: Path) -> None:
    profile = {**PROFILE, "p_webhook_drop": 1.0}
    with hooked_cluster(redis_url, tmp_path, profile, webhook_safety_poll_s="60") as c:
        batch_id, cost = run_batch(c, manifest(tmp_path, c.sim_url))
    assert cost["webhooks_sent"] == 0
    items = [c.store.items.get(item_id(batch_id, s)) for s in range(1, N + 1)]
    assert all(i["state"] == "succeeded" and i.get("webhook") == "1" for i in items)
    assert all(int(i["polls"]) >= 1 and not i.get("callbacks") for i in items)
