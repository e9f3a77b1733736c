"""What operators look at, on a real deployment: the batch dashboard in headless Chromium,
Prometheus metrics, and Flower reading the workers' task events (with basic auth)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from genbatch.simulator import SimProfile
from tests.integration.cluster import Cluster, running_cluster
from tests.integration.test_pipeline import mixed_manifest

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
PROFILE = {"time_factor": 50.0, "latency_mean_s": 10.0, "latency_sigma": 0.2, "seed": 5,
           "keys": {"test-highwayapi-key": {"provider": "highwayapi"}}}
FLOWER_AUTH = ("u", "p")
STEPS = {"genbatch.submit", "genbatch.poll", "genbatch.download", "genbatch.finalize"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def wait_http(url: str, timeout: float = 30.0, **kwargs: Any) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = httpx.get(url, timeout=5, **kwargs)
            if answer.status_code == 200:
                return answer
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 within {timeout} s")
        time.sleep(0.2)


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(redis_url, tmp_path, SimProfile.model_validate(PROFILE)) as c:
        yield c


def chromium(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="gb-chromium-") as profile:
        return subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,800", *args],
            capture_output=True, text=True, timeout=90, check=False)


def test_dashboard_in_headless_chromium_shows_a_real_batch(cluster: Cluster,
                                                           tmp_path: Path) -> None:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium); .ci/run installs it")
    batch_id = str(cluster.submit(mixed_manifest(tmp_path, cluster.sim_url, 10),
                                  provider=None, model=None).batch_id)
    batch = cluster.wait_batch(batch_id)
    port = free_port()
    cluster.start("dashboard", "dashboard", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    api = wait_http(f"{base}/api/batches").json()

    dom = chromium(binary, "--dump-dom", f"{base}/")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    chromium(binary, f"--screenshot={shot}", f"{base}/")
    metrics_text = httpx.get(f"{base}/metrics", timeout=10).text

    assert api[0]["id"] == batch_id and api[0]["total"] == 10 and api[0]["done"] == 10
    row = dom.stdout.split(f'id="batch-{batch_id}"', 1)[1].split("</tr>", 1)[0]
    assert batch_id in row and "completed" in row and "10/10 (100%)" in row
    assert f'<td class="succeeded">{batch["succeeded"]}</td>' in row
    assert f'href="/results/{batch_id}/results.jsonl"' in row
    assert shot.exists() and shot.stat().st_size > 5000, dom.stderr[-2000:]
    results = httpx.get(f"{base}/results/{batch_id}/results.jsonl", timeout=10)
    assert len(results.text.splitlines()) == int(batch["succeeded"])
    assert 'genbatch_download_bytes_total{provider="novita"}' in metrics_text
    assert 'genbatch_queue_length{queue="genbatch.poll"} 0.0' in metrics_text


def test_flower_shows_workers_and_the_batch_tasks_without_keys(cluster: Cluster,
                                                               tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    log = (tmp_path / "flower.log").open("ab")
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", f"--broker={cluster.redis_url}", "flower",
         f"--port={port}", "--address=127.0.0.1", f"--basic-auth={':'.join(FLOWER_AUTH)}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        unauthenticated = _until_up(f"{base}/api/workers")
        workers = _until(lambda: httpx.get(f"{base}/api/workers?refresh=1", auth=FLOWER_AUTH,
                                           timeout=30).json(), "a worker in Flower")
        time.sleep(1.0)  # let Flower's event consumer attach before the batch starts
        batch_id = str(cluster.submit(mixed_manifest(tmp_path, cluster.sim_url, 5),
                                      provider=None, model=None).batch_id)
        cluster.wait_batch(batch_id)
        tasks = _until(lambda: _batch_tasks(base, batch_id), "the batch's tasks in Flower")
    finally:
        os.killpg(flower.pid, 15)
        flower.wait(30)

    assert unauthenticated.status_code == 401
    assert any(name.startswith("worker@") for name in workers)
    assert {t["name"] for t in tasks.values()} == STEPS
    assert all(t["state"] == "SUCCESS" for t in tasks.values())
    text = json.dumps(tasks) + json.dumps(workers)
    for provider in ("novita", "highwayapi", "wavespeed", "byteplus"):
        assert f"test-{provider}-key" not in text


def _until_up(url: str, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _until(fetch: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _batch_tasks(base: str, batch_id: str) -> dict[str, Any]:
    """Flower's tasks whose argument is an item or the id of this batch, once every step has
    shown up and the finalize task has succeeded (events arrive after the work is done)."""
    answer = httpx.get(f"{base}/api/tasks", auth=FLOWER_AUTH, timeout=30).json()
    mine = {k: t for k, t in answer.items() if batch_id in str(t.get("args"))}
    names = {t["name"] for t in mine.values()}
    done = names >= STEPS and all(t["state"] == "SUCCESS" for t in mine.values())
    if not done:
        print(f"flower so far: {sorted(names)} of {len(answer)} tasks")
    return mine if done else {}
