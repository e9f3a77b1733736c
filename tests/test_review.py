"""Review and redo over a real Redis and a storage folder: verdicts in the store, the review
page (posters, filters, one-click POSTs refused without a CSRF token or from another origin,
behind basic auth), redo (new seed, earlier take kept, paid once, budget-checked), results
rows with takes and review, and export of the kept videos to a folder and a zip."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from genbatch.client import review as client_review
from genbatch.client.export import export_kept
from genbatch.config import Settings
from genbatch.console.dashboard import create_app
from genbatch.console.review import poster_key
from genbatch.errors import GenbatchError
from genbatch.models import Counter, ItemState, Review
from genbatch.storage import LocalStorage, object_key
from genbatch.storage.urls import ObjectUrls
from genbatch.store import JobStore, item_id
from genbatch.worker.finalize import result_row, write_outputs
from genbatch.worker.redo import redo_batch, take_key
from tests.integration.test_cli import run
from tests.test_dashboard_pages import KEY, custom_id, make_batch
from tests.test_frames import SAMPLE
from tests.test_metrics import _url

ORIGIN = {"Origin": "http://testserver"}


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "out")


@pytest.fixture
def batch(store: JobStore, storage: LocalStorage) -> str:
    """b1: items 1-6 succeeded (item 1 a real MP4), 7 failed, 8 expired, 9-12 pending."""
    make_batch(store, storage)
    storage.put_bytes(object_key("b1", custom_id(1)), SAMPLE.read_bytes(), "video/mp4")
    store.items.set_fields({item_id("b1", i): {"sha256": f"{i:064x}", "seed": str(100 + i),
                                                 "remote_id": f"task-{i}"}
                            for i in range(1, 7)})
    return "b1"


@pytest.fixture
def client(store: JobStore, storage: LocalStorage, batch: str) -> Iterator[TestClient]:
    settings = Settings(redis_url=_url(store), novita_api_key=SecretStr(KEY))
    with TestClient(create_app(settings, store=store, storage=storage)) as c:
        yield c


def _token(page_html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page_html)
    assert found, "no CSRF token in the page"
    return found.group(1)


# -- the store ---------------------------------------------------------------------------
def test_verdicts_are_kept_per_batch_and_redo_claims_a_rejection_once(store: JobStore,
                                                                      batch: str) -> None:
    store.reviews.mark(batch, [1, 2], Review.KEPT)
    store.reviews.mark(batch, [3], Review.REJECTED)
    store.reviews.mark("other", [1], Review.REJECTED)
    store.reviews.mark(batch, [2], Review.NOT_REVIEWED)

    assert store.reviews.all(batch) == {1: Review.KEPT, 3: Review.REJECTED}
    assert store.reviews.of(batch, [1, 2, 3]) == {1: Review.KEPT, 2: Review.NOT_REVIEWED,
                                                  3: Review.REJECTED}
    assert store.reviews.counts(batch, 6) == {"kept": 1, "rejected": 1, "not_reviewed": 4}
    assert store.reviews.take_rejected(batch, 1) is False  # kept, not rejected
    assert store.reviews.take_rejected(batch, 3) is True
    assert store.reviews.take_rejected(batch, 3) is False  # a second redo finds nothing
    assert store.reviews.all(batch) == {1: Review.KEPT}


def test_a_page_of_one_verdict_walks_from_a_cursor(store: JobStore, batch: str) -> None:
    store.reviews.mark(batch, [6, 2, 4, 1], Review.REJECTED)
    store.reviews.mark(batch, [4], Review.KEPT)  # moves from rejected to kept

    assert store.reviews.page(batch, Review.REJECTED, 2) == ([1, 2], True)
    assert store.reviews.page(batch, Review.REJECTED, 2, after=2) == ([6], False)
    assert store.reviews.page(batch, Review.REJECTED, 2, before=6) == ([1, 2], False)
    assert store.reviews.page(batch, Review.REJECTED, 1, before=6) == ([2], True)
    assert store.reviews.page(batch, Review.KEPT, 5) == ([4], False)
    assert store.reviews.counts(batch, 6) == {"kept": 1, "rejected": 3, "not_reviewed": 2}


def test_review_by_custom_id_refuses_unknown_unfinished_and_both(store: JobStore,
                                                                 batch: str) -> None:
    with pytest.raises(GenbatchError, match="no item with custom_id 'nope'"):
        client_review.review(store, batch, ["shot-001", "nope"], [])
    with pytest.raises(GenbatchError, match=r"shot-007: only a succeeded video .* failed"):
        client_review.review(store, batch, [], ["shot-007"])
    with pytest.raises(GenbatchError, match="shot-002: given to both"):
        client_review.review(store, batch, ["shot-002"], ["shot-002"])
    assert store.reviews.all(batch) == {}  # nothing half-written

    report = client_review.review(store, batch, ["shot-001,shot-002"], ["shot-003"])
    assert report.kept == ["shot-001", "shot-002"] and report.rejected == ["shot-003"]
    assert report.counts == {"kept": 2, "rejected": 1, "not_reviewed": 3}


# -- the page ----------------------------------------------------------------------------
def test_review_page_shows_posters_and_videos_that_load_when_played(
        client: TestClient, storage: LocalStorage, store: JobStore) -> None:
    page = client.get("/batches/b1/gallery")
    first = client.get("/batches/b1/items/1/poster")
    kept = storage.get_bytes(poster_key(store.items.get(item_id("b1", 1))))
    again = client.get("/batches/b1/items/1/poster")
    unreadable = client.get("/batches/b1/items/2/poster")  # "mp4-bytes-2" is no video
    failed = client.get("/batches/b1/items/7/poster")

    assert page.status_code == 200 and page.text.count("<video") == 6
    assert page.text.count('preload="none"') == 6
    assert 'poster="/batches/b1/items/1/poster"' in page.text
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert first.content[:3] == b"\xff\xd8\xff" and kept == first.content
    assert again.content == first.content
    assert unreadable.status_code == 404 and "cannot decode" in unreadable.text
    assert failed.status_code == 409
    assert page.cookies.get("genbatch_csrf") == _token(page.text)


def test_one_click_keep_and_reject_update_counts_and_filters(client: TestClient,
                                                             store: JobStore) -> None:
    token = _token(client.get("/batches/b1/gallery").text)
    as_json = client.post("/batches/b1/review", data={"csrf": token, "seq": "1",
                                                      "verdict": "kept"},
                          headers={**ORIGIN, "Accept": "application/json"})
    as_form = client.post("/batches/b1/review", data={
        "csrf": token, "seq": "3", "verdict": "rejected",
        "back": "/batches/b1/gallery?review=kept"}, headers=ORIGIN, follow_redirects=False)
    not_video = client.post("/batches/b1/review", data={"csrf": token, "seq": "7",
                                                        "verdict": "kept"}, headers=ORIGIN)
    kept = client.get("/batches/b1/gallery?review=kept").text
    rejected = client.get("/batches/b1/gallery?review=rejected").text
    unreviewed = client.get("/batches/b1/gallery?review=not_reviewed&limit=2").text

    assert as_json.json() == {"seq": 1, "review": "kept",
                              "counts": {"kept": 1, "rejected": 0, "not_reviewed": 5}}
    assert as_form.status_code == 303
    assert as_form.headers["location"] == "/batches/b1/gallery?review=kept"
    assert not_video.status_code == 409
    assert store.reviews.all("b1") == {1: Review.KEPT, 3: Review.REJECTED}
    assert re.findall(r'id="tile-(\d+)"', kept) == ["1"]
    first = client.get("/batches/b1/gallery?review=kept&limit=1")
    client.post("/batches/b1/review", data={"csrf": token, "seq": "5", "verdict": "kept"},
                headers=ORIGIN)
    paged = client.get("/batches/b1/gallery?review=kept&limit=1&after=1").text
    assert "after=1" not in first.text  # one kept video then: no next page
    assert re.findall(r'id="tile-(\d+)"', paged) == ["5"] and "before=5" in paged
    assert re.findall(r'id="tile-(\d+)"', rejected) == ["3"]
    assert re.findall(r'id="tile-(\d+)"', unreviewed) == ["2", "4"]
    assert "review=not_reviewed&amp;limit=2&amp;after=4\">next" in unreviewed
    assert 'id="redo">Redo rejected (1)' in rejected


def test_redo_rejected_from_the_page(client: TestClient, store: JobStore) -> None:
    store.reviews.mark("b1", [2], Review.REJECTED)
    token = _token(client.get("/batches/b1/gallery").text)

    redone = client.post("/batches/b1/redo", data={"csrf": token}, headers=ORIGIN,
                         follow_redirects=False)
    page = client.get(redone.headers["location"]).text
    again = client.post("/batches/b1/redo", data={"csrf": token},
                        headers={**ORIGIN, "Accept": "application/json"})

    assert redone.status_code == 303 and redone.headers["location"].endswith("?redone=1")
    assert '<p class="notice" id="redone">1 rejected videos queued again' in page
    assert 'id="tile-2"' not in page and 'id="redo" disabled>' in page
    assert again.json() == {"batch_id": "b1", "redone": [], "skipped": [],
                            "estimated_cost_usd": 0.0}
    assert store.items.get(item_id("b1", 2)).state is ItemState.PENDING


def test_posts_without_token_or_from_another_origin_are_refused(client: TestClient,
                                                                store: JobStore) -> None:
    token = _token(client.get("/batches/b1/gallery").text)
    form = {"csrf": token, "seq": "1", "verdict": "rejected"}
    answers = {
        "no token": client.post("/batches/b1/review", data={**form, "csrf": ""},
                                headers=ORIGIN),
        "wrong token": client.post("/batches/b1/review", data={**form, "csrf": "x" * 43},
                                   headers=ORIGIN),
        "other origin": client.post("/batches/b1/review", data=form,
                                    headers={"Origin": "https://evil.example"}),
        "other referer": client.post("/batches/b1/review", data=form,
                                     headers={"Referer": "https://evil.example/x"}),
        "no origin": client.post("/batches/b1/review", data=form),
        "cross-site": client.post("/batches/b1/review", data=form,
                                  headers={**ORIGIN, "Sec-Fetch-Site": "cross-site"}),
        "redo, other origin": client.post("/batches/b1/redo", data={"csrf": token},
                                          headers={"Origin": "https://evil.example"}),
    }
    client.cookies.clear()
    answers["no cookie"] = client.post("/batches/b1/review", data=form, headers=ORIGIN)

    assert {k: r.status_code for k, r in answers.items()} == dict.fromkeys(answers, 403)
    assert store.reviews.all("b1") == {}
    same_referer = client.get("/batches/b1/gallery")
    ok = client.post("/batches/b1/review", data={**form, "csrf": _token(same_referer.text)},
                     headers={"Referer": "http://testserver/batches/b1/gallery"},
                     follow_redirects=False)
    assert ok.status_code == 303 and store.reviews.all("b1") == {1: Review.REJECTED}


def test_posts_need_the_dashboards_basic_auth(store: JobStore, storage: LocalStorage,
                                              batch: str) -> None:
    settings = Settings(redis_url=_url(store), dashboard_basic_auth=SecretStr("ops:pw"))
    with TestClient(create_app(settings, store=store, storage=storage)) as c:
        token = _token(c.get("/batches/b1/gallery", auth=("ops", "pw")).text)
        form = {"csrf": token, "seq": "1", "verdict": "kept"}
        anonymous = c.post("/batches/b1/review", data=form, headers=ORIGIN)
        redo = c.post("/batches/b1/redo", data={"csrf": token}, headers=ORIGIN)
        authed = c.post("/batches/b1/review", data=form, headers=ORIGIN, auth=("ops", "pw"),
                        follow_redirects=False)

    assert anonymous.status_code == 401 and redo.status_code == 401
    assert authed.status_code == 303 and store.reviews.all("b1") == {1: Review.KEPT}


# -- redo --------------------------------------------------------------------------------
def test_redo_queues_rejected_with_a_new_seed_keeping_the_earlier_take(
        store: JobStore, storage: LocalStorage, batch: str) -> None:
    store.reviews.mark(batch, [2, 3], Review.REJECTED)
    store.reviews.mark(batch, [7], Review.REJECTED)  # not a video: left alone
    before = store.items.get(item_id(batch, 2))

    report = redo_batch(store, storage, batch)
    again = redo_batch(store, storage, batch)

    item = store.items.get(item_id(batch, 2))
    assert report.redone == ["shot-002", "shot-003"] and report.skipped == ["shot-007"]
    assert again.redone == []  # each rejection is redone once
    assert item.state is ItemState.PENDING and item.takes == 2
    assert item.request.seed is not None and item.request.seed != 102
    assert item.get("seed") == str(item.request.seed)
    take = item.history[-1]
    assert take["take"] == 1 and take["remote_id"] == before.remote_id
    assert take["seed"] == "102" and take["cost"] == "0.3" and take["review"] == "rejected"
    assert take["output_uri"] == storage.uri(take_key(item, 1))
    assert storage.get_bytes(take_key(item, 1)) == b"mp4-bytes-2"
    assert store.reviews.all(batch) == {7: Review.REJECTED}  # redone: not reviewed
    record = store.batches.get(batch)
    assert record.count(Counter.SUCCEEDED) == 4 and record.count(Counter.PENDING) == 6
    assert store.debug.pending("novita", batch)[-2:] == [item_id(batch, 2), item_id(batch, 3)]
    row = result_row(item)
    assert row["takes"] == 2 and row["attempt_history"][0]["take"] == 1
    assert row["attempt_history"][0]["output_uri"] == take["output_uri"]


def test_redo_is_refused_when_the_budget_has_no_room(store: JobStore, storage: LocalStorage,
                                                     batch: str) -> None:
    store.batches.set_fields(batch, {"budget_usd": "2.0", "spent_micro": "1800000"})
    store.reviews.mark(batch, [1, 2], Review.REJECTED)  # 2 x 0.25 estimated, 0.20 left

    with pytest.raises(GenbatchError, match=r"needs about \$0.50 .* \$0.20 of its \$2.00"):
        redo_batch(store, storage, batch)
    assert store.reviews.all(batch) == {1: Review.REJECTED, 2: Review.REJECTED}
    assert store.items.get(item_id(batch, 1)).state is ItemState.SUCCEEDED


def test_redo_that_cannot_keep_a_take_redoes_nothing(store: JobStore, storage: LocalStorage,
                                                      batch: str) -> None:
    store.reviews.mark(batch, [2, 3], Review.REJECTED)
    storage.delete(object_key(batch, custom_id(3)))  # the second video is gone

    with pytest.raises(GenbatchError, match=r"shot-003: cannot keep its take 1 .* nothing redone"):
        redo_batch(store, storage, batch)
    assert store.reviews.all(batch) == {2: Review.REJECTED, 3: Review.REJECTED}
    assert {store.items.get(item_id(batch, s)).state for s in (2, 3)} == {ItemState.SUCCEEDED}
    assert store.batches.get(batch).count(Counter.PENDING) == 4


def test_results_rows_and_manifests_carry_the_review(store: JobStore, storage: LocalStorage,
                                                     batch: str) -> None:
    store.reviews.mark(batch, [1], Review.KEPT)
    store.reviews.mark(batch, [2], Review.REJECTED)
    files = write_outputs(storage, batch, store.items.of_batch(batch, 12),
                          reviews=store.reviews.all(batch))
    rows = [json.loads(line) for line in
            Path(files.results_jsonl.removeprefix("file://")).read_text().splitlines()]
    csv_head = Path(files.results_csv.removeprefix("file://")).read_text().splitlines()[0]

    assert [(r["custom_id"], r["review"], r["takes"]) for r in rows[:3]] == [
        ("shot-001", "kept", 1), ("shot-002", "rejected", 1), ("shot-003", "not_reviewed", 1)]
    assert ",takes,review," in csv_head + ","


# -- export ------------------------------------------------------------------------------
def test_export_kept_to_a_folder_and_a_zip(store: JobStore, storage: LocalStorage,
                                           batch: str, tmp_path: Path) -> None:
    objects = ObjectUrls()
    with pytest.raises(GenbatchError, match="no kept video"):
        export_kept(store, storage, objects, batch, str(tmp_path / "none"))
    store.reviews.mark(batch, [2, 4], Review.KEPT)
    store.reviews.mark(batch, [3], Review.REJECTED)

    folder = export_kept(store, storage, objects, batch, str(tmp_path / "kept"))
    zipped = export_kept(store, storage, objects, batch, str(tmp_path / "kept.zip"))

    assert folder.videos == 2 and zipped.videos == 2
    files = sorted(p.name for p in (tmp_path / "kept").iterdir())
    assert files == ["manifest.jsonl", "shot-002.mp4", "shot-004.mp4"]
    assert (tmp_path / "kept" / "shot-004.mp4").read_bytes() == b"mp4-bytes-4"
    manifest = [json.loads(x) for x in (tmp_path / "kept/manifest.jsonl").read_text().split("\n")
                if x]
    assert [(m["custom_id"], m["file"], m["seed"], m["provider"]) for m in manifest] == [
        ("shot-002", "shot-002.mp4", 102, "novita"), ("shot-004", "shot-004.mp4", 104, "novita")]
    assert manifest[0]["prompt"] == "a bottle on a rock"
    with zipfile.ZipFile(tmp_path / "kept.zip") as zf:
        assert sorted(zf.namelist()) == files
        assert zf.read("shot-002.mp4") == b"mp4-bytes-2"
        assert zf.read("manifest.jsonl") == (tmp_path / "kept/manifest.jsonl").read_bytes()
    assert not list(tmp_path.glob("*.part*")) and not list(tmp_path.glob(".kept*"))


def test_a_failed_export_leaves_nothing_behind(store: JobStore, storage: LocalStorage,
                                              batch: str, tmp_path: Path) -> None:
    store.reviews.mark(batch, [2, 4], Review.KEPT)
    storage.delete(object_key(batch, custom_id(4)))  # the second video is gone
    objects = ObjectUrls()

    for dest in (tmp_path / "kept", tmp_path / "kept.zip"):
        with pytest.raises(GenbatchError, match="export failed, nothing written"):
            export_kept(store, storage, objects, batch, str(dest))
        assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(GenbatchError, match="not an empty folder"):
        export_kept(store, storage, objects, batch, str(tmp_path / "full"))


# -- the command line --------------------------------------------------------------------
def test_cli_review_redo_export_say_one_line_or_json(store: JobStore, storage: LocalStorage,
                                                     batch: str, tmp_path: Path) -> None:
    env = {"GENBATCH_REDIS_URL": _url(store), "GENBATCH_STORAGE_URL": str(storage.root)}
    bad = run(["review", batch, "--keep", "shot-001", "--reject", "nope"], env)
    marked = run(["review", batch, "--keep", "shot-001,shot-004", "--reject", "shot-002",
                  "--json"], env)
    redo = run(["redo", batch, "--json"], env)
    export = run(["export", batch, "--kept", str(tmp_path / "k.zip"), "--json"], env)

    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == "error: batch b1 has no item with custom_id 'nope'"
    assert json.loads(marked.stdout) == {
        "batch_id": batch, "kept": ["shot-001", "shot-004"], "rejected": ["shot-002"],
        "counts": {"kept": 2, "rejected": 1, "not_reviewed": 3}}
    assert json.loads(redo.stdout) == {"batch_id": batch, "redone": ["shot-002"],
                                       "skipped": [], "estimated_cost_usd": 0.25}
    assert json.loads(export.stdout)["videos"] == 2
    assert store.items.get(item_id(batch, 2)).state is ItemState.PENDING


def test_the_python_api_reviews_through_a_batch_handle(store: JobStore, storage: LocalStorage,
                                                       batch: str) -> None:
    from genbatch.client import Client

    handle = Client(Settings(redis_url=_url(store), storage_url=str(storage.root))).batch(batch)
    report = handle.review(keep=["shot-001"], reject=["shot-003"])
    rows = {r.custom_id: r for r in handle.results()}

    assert report.counts == {"kept": 1, "rejected": 1, "not_reviewed": 4}
    assert (rows["shot-001"].review, rows["shot-003"].review) == ("kept", "rejected")
    assert rows["shot-002"].review == "not_reviewed" and rows["shot-002"].takes == 1
    assert handle.redo().redone == ["shot-003"]
    assert [r.custom_id for r in handle.rows() if r.takes == 2] == ["shot-003"]


def test_export_kept_to_s3_writes_the_manifest_last_and_cleans_up_a_failure(
        store: JobStore, storage: LocalStorage, batch: str, s3: str) -> None:
    import boto3

    bucket = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    objects = ObjectUrls(endpoint_url=s3, region="us-east-1")
    store.reviews.mark(batch, [2, 4], Review.KEPT)

    report = export_kept(store, storage, objects, batch, "s3://pipeline-out/selects")
    storage.delete(object_key(batch, custom_id(4)))
    with pytest.raises(GenbatchError, match="export failed, nothing written"):
        export_kept(store, storage, objects, batch, "s3://pipeline-out/broken")

    with pytest.raises(GenbatchError, match="already holds an export"):
        export_kept(store, storage, objects, batch, "s3://pipeline-out/selects")
    keys = sorted(o["Key"] for o in bucket.list_objects_v2(Bucket="pipeline-out")["Contents"])
    assert report.videos == 2
    assert keys == ["selects/manifest.jsonl", "selects/shot-002.mp4", "selects/shot-004.mp4"]
    body = bucket.get_object(Bucket="pipeline-out", Key="selects/shot-002.mp4")["Body"].read()
    assert body == b"mp4-bytes-2"
