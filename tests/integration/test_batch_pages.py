"""A batch's pages on a real deployment, in headless Chromium: the batch page while the batch
runs, then its items, gallery and errors once it is done. Screenshots are kept in
test-artifacts/ (batch-page.png, gallery.png, items.png, item.png)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from genbatch.simulator import SimProfile
from genbatch.storage import object_key
from genbatch.store.pages import ItemFilter
from tests.integration.cluster import Cluster, running_cluster
from tests.integration.test_observability import (
    ARTIFACTS,
    chromium,
    find_chromium,
    free_port,
    wait_http,
)
from tests.integration.test_pipeline import mixed_manifest

pytestmark = pytest.mark.integration
# About 3 s of real time per generation, some failing, a few 429s: a chart with a shape.
PROFILE = {"time_factor": 50.0, "latency_mean_s": 150.0, "latency_sigma": 0.5, "seed": 7,
           "queue_delay_s": 0.0, "p_task_fail": 0.12, "p_429": 0.05,
           "keys": {"test-highwayapi-key": {"provider": "highwayapi"}}}
N = 40


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(redis_url, tmp_path, SimProfile.model_validate(PROFILE),
                         novita_max_in_flight="6", byteplus_max_in_flight="6",
                         highwayapi_max_in_flight="6", wavespeed_max_in_flight="3",
                         wavespeed_submit_rpm="600") as c:
        yield c


def shoot(binary: str, url: str, name: str, height: int = 1400) -> tuple[Path, str]:
    """A screenshot of `url` in test-artifacts/ and the page's DOM."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    shot.unlink(missing_ok=True)
    args = ("--virtual-time-budget=4000", f"--window-size=1280,{height}")
    chromium(binary, *args, f"--screenshot={shot}", url)
    dom = chromium(binary, *args, "--dump-dom", url)
    assert shot.exists() and shot.stat().st_size > 5000, dom.stderr[-2000:]
    return shot, dom.stdout


def test_batch_page_while_running_then_gallery_items_and_errors(cluster: Cluster,
                                                                tmp_path: Path) -> None:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium); .ci/run installs it")
    port = free_port()
    cluster.start("dashboard", "dashboard", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/api/batches")
    batch_id = str(cluster.submit(mixed_manifest(tmp_path, cluster.sim_url, N),
                                  provider=None, model=None).batch_id)

    def running_with_some_done() -> bool:
        view = httpx.get(f"{base}/api/batches/{batch_id}", timeout=10).json()
        return view["status"] == "in_progress" and view["done"] >= 8 and len(view["series"]) >= 4

    cluster.wait_until(running_with_some_done, 120, "the batch to be half-way")
    _, running_dom = shoot(binary, f"{base}/batches/{batch_id}", "batch-page.png")
    batch = cluster.wait_batch(batch_id, timeout=180)
    _, gallery_dom = shoot(binary, f"{base}/batches/{batch_id}/gallery", "gallery.png", 1000)
    _, items_dom = shoot(binary, f"{base}/batches/{batch_id}/items?state=failed", "items.png",
                         900)
    first_failed = re.search(r'id="item-(\d+)"', items_dom)
    assert first_failed, "no failed item in the table"
    shoot(binary, f"{base}/batches/{batch_id}/items/{first_failed.group(1)}", "item.png", 1200)
    errors = httpx.get(f"{base}/batches/{batch_id}/view/errors.jsonl", timeout=10)
    done_page = httpx.get(f"{base}/batches/{batch_id}", timeout=10).text
    metrics_text = httpx.get(f"{base}/metrics", timeout=10).text

    assert f"batch <code>{batch_id}</code> · in_progress" in running_dom
    assert "<polyline" in running_dom and 'id="accounts"' in running_dom
    succeeded, failed = int(batch["succeeded"]), int(batch["failed"])
    assert succeeded + failed == N and failed >= 1
    assert gallery_dom.count("<video") == min(succeeded, 60)
    assert f'id="count-failed" style="border-color:#e03131"><a href="/batches/{batch_id}' \
        f'/items?state=failed"><b>{failed}</b>' in done_page
    assert items_dom.count('<tr id="item-') == min(failed, 50)
    assert errors.status_code == 200 and errors.text.count("<tr>") == failed + 1
    # the first video the gallery shows is the stored file itself
    item = cluster.store.pages.page(batch_id, N, ItemFilter(states=("succeeded",)), 1).items[0]
    video = httpx.get(f"{base}/batches/{batch_id}/files/"
                      f"{object_key(batch_id, item.custom_id).split('/', 1)[1]}", timeout=10)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.content == cluster.storage.get_bytes(object_key(batch_id, item.custom_id))
    completed = re.findall(r'genbatch_items_completed_total\{[^}]*state="succeeded"\} (\S+)',
                           metrics_text)
    assert sum(float(v) for v in completed) == succeeded
    assert 'genbatch_provider_requests_total{kind="submit",provider="novita",status="200"}' \
        in metrics_text
    assert "genbatch_generation_seconds_bucket{" in metrics_text
    assert "genbatch_item_poll_lag_seconds_count{" in metrics_text
