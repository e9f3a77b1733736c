"""The batch pages of the dashboard over a real Redis and a storage folder: counts, items
(filter, search, paging, detail), gallery, files confined to the batch's prefix, manifests
as tables, escaping, read-only routes (the review page's POSTs: tests/test_review.py),
basic auth and no secret on any page."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from genbatch.config import Settings
from genbatch.console.dashboard import create_app
from genbatch.demo import SAMPLES
from genbatch.models import ItemState
from genbatch.storage import LocalStorage, ObjectStorage, object_key
from genbatch.store import JobStore, item_id
from genbatch.worker.finalize import write_outputs
from tests.test_metrics import _url

HOSTILE = '<script>alert("x")</script>'
NOTIFY = "https://hooks.example.com/services/T000/SECRET-TOKEN"
KEY = "sk-live-never-shown-0123456789"
PNG = (SAMPLES / "images" / "bottle.png").read_bytes()


def custom_id(i: int) -> str:
    return HOSTILE if i == 5 else f"shot-{i:03d}"


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "out")


def make_batch(store: JobStore, storage: ObjectStorage, bid: str = "b1", n: int = 12) -> None:
    """n items: 1-6 succeeded (videos stored), 7 failed, 8 expired, the rest pending."""
    stored = storage.put_bytes("inputs/abc.png", PNG, "image/png")
    store.ingest.create(bid, {"manifest": "/m.csv", "provider": "novita", "priority": "low",
                              "tier": "flex", "notify_url": NOTIFY}, created_at=time.time() - 60)
    req = {"prompt": "a bottle on a rock", "image": f"stored:{stored.key}", "duration": 5,
           "resolution": "720p"}
    store.ingest.add_items(bid, [{"seq": str(i), "state": "pending", "provider": "novita",
                                  "model": "seedance-v1.5-pro-i2v", "custom_id": custom_id(i),
                                  "line": str(i + 1), "est_cost": "0.25", "req": json.dumps(req)}
                          for i in range(1, n + 1)])
    store.ingest.commit(bid, ["novita"])
    for i in range(1, 7):
        video = storage.put_bytes(object_key(bid, custom_id(i)), b"mp4-bytes-%d" % i, "video/mp4")
        store.items.transition(item_id(bid, i), [ItemState.PENDING], ItemState.SUCCEEDED,
                               timer="-", fields={
            "output_uri": video.uri, "cost": "0.3",
            "video_url": "https://cdn.example.com/v.mp4?X-Signature=abc"})
    store.items.transition(item_id(bid, 7), [ItemState.PENDING], ItemState.FAILED, timer="-",
                           fields={
        "error_code": "TASK_FAILED", "error_message": "the <b>model</b> refused"})
    store.items.transition(item_id(bid, 8), [ItemState.PENDING], ItemState.EXPIRED, timer="-")


@pytest.fixture
def client(store: JobStore, storage: LocalStorage) -> Iterator[TestClient]:
    make_batch(store, storage)
    settings = Settings(redis_url=_url(store), novita_api_key=SecretStr(KEY))
    with TestClient(create_app(settings, store=store, storage=storage)) as c:
        yield c


def test_batch_page_shows_counts_spend_options_and_its_chart(client: TestClient,
                                                             store: JobStore) -> None:
    store.series.sample(["b1"], time.time() - 30)
    page = client.get("/batches/b1")
    api = client.get("/api/batches/b1").json()

    assert page.status_code == 200
    assert 'id="count-succeeded"' in page.text and "<b>6</b>" in page.text
    assert "#2f9e44" in page.text and "#e03131" in page.text  # distinct colours
    assert "<svg" in page.text and "completed / min" in page.text
    assert api["succeeded"] == 6 and api["failed"] == 1 and api["expired"] == 1
    assert api["tier"] == "flex" and api["priority"] == "low"
    assert api["notify_host"] == "hooks.example.com" and "SECRET-TOKEN" not in page.text
    assert [a["provider"] for a in api["accounts"]] == ["novita"]
    assert api["series"][0]["succeeded"] == 0 and api["series"][-1]["succeeded"] == 6
    assert 'href="/batches/b1/items?state=failed"' in page.text


def test_items_filter_search_page_and_detail(client: TestClient) -> None:
    failed = client.get("/api/batches/b1/items?state=failed").json()
    search = client.get("/api/batches/b1/items?q=SHOT-01").json()
    first = client.get("/api/batches/b1/items?limit=5").json()
    second = client.get(f"/api/batches/b1/items?limit=5&after={first['next_after']}").json()
    detail = client.get("/api/batches/b1/items/7").json()
    bad = client.get("/api/batches/b1/items?state=nonsense")
    missing = client.get("/batches/b1/items/99")

    assert [i["seq"] for i in failed["items"]] == [7]
    assert failed["items"][0]["error_message"] == "the <b>model</b> refused"
    assert [i["custom_id"] for i in search["items"]] == ["shot-010", "shot-011", "shot-012"]
    assert [i["seq"] for i in second["items"]] == [6, 7, 8, 9, 10]
    assert first["items"][0]["prompt"] == "a bottle on a rock"
    assert first["items"][0]["parameters"] == {"duration": 5, "resolution": "720p"}
    assert detail["fields"]["error_code"] == "TASK_FAILED"
    assert client.get("/api/batches/b1/items/1").json()["fields"]["video_url"] \
        == "https://cdn.example.com/v.mp4"
    assert bad.status_code == 400 and missing.status_code == 404


def test_everything_from_the_manifest_is_escaped(client: TestClient) -> None:
    pages = [client.get(u).text for u in ("/batches/b1/items", "/batches/b1/gallery",
                                          "/batches/b1/items/5", "/batches/b1/items/7")]

    assert all(HOSTILE not in text for text in pages)
    assert "&lt;script&gt;" in pages[0] and "the &lt;b&gt;model&lt;/b&gt; refused" in pages[0]


def test_gallery_serves_videos_beside_inputs_from_the_batch_prefix(
        client: TestClient, storage: LocalStorage) -> None:
    gallery = client.get("/batches/b1/gallery").text
    video = client.get("/batches/b1/files/shot-001.mp4")
    ranged = client.get("/batches/b1/files/shot-001.mp4", headers={"Range": "bytes=0-2"})
    image = client.get("/batches/b1/items/1/input")

    assert gallery.count("<video") == 6 and gallery.count('preload="none"') == 6
    assert 'src="/batches/b1/files/shot-001.mp4"' in gallery
    assert 'href="/batches/b1/items/1"' in gallery
    assert video.status_code == 200 and video.content == b"mp4-bytes-1"
    assert video.headers["content-type"] == "video/mp4"
    assert ranged.status_code == 206 and ranged.content == b"mp4"
    assert image.status_code == 200 and image.content == PNG


def test_files_outside_the_batch_prefix_are_refused(client: TestClient, store: JobStore,
                                                    storage: LocalStorage) -> None:
    make_batch(store, storage, "b2")
    (storage.root.parent / "secret.txt").write_text("secret")
    (storage.root / "b1" / "link.mp4").symlink_to(storage.root / "b2" / "shot-001.mp4")

    attempts = ["/batches/b1/files/..%2Fb2%2Fshot-001.mp4", "/batches/b1/files/../secret.txt",
                "/batches/b1/files/..%2F..%2Fsecret.txt", "/batches/b1/files/%2Fetc%2Fpasswd",
                "/batches/b1/files/.hidden", "/batches/b1/files/link.mp4",
                "/batches/b1/files/..%2Finputs%2Fabc.png", "/batches/nope/files/shot-001.mp4"]

    answers = {url: client.get(url) for url in attempts}
    assert {url: a.status_code for url, a in answers.items()} == dict.fromkeys(attempts, 404)
    assert all(b"secret" not in a.content for a in answers.values())


def test_output_manifests_show_as_tables(client: TestClient, store: JobStore,
                                         storage: LocalStorage) -> None:
    before = client.get("/batches/b1/view/errors.jsonl")
    files = write_outputs(storage, "b1", store.items.of_batch("b1", 12))
    store.batches.set_fields("b1", {"results_jsonl": files.results_jsonl,
                                    "errors_jsonl": files.errors_jsonl})

    results = client.get("/batches/b1/view/results.jsonl")
    errors = client.get("/batches/b1/view/errors.jsonl")
    other = client.get("/batches/b1/view/results.csv")

    assert before.status_code == 404 and other.status_code == 404
    assert results.status_code == 200 and results.text.count("<tr>") == 1 + 6
    assert "shot-001" in results.text and 'href="/results/b1/results.jsonl"' in results.text
    assert "TASK_FAILED" in errors.text and HOSTILE not in errors.text


def test_read_only_with_basic_auth_and_no_secret_on_any_page(store: JobStore,
                                                             storage: LocalStorage) -> None:
    make_batch(store, storage)
    settings = Settings(redis_url=_url(store), novita_api_key=SecretStr(KEY),
                        dashboard_basic_auth=SecretStr("ops:pa55-word"))
    urls = ["/", "/api/batches", "/metrics", "/batches/b1", "/api/batches/b1",
            "/batches/b1/items", "/api/batches/b1/items", "/batches/b1/items/1",
            "/api/batches/b1/items/1", "/batches/b1/gallery"]
    with TestClient(create_app(settings, store=store, storage=storage)) as c:
        anonymous = c.get("/batches/b1")
        wrong = c.get("/batches/b1", auth=("ops", "nope"))
        pages = {u: c.get(u, auth=("ops", "pa55-word")) for u in urls}
        post = c.post("/batches/b1", auth=("ops", "pa55-word"))

    assert anonymous.status_code == 401 and wrong.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert {u: r.status_code for u, r in pages.items()} == dict.fromkeys(urls, 200)
    assert post.status_code == 405
    for text in (r.text for r in pages.values()):
        assert KEY not in text and "pa55-word" not in text and "SECRET-TOKEN" not in text


def test_on_s3_videos_and_inputs_are_presigned_redirects(store: JobStore,
                                                         s3_endpoint: str) -> None:
    import boto3

    from genbatch.storage import S3Storage

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket="dash")
    s3 = S3Storage("dash", "out", client)
    make_batch(store, s3)
    app = create_app(Settings(redis_url=_url(store)), store=store, storage=s3)

    with TestClient(app, follow_redirects=False) as c:
        video = c.get("/batches/b1/files/shot-001.mp4")
        image = c.get("/batches/b1/items/1/input")
        escape = c.get("/batches/b1/files/..%2Finputs%2Fabc.png")

    assert video.status_code == 307 and image.status_code == 307
    assert "/dash/out/b1/shot-001.mp4?" in video.headers["location"]
    assert "Signature=" in video.headers["location"]
    assert "/dash/out/inputs/abc.png?" in image.headers["location"]
    assert escape.status_code == 404
    assert httpx.get(video.headers["location"], timeout=10).content == b"mp4-bytes-1"
    assert httpx.get(image.headers["location"], timeout=10).content == PNG
