"""Review and redo on the real set-up (Redis, simulator, worker and scheduler processes):
a rejected video redone once is paid once more, in the same batch, its first take kept; the
kept videos exported to a folder and a zip; the review page in headless Chromium
(screenshots in test-artifacts/: review.png at 1280 px, review-phone.png at 390 px)."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from genbatch.client import Client
from genbatch.simulator import SimProfile
from genbatch.store import budget
from tests.integration.cluster import Cluster, running_cluster, sample_manifest
from tests.integration.test_batch_pages import shoot
from tests.integration.test_observability import (
    ARTIFACTS,
    chromium,
    find_chromium,
    free_port,
    wait_http,
)
from tests.integration.test_pipeline import read_jsonl

pytestmark = pytest.mark.integration
PROFILE = SimProfile(time_factor=50.0, latency_mean_s=10.0, seed=13)


def _rows(batch_id: str, c: Cluster) -> dict[str, dict[str, object]]:
    return {str(r["custom_id"]): r for r in
            read_jsonl(c.store.batches.get(batch_id)["results_jsonl"])}


def test_a_rejected_video_redone_once_is_paid_once_more_in_the_same_batch(
        redis_url: str, tmp_path: Path) -> None:
    with running_cluster(redis_url, tmp_path, PROFILE) as c:
        client = Client(c.settings)
        batch_id = str(c.submit(sample_manifest(tmp_path, 4), provider="novita",
                                model="seedance-v1.5-pro-i2v").batch_id)
        first = c.wait_batch(batch_id)
        assert first["succeeded"] == "4"
        submits, spent = c.sim_stats()["submits"], budget.summary(first)["spent_usd"]
        before = _rows(batch_id, c)["q-001"]
        video = Path(urlparse(str(before["output_uri"])).path)
        first_take = video.read_bytes()

        client.review(batch_id, keep=["q-000", "q-002"], reject=["q-001"])
        assert _rows(batch_id, c)["q-001"]["review"] == "rejected"  # manifests rewritten
        report = client.redo(batch_id)
        again = client.redo(batch_id)  # nothing rejected any more: nothing paid
        done = c.wait_batch(batch_id)

        assert report.redone == ["q-001"] and again.redone == []
        assert c.sim_stats()["submits"] == submits + 1
        cost = float(str(before["cost_usd"]))
        assert budget.summary(done)["spent_usd"] == pytest.approx(spent + cost)
        assert [b.id for b in c.store.batches.recent()] == [batch_id]
        assert (done["total"], done["succeeded"]) == ("4", "4")
        rows = _rows(batch_id, c)
        redone = rows["q-001"]
        assert redone["takes"] == 2 and redone["review"] == "not_reviewed"
        assert redone["seed"] != before["seed"]
        assert redone["remote_task_id"] != before["remote_task_id"]
        take = redone["attempt_history"][0]  # type: ignore[index]
        assert take["take"] == 1 and take["seed"] == before["seed"]
        assert take["remote_task_id"] == before["remote_task_id"]
        assert Path(urlparse(take["output_uri"]).path).read_bytes() == first_take
        assert video.read_bytes() != first_take  # the new take, where the video always is
        assert (rows["q-000"]["review"], rows["q-000"]["takes"]) == ("kept", 1)

        client.export_kept(batch_id, tmp_path / "kept")
        client.export_kept(batch_id, tmp_path / "kept.zip")
        manifest = (tmp_path / "kept" / "manifest.jsonl").read_text().splitlines()
        assert [json.loads(m)["custom_id"] for m in manifest] == ["q-000", "q-002"]
        with zipfile.ZipFile(tmp_path / "kept.zip") as zf:
            assert sorted(zf.namelist()) == ["manifest.jsonl", "q-000.mp4", "q-002.mp4"]
            assert zf.read("q-002.mp4") == (tmp_path / "kept" / "q-002.mp4").read_bytes()


def test_review_page_in_a_browser(redis_url: str, tmp_path: Path) -> None:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium); .ci/run installs it")
    with running_cluster(redis_url, tmp_path, PROFILE) as c:
        port = free_port()
        c.start("dashboard", "dashboard", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/api/batches")
        batch_id = str(c.submit(sample_manifest(tmp_path, 8), provider="novita",
                                model="seedance-v1.5-pro-i2v").batch_id)
        c.wait_batch(batch_id)
        Client(c.settings).review(batch_id, keep=["q-000", "q-003"], reject=["q-001"])
        url = f"{base}/batches/{batch_id}/gallery"

        _, dom = shoot(binary, url, "review.png", 900)
        phone = chromium(binary, "--virtual-time-budget=4000", "--window-size=390,1400",
                         f"--screenshot={ARTIFACTS / 'review-phone.png'}", url)
        posters = re.findall(r'poster="([^"]+)"', dom)
        poster = httpx.get(base + posters[0], timeout=10)

    assert phone.returncode == 0
    assert dom.count('preload="none"') == 8 and len(posters) == 8
    assert poster.status_code == 200 and poster.content[:3] == b"\xff\xd8\xff"
    assert re.search(r'id="count-kept"[^>]*>kept <b>2</b>', dom)
    assert 'class="card rejected" id="tile-2"' in dom
    assert 'id="redo">Redo rejected (1)' in dom
