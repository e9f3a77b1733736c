"""The Python API (`genbatch.Client`) on a real Redis: what the CLI commands call."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from genbatch import Client
from genbatch.client import submit_options
from genbatch.config import Settings
from genbatch.demo import SAMPLES
from genbatch.errors import GenbatchError
from genbatch.store import JobStore
from tests.dispatching import dispatch_items

DEMO = SAMPLES / "demo.csv"  # priced rows on novita, byteplus, highwayapi and fal
ROWS = len(DEMO.read_text(encoding="utf-8").splitlines()) - 1  # its header aside (22)


@pytest.fixture
def client(redis_url: str, tmp_storage: Path) -> Client:
    return Client(Settings(redis_url=redis_url, storage_url=str(tmp_storage)))


def test_a_dry_run_counts_and_estimates_and_writes_nothing(client: Client,
                                                           store: JobStore) -> None:
    outcome = client.estimate(DEMO, budget_usd=1.0)
    assert outcome.batch_id is None
    assert (outcome.rows, outcome.valid, outcome.invalid, outcome.unpriced) == (ROWS, ROWS, 0, 0)
    assert outcome.est_cost == pytest.approx(sum(c for _, c in outcome.by_model.values()))
    assert sum(n for n, _ in outcome.by_model.values()) == ROWS
    assert outcome.budget_usd == 1.0 and 0 < outcome.fit < ROWS and outcome.fit_cost <= 1.0
    assert store.batches.recent() == []


def test_a_dry_run_needs_no_redis(tmp_storage: Path) -> None:
    offline = Client(Settings(redis_url="redis://127.0.0.1:1/0", storage_url=str(tmp_storage)))
    assert offline.estimate(DEMO).valid == ROWS


def test_submit_writes_a_batch(client: Client, store: JobStore) -> None:
    handle = client.submit(DEMO)
    outcome = handle.submitted
    assert outcome is not None and outcome.batch_id == handle.id
    assert (outcome.valid, outcome.invalid) == (ROWS, 0) and outcome.est_cost > 0
    info = client.batch(handle.id).status()
    assert info.id == handle.id and info.total == info.pending == ROWS
    assert info.status == "in_progress" and not info.finished
    assert [b.id for b in client.batches()] == [handle.id]
    assert store.batches.get(handle.id)["status"] == "in_progress"


def test_resume_keeps_rows_that_are_still_running(client: Client) -> None:
    batch_id = client.submit(DEMO).id
    resumed = client.resume(DEMO, batch_id)
    assert (resumed.added, resumed.replaced, resumed.kept) == (0, 0, ROWS)
    assert client.record(batch_id).total == ROWS


@pytest.mark.parametrize("given", [{"tier": "flex"}, {"priority": "normal"},
                                   {"expires_after": 60}, {"notify_url": "ftp://x"},
                                   {"fallback": "byteplus:seedance-v1-pro-i2v"}])
def test_resume_refuses_batch_options(given: dict[str, object]) -> None:
    with pytest.raises(GenbatchError, match="--resume keeps the batch's own --priority"):
        submit_options(resume=True, **given)  # type: ignore[arg-type]


def test_resume_takes_a_budget() -> None:
    assert submit_options(resume=True, budget_usd=2.5).budget_usd == 2.5
    with pytest.raises(GenbatchError, match="--budget must be a positive amount"):
        submit_options(resume=True, budget_usd=0.0)


def test_notify_without_a_signing_secret_is_refused(redis_url: str, tmp_storage: Path,
                                                    store: JobStore) -> None:
    hook = "https://hooks.example.com/genbatch"
    unsigned = Client(Settings(redis_url=redis_url, storage_url=str(tmp_storage),
                               notify_secret=None))
    with pytest.raises(GenbatchError, match="--notify needs GENBATCH_NOTIFY_SECRET"):
        unsigned.estimate(DEMO, notify_url=hook)
    with pytest.raises(GenbatchError, match="--notify needs GENBATCH_NOTIFY_SECRET"):
        unsigned.submit(DEMO, notify_url=hook)
    assert store.batches.recent() == []
    signed = Client(Settings(redis_url=redis_url, storage_url=str(tmp_storage),
                             notify_secret="s3cret-signing-key"))
    assert signed.estimate(DEMO, notify_url=hook).valid == ROWS


def test_write_results_is_atomic_and_counts_rows(client: Client, tmp_path: Path) -> None:
    batch_id = client.submit(DEMO).id
    path = tmp_path / "results.jsonl"
    path.write_text("an older file\n")
    assert client.write_results(batch_id, path) == ROWS
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows == list(client.rows(batch_id))
    assert [r["status"] for r in rows] == ["pending"] * ROWS
    assert list(tmp_path.glob("*.part")) == []


def test_budget_stop_says_how_to_go_on(client: Client, store: JobStore) -> None:
    batch_id = client.submit(DEMO, budget_usd=1.0).id
    assert client.budget_stop(client.record(batch_id)) is None  # nothing dispatched yet
    assert dispatch_items(store, "novita", batch_id, 100, 100, 1e12)  # reserves until 1.0 is used
    batch = client.record(batch_id)
    message = client.budget_stop(batch)
    assert message is not None
    assert message.startswith(f"batch {batch_id} stopped at its budget ($1.00, spent $0.00): "
                              f"{batch['pending']} items pending")
    assert message.endswith(f"`genbatch retry {batch_id} --budget USD` continues it")
    assert Client.budget_stop({"id": "x", "status": "in_progress", "pending": "3"}) is None


def test_import_genbatch_leaves_the_client_for_first_use() -> None:
    code = ("import sys, genbatch, genbatch.simulator; loaded = 'genbatch.client' in sys.modules;"
            " genbatch.Client; print(loaded, 'genbatch.client' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert run.stdout.split() == ["False", "True"]


def test_results_to_a_folder_that_does_not_exist_is_one_clear_error(
        client: Client, tmp_path: Path) -> None:
    batch_id = client.submit(DEMO).id
    target = tmp_path / "no" / "such" / "x.jsonl"
    with pytest.raises(GenbatchError, match=r"^cannot write .*x\.jsonl: No such file"):
        client.write_results(batch_id, target)
    assert not (tmp_path / "no").exists()


def test_the_errors_a_caller_catches_are_importable_from_the_package() -> None:
    import genbatch
    from genbatch import errors

    for name in genbatch.ERRORS:
        assert getattr(genbatch, name) is getattr(errors, name)
        assert issubclass(getattr(genbatch, name), errors.GenbatchError)


def test_batch_wide_options_are_checked_once_before_the_manifest_is_read(
        client: Client, tmp_path: Path) -> None:
    with pytest.raises(GenbatchError, match=r"^--provider nosuchco: unknown provider; "
                                            r"choose one of novita, highwayapi, "):
        client.submit(DEMO, provider="nosuchco")
    with pytest.raises(GenbatchError, match=r"^--input-root .*nowhere: no such folder$"):
        client.submit(DEMO, input_roots=(tmp_path / "nowhere",))
    assert client.batches() == []


def test_skip_invalid_with_no_valid_row_submits_nothing_and_says_why(
        client: Client, tmp_path: Path) -> None:
    from genbatch.errors import ManifestRejected

    manifest = tmp_path / "bad.csv"
    manifest.write_text("custom_id,prompt,image,duration\na,p,https://x.test/a.png,99\n"
                        "b,p,https://x.test/b.png,98\n")
    with pytest.raises(ManifestRejected) as err:
        client.submit(manifest, provider="novita", skip_invalid=True)
    lines = [str(e) for e in err.value.errors]
    assert [e.line for e in err.value.errors[:2]] == [2, 3]  # each row's problem
    assert lines[-1].endswith("no valid row to submit (all 2 are invalid)")
    assert client.batches() == []


def test_an_idempotency_key_is_honoured_with_allow_duplicate_too(client: Client) -> None:
    first = client.submit(DEMO, idempotency_key="run-7", allow_duplicate=True)
    again = client.submit(DEMO, idempotency_key="run-7", allow_duplicate=True)

    assert again.id == first.id and again.submitted is not None
    assert again.submitted.duplicate_of == first.id
    assert [b.id for b in client.batches()] == [first.id]


def test_a_provider_no_row_uses_is_said_once(client: Client, tmp_path: Path) -> None:
    manifest = tmp_path / "own.csv"
    manifest.write_text("custom_id,provider,prompt,image\n"
                        "a,novita,p,https://cdn.example.com/a.png\n"
                        "b,novita,p,https://cdn.example.com/b.png\n")
    outcome = client.estimate(manifest, provider="byteplus")
    assert outcome.warnings.count(
        "--provider byteplus applies to no row: every row names its own provider") == 1
