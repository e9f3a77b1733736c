"""Local images on WaveSpeed: the worker uploads each distinct image once per account
through the documented upload and submits its URL (docs/wire/notes.md §9). Real Redis, the
simulator on loopback, local object storage; only Celery's enqueue is a list."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from genbatch.config import Settings
from genbatch.demo import SAMPLES
from genbatch.providers.accounts import env_account
from genbatch.simulator import SimProfile, running_simulator
from genbatch.store import item_id
from genbatch.worker.runtime import Runtime
from genbatch.worker.steps import submit_item
from genbatch.worker.uploads import account_id
from tests.dispatching import dispatch_items

PNG = (SAMPLES / "images" / "bottle.png").read_bytes()
JPEG = (SAMPLES / "images" / "sneaker.jpg").read_bytes()


@pytest.fixture
def sim_url() -> Iterator[str]:
    with running_simulator(SimProfile(time_factor=100)) as url:
        yield url


def runtime(redis_url: str, tmp_path: Path, base_url: str) -> Runtime:
    settings = Settings(redis_url=redis_url, storage_url=str(tmp_path / "storage"),
                        wavespeed_api_key="ws-key", wavespeed_base_url=base_url,
                        dispatch_on_free=False)
    return Runtime(settings, enqueue=lambda kind, ident: None)


def dispatched(rt: Runtime, bid: str, images: list[dict[str, str]]) -> list[str]:
    """A batch of WaveSpeed items with these image fields, all dispatched."""
    store = rt.store
    store.ingest.create(bid, {"provider": "wavespeed", "model": "seedance-v1.5-pro-i2v"}, 1.0)
    store.ingest.add_items(bid, [
        {"seq": str(n), "state": "pending", "provider": "wavespeed", "line": str(n + 1),
         "custom_id": f"c{n}", "model": "seedance-v1.5-pro-i2v",
         "req": json.dumps({"prompt": "a slow pan", **fields})}
        for n, fields in enumerate(images, 1)])
    store.ingest.commit(bid, ["wavespeed"])
    ids = dispatch_items(store, "wavespeed", bid, limit=99, max_n=99, lease_until=1e12)
    assert ids == [item_id(bid, n) for n in range(1, len(images) + 1)]
    return ids


def stored(rt: Runtime, data: bytes, ext: str) -> str:
    key = f"inputs/{hashlib.sha256(data).hexdigest()}.{ext}"
    rt.storage.put_bytes(key, data, f"image/{ext}")
    return "stored:" + key


def sim_stats(url: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{url}/_sim/stats", timeout=10).json()
    return stats


def test_each_distinct_image_is_uploaded_once_and_its_url_submitted(
        redis_url: str, tmp_path: Path, sim_url: str) -> None:
    rt = runtime(redis_url, tmp_path, sim_url)
    png, jpeg = stored(rt, PNG, "png"), stored(rt, JPEG, "jpeg")
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    ids = dispatched(rt, "up1", [{"image": png}, {"image": png, "last_image": jpeg},
                                 {"image": uri}])

    outcomes = [submit_item(rt, iid) for iid in ids]

    assert outcomes == ["submitted"] * 3
    stats = sim_stats(sim_url)
    assert stats["uploads"] == 2  # bottle.png (file and data URI alike) and sneaker.jpg
    submits = [json.loads(e["body"]) for e in stats["request_log"]
               if e["path"].startswith("/api/v3/bytedance/")]
    assert len(submits) == 3
    first_url = submits[0]["image"]
    assert first_url.startswith(f"{sim_url}/_sim/uploads/")
    assert submits[1]["image"] == submits[2]["image"] == first_url
    assert submits[1]["last_image"].startswith(f"{sim_url}/_sim/uploads/")
    assert httpx.get(first_url, timeout=10).content == PNG  # the simulator serves it
    uploads = [e for e in stats["request_log"] if e["path"] == "/api/v3/media/upload/binary"]
    assert all("multipart/form-data" in e["headers"]["content-type"] for e in uploads)
    account = account_id(env_account(rt.settings, "wavespeed"))
    assert "ws-key" not in account
    assert rt.store.memo.upload_url(account, hashlib.sha256(PNG).hexdigest()) == first_url


def test_a_refused_file_fails_the_item_with_the_providers_message(
        redis_url: str, tmp_path: Path, sim_url: str) -> None:
    rt = runtime(redis_url, tmp_path, sim_url)
    not_an_image = stored(rt, b"GIF89a" + b"\x00" * 600, "gif")  # the right magic, no image
    [iid] = dispatched(rt, "up2", [{"image": not_an_image}])

    assert submit_item(rt, iid) == "failed"

    item = rt.store.items.get(iid)
    assert item["error_code"] == "400"
    assert item["error_message"].startswith("image upload refused: unsupported file")
    assert sim_stats(sim_url)["submit_attempts"] == 0


def test_an_upload_that_cannot_reach_the_provider_is_tried_again(
        redis_url: str, tmp_path: Path) -> None:
    rt = runtime(redis_url, tmp_path, "http://127.0.0.1:9")  # nothing listens on port 9
    [iid] = dispatched(rt, "up3", [{"image": stored(rt, PNG, "png")}])

    assert submit_item(rt, iid) == "requeued"

    item = rt.store.items.get(iid)
    assert item["state"] == "pending" and not item.get("attempts")
    assert item["last_error"].startswith("CONNECT_ERROR")


def test_the_url_is_known_before_the_upload_claim_goes(
        redis_url: str, tmp_path: Path, sim_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker waiting for another's upload of the same image sees the URL or the claim,
    never neither (it would claim and upload the image again: seen in a batch whose first
    submits went out at once)."""
    rt = runtime(redis_url, tmp_path, sim_url)
    (iid,) = dispatched(rt, "up9", [{"image": stored(rt, PNG, "png")}])
    account = account_id(env_account(rt.settings, "wavespeed"))
    digest = hashlib.sha256(PNG).hexdigest()
    memo, seen_at_release = rt.store.memo, []
    release = memo.forget

    def forget(kind: str, key: str) -> None:
        seen_at_release.append(memo.upload_url(account, digest))
        release(kind, key)

    monkeypatch.setattr(memo, "forget", forget)
    assert submit_item(rt, iid) == "submitted"
    assert len(seen_at_release) == 1 and seen_at_release[0]  # the URL was already there
    assert sim_stats(sim_url)["uploads"] == 1
