"""`--json` and exit codes as a pipeline sees them, and the worked example in examples/,
against a real cluster (and a real S3 server for the example)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genbatch import providers
from genbatch.simulator import SimProfile
from tests.integration.cluster import Cluster, running_cluster
from tests.integration.test_python_api import FAILING_BYTEPLUS, upload_run, write_manifest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(redis_url, tmp_path, SimProfile.model_validate(FAILING_BYTEPLUS)) as c:
        yield c


def genbatch(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "genbatch", *args], env=c.env,
                          capture_output=True, text=True, timeout=300, check=False,
                          stdin=subprocess.DEVNULL, cwd=c.workdir)


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_every_command_speaks_json_and_exit_codes_say_how_it_ended(cluster: Cluster,
                                                                    tmp_path: Path) -> None:
    manifest = str(write_manifest(tmp_path / "in"))
    dry = genbatch(cluster, "submit", manifest, "--dry-run", "--json")
    [estimate] = lines(dry.stdout)
    assert dry.returncode == 0 and estimate["batch_id"] is None and estimate["dry_run"]
    assert (estimate["rows"], estimate["valid"], estimate["invalid"]) == (4, 4, 0)
    assert {m["provider"] for m in estimate["by_model"]} == {"novita", "byteplus",
                                                             "highwayapi", "wavespeed"}

    ran = genbatch(cluster, "submit", manifest, "--wait", "--json")
    first, *progress = lines(ran.stdout)
    assert ran.returncode == 1, ran.stderr  # finished, BytePlus's row failed
    batch_id = first["batch_id"]
    assert first["valid"] == 4 and not first["dry_run"] and first["skipped"] == []
    assert all(p["id"] == batch_id for p in progress)
    assert progress[-1]["finished"] and progress[-1]["status"] == "completed"
    assert (progress[-1]["succeeded"], progress[-1]["failed"]) == (3, 1)

    watched = genbatch(cluster, "watch", batch_id)
    assert watched.returncode == 1
    status = genbatch(cluster, "status", batch_id, "--json")
    assert json.loads(status.stdout)["results_jsonl"] == progress[-1]["results_jsonl"]
    rows = lines(genbatch(cluster, "results", batch_id, "--json").stdout)
    assert [r["custom_id"] for r in rows] == [f"clip-{i}" for i in range(4)]
    assert [r["status"] for r in rows] == ["succeeded", "failed", "succeeded", "succeeded"]
    failed = lines(genbatch(cluster, "results", batch_id, "--failed", "--json").stdout)
    assert [r["custom_id"] for r in failed] == ["clip-1"]

    [retried] = lines(genbatch(cluster, "retry", batch_id, "--json").stdout)
    assert retried == {"batch_id": batch_id, "states": ["failed", "expired"], "requeued": 1,
                       "invalid_rows": 0, "budget_usd": None, "continued": 0, "chained": 0}
    assert genbatch(cluster, "watch", batch_id, "--json").returncode == 1
    [cancelled] = lines(genbatch(cluster, "cancel", batch_id, "--json").stdout)
    assert cancelled["already"] == "completed"
    accounts = json.loads(genbatch(cluster, "accounts", "--json").stdout)
    assert [a["account"] for a in accounts["accounts"]] == list(providers.names())

    unknown = genbatch(cluster, "status", "nope", "--json")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "no batch 'nope'" in unknown.stderr


def test_a_batch_where_every_row_succeeds_exits_0(cluster: Cluster, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "in", [("novita", "images/sneaker.jpg")])
    ran = genbatch(cluster, "submit", str(manifest), "--wait")
    assert ran.returncode == 0, ran.stderr


def test_the_pipeline_example_runs_against_s3(s3_cluster: Cluster, s3: str,
                                              tmp_path: Path) -> None:
    manifest = upload_run(s3, tmp_path / "in")
    uris = tmp_path / "uris.txt"
    env = {**s3_cluster.env, "PYTHONPATH": str(ROOT)}
    ran = subprocess.run([sys.executable, str(ROOT / "examples" / "pipeline.py"), manifest,
                          "s3://pipeline-out/run-7", str(uris)], env=env, capture_output=True,
                         text=True, timeout=300, check=False, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert uris.read_text().split() == [f"s3://pipeline-out/run-7/clip-{i}.mp4"
                                        for i in range(3)]
    assert "results: s3://pipeline-out/run-7/results.jsonl" in ran.stdout
