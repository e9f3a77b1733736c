"""Checks before anything is written: every problem of every row, data URIs, keys on live
workers, a budget that fits no row, rows that cannot fit the --fallback (real Redis)."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from genbatch import Client
from genbatch.client import SubmitOutcome
from genbatch.config import Settings
from genbatch.errors import ManifestRejected
from genbatch.producer.ingest import ingest_manifest
from genbatch.store import JobStore
from genbatch.store.heartbeats import Beat

HEADER = "custom_id,provider,prompt,image,resolution,duration\n"
MODEL = "seedance-v1.5-pro-i2v"


@pytest.fixture
def client(redis_url: str, tmp_storage: Path) -> Client:
    return Client(Settings(redis_url=redis_url, storage_url=str(tmp_storage)))


def manifest(folder: Path, *rows: str, name: str = "m.csv") -> Path:
    path = folder / name
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def worker(store: JobStore, *keys: str, name: str = "w1") -> None:
    store.heartbeats.beat_worker(Beat(name=name, at=time.time(), keys=keys), ttl_s=60)


def nothing_written(store: JobStore) -> bool:
    return store.batches.recent() == [] and not store.debug.keys("item", "*")


def png_uri(width: int, height: int) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height)).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def go(client: Client, path: Path, *, dry_run: bool = False,
       **kw: Any) -> SubmitOutcome:
    """A submit (its outcome) or, with `dry_run`, an estimate."""
    if dry_run:
        return client.estimate(path, **kw)
    handle = client.submit(path, **kw)
    assert handle.submitted is not None
    return handle.submitted


def rejected(client: Client, path: Path, **kw: Any) -> ManifestRejected:
    with pytest.raises(ManifestRejected) as info:
        go(client, path, **kw)
    return info.value


# -- every problem of every row ------------------------------------------------------------
def test_a_row_reports_every_mistake(client: Client, store: JobStore, folder: Path) -> None:
    path = manifest(folder, "x" * 300 + ",novita,p,images/nope.png,9000p,99",
                    "ok,novita,p,images/sneaker.jpg,720p,5",
                    "b,nosuchco,p,images/nope.png,,")
    exc = rejected(client, path)
    found = [(e.line, e.field) for e in exc.errors]
    assert found == [(2, "custom_id"), (2, "resolution"), (2, "duration"), (2, "image"),
                     (4, "provider"), (4, "image")]
    assert (exc.total_errors, exc.bad_rows) == (6, 2)
    assert "6 problems (2 bad row(s))" in str(exc)
    assert nothing_written(store)


def test_the_printed_problems_stay_capped(store: JobStore, folder: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("genbatch.producer.ingest.MAX_REPORTED_ERRORS", 3)
    path = manifest(folder, *[f"r{i},novita,p,images/nope.png,,99" for i in range(4)])
    with pytest.raises(ManifestRejected) as info:
        ingest_manifest(path, store=None, storage=None, provider=None, model=MODEL,
                        dry_run=True)
    assert len(info.value.errors) == 3
    assert (info.value.total_errors, info.value.bad_rows) == (8, 4)


def test_unknown_jsonl_keys_do_not_hide_the_other_mistakes(client: Client,
                                                           folder: Path) -> None:
    path = folder / "m.jsonl"
    path.write_text(json.dumps({"prompt": "p", "image": "images/sneaker.jpg", "durration": 5,
                                "duration": 99, "colour": "red"}) + "\n", encoding="utf-8")
    exc = rejected(client, path, provider="novita")
    assert [(e.line, e.field) for e in exc.errors] == [(1, "durration"), (1, "colour"),
                                                       (1, "duration")]
    assert "unknown column" in exc.errors[0].reason


# -- data URIs -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "words"),
    [("data:image/png;base64,not*base64", "valid base64"),
     ("data:image/png,abc", "data:image/<format>;base64"),
     (png_uri(100, 100), "100x100 px"),
     ("data:image/jpeg;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 40).decode(),
      "holds a png image")],
)
def test_a_bad_data_uri_is_a_row_error_naming_its_field(client: Client, store: JobStore,
                                                         folder: Path, uri: str,
                                                         words: str) -> None:
    path = folder / "m.jsonl"
    path.write_text(json.dumps({"prompt": "p", "image": "images/sneaker.jpg",
                                "last_image": uri}) + "\n", encoding="utf-8")
    exc = rejected(client, path, provider="byteplus")
    [error] = exc.errors
    assert (error.line, error.field) == (1, "last_image")
    assert words in error.reason
    assert nothing_written(store)


def test_a_good_data_uri_passes(client: Client, folder: Path) -> None:
    path = folder / "m.jsonl"
    path.write_text(json.dumps({"prompt": "p", "image": png_uri(640, 360)}) + "\n",
                    encoding="utf-8")
    assert go(client, path, provider="novita", dry_run=True).valid == 1


# -- keys on live workers ----------------------------------------------------------------
def test_a_provider_no_live_worker_holds_a_key_for_is_refused(client: Client, store: JobStore,
                                                              folder: Path) -> None:
    worker(store, "novita")
    path = manifest(folder, "a,novita,p,images/sneaker.jpg,,5",
                    "b,byteplus,p,images/watch.jpg,,5", "c,,p,images/watch.jpg,,99")
    exc = rejected(client, path)
    lines = [str(e) for e in exc.errors]
    assert f"{path}: no running worker holds a key for byteplus: set " \
           "GENBATCH_BYTEPLUS_API_KEY on a worker" in lines[0]
    assert [e.line for e in exc.errors] == [None, 4]  # the bad row is reported too
    assert nothing_written(store)
    # once a worker with that key is up, the same (fixed) rows go through
    worker(store, "byteplus", name="w2")
    path = manifest(folder, "a,novita,p,images/sneaker.jpg,,5", "b,byteplus,p,images/watch.jpg,,5")
    outcome = go(client, path)
    assert outcome.batch_id is not None and outcome.warnings == []


def test_no_worker_up_is_a_warning_only(client: Client, store: JobStore, folder: Path) -> None:
    path = manifest(folder, "a,byteplus,p,images/sneaker.jpg,,5")
    outcome = go(client, path)
    assert outcome.batch_id is not None
    assert outcome.warnings == ["no worker is running: the batch waits until one starts "
                                "(with GENBATCH_BYTEPLUS_API_KEY)"]


def test_a_dry_run_reports_a_missing_key_as_a_warning(client: Client, store: JobStore,
                                                      folder: Path) -> None:
    worker(store, "novita")
    path = manifest(folder, "a,byteplus,p,images/sneaker.jpg,,5")
    outcome = go(client, path, dry_run=True)
    [warning] = outcome.warnings
    assert warning.startswith("would be refused: no running worker holds a key for byteplus")
    assert nothing_written(store)


# -- a budget that fits no row -------------------------------------------------------------
def test_a_budget_that_fits_no_row_is_refused(client: Client, store: JobStore,
                                              folder: Path) -> None:
    path = manifest(folder, "a,novita,p,images/sneaker.jpg,480p,5",
                    "b,novita,p,images/watch.jpg,480p,4")
    exc = rejected(client, path, budget_usd=0.01)
    [error] = exc.errors
    assert "--budget $0.01 fits no row: the first row (line 2, novita " in str(error)
    assert "is estimated at $" in str(error)
    assert "nothing was submitted" in str(exc) and "--skip-invalid" not in str(exc)
    assert nothing_written(store)
    dry = go(client, path, dry_run=True, budget_usd=0.01)
    assert any(w.startswith("would be refused: --budget $0.01 fits no row")
               for w in dry.warnings)
    fits = go(client, path, budget_usd=100.0)
    assert fits.batch_id is not None


# -- rows that cannot fit the fallback -----------------------------------------------------
def test_rows_that_cannot_fail_over_are_warned_about(client: Client, store: JobStore,
                                                     folder: Path) -> None:
    # The fallback is WaveSpeed's 720p endpoint: 480p rows cannot fail over to it
    fallback = "wavespeed:bytedance/seedance-v1-pro-i2v-720p"
    path = manifest(folder, "a,novita,p,images/sneaker.jpg,480p,5",
                    "b,novita,p,https://example.com/a.jpg,720p,5",
                    "c,novita,p,images/watch.jpg,480p,5")
    for dry_run in (True, False):
        outcome = go(client, path, dry_run=dry_run, fallback=fallback)
        [warning] = outcome.warnings[1:]  # the first says no worker is running
        assert warning.startswith(f"2 row(s) cannot fail over to {fallback} (resolution: ")
        assert warning.endswith("lines 2, 4; they run on their own provider only")
    assert outcome.batch_id is not None and outcome.valid == 3


def test_a_fallback_no_worker_holds_a_key_for_is_a_warning(client: Client, store: JobStore,
                                                          folder: Path) -> None:
    worker(store, "novita")
    path = manifest(folder, "a,novita,p,https://example.com/a.jpg,720p,5")
    outcome = go(client, path, fallback=f"byteplus:{MODEL}")
    assert outcome.batch_id is not None
    assert outcome.warnings == ["no running worker holds a key for byteplus (--fallback): "
                                "set GENBATCH_BYTEPLUS_API_KEY on a worker, or items cannot "
                                "fail over to it"]
