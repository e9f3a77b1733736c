"""The budget cap on the real set-up: Redis, simulator, worker and scheduler processes, and
the CLI (`status`, `retry --budget`, `submit --dry-run --budget`) as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TypedDict

import pytest

from genbatch.producer.ingest import ingest_manifest
from genbatch.producer.options import BatchOptions
from genbatch.simulator import SimProfile, running_simulator
from genbatch.worker.steps import finalize_batch
from tests.integration.cluster import Cluster
from tests.integration.test_batch_ops import ops_runtime
from tests.integration.test_pipeline import mixed_manifest, read_jsonl

pytestmark = pytest.mark.integration
N, K = 7, 3  # the first budget covers K of N items


class Target(TypedDict):
    """The provider and model keyword arguments of `ingest_manifest`."""

    provider: str
    model: str


def genbatch(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "genbatch", *args],
                          env={**c.env, "COLUMNS": "250"}, cwd=c.workdir,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=120, check=False)


def test_budget_stops_dispatch_and_a_raised_budget_completes_the_batch(
        redis_url: str, tmp_path: Path) -> None:
    # HighwayAPI prices per second and reports no usage: actual cost = the estimate.
    profile = SimProfile(time_factor=50.0, latency_mean_s=10.0, seed=21)
    with running_simulator(profile) as sim_url:
        c = Cluster(redis_url, sim_url, tmp_path)
        mixed_manifest(tmp_path, sim_url, 1)  # copies the sample images
        manifest = tmp_path / "budget.jsonl"
        manifest.write_text("".join(json.dumps(
            {"custom_id": f"r{i}", "prompt": "p", "image": "images/sneaker.jpg",
             "resolution": "480p", "duration": 5}) + "\n" for i in range(N)))
        kw: Target = {"provider": "highwayapi", "model": "seedance-v1.5-pro-i2v"}
        est = ingest_manifest(manifest, store=None, storage=None, dry_run=True, **kw).est_cost
        each = est / N
        assert each > 0
        budget = each * K + each / 2

        dry = genbatch(c, "submit", str(manifest), "--provider", "highwayapi",
                       "--dry-run", "--budget", f"{budget:.6f}")
        assert dry.returncode == 0, dry.stderr
        assert f"the first {K} of {N} rows fit" in dry.stdout

        c.start_worker()
        c.start_scheduler()
        try:
            batch_id = str(c.submit(manifest, options=BatchOptions.build(budget_usd=budget),
                                    **kw).batch_id)
            c.wait_until(lambda: c.store.batches.get(batch_id)["succeeded"] == str(K),
                         what=f"{K} items succeeded")
            batch = c.store.batches.get(batch_id)
            assert (batch["pending"], batch["in_flight"], batch["downloading"]) == \
                (str(N - K), "0", "0")
            assert batch["status"] == "in_progress"  # not complete: it must not finalize
            assert finalize_batch(ops_runtime(c), batch_id) == "skipped"

            shown = genbatch(c, "status", batch_id, "--json")
            assert shown.returncode == 0, shown.stderr
            summary = json.loads(shown.stdout)
            assert summary["status"] == "budget_exhausted"
            money = summary["budget"]
            assert money["exhausted"] is True
            assert money["budget_usd"] == pytest.approx(budget)
            assert money["spent_usd"] == pytest.approx(each * K, abs=1e-5)
            assert money["spent_usd"] <= budget
            assert money["spent_estimate_usd"] == pytest.approx(each * K, abs=1e-5)
            assert money["reserved_usd"] == 0
            table = genbatch(c, "status")
            row = next(line for line in table.stdout.splitlines() if batch_id in line)
            assert "budget_exhausted" in row
            assert f"{each * K:.2f} ({each * K:.2f}) / {budget:.2f}" in row
            assert c.sim_stats()["submits"] == K
            watched = genbatch(c, "watch", batch_id)  # returns: nothing left running
            assert watched.returncode == 3, watched.stderr  # not finished: budget
            assert "stopped at its budget" in watched.stderr

            too_low = genbatch(c, "retry", batch_id, "--budget", f"{each:.6f}")
            assert too_low.returncode == 2
            assert "below what batch" in too_low.stderr

            raised = genbatch(c, "retry", batch_id, "--budget", f"{each * N + 0.01:.6f}")
            assert raised.returncode == 0, raised.stderr
            assert f"{N - K} pending items may dispatch again" in raised.stdout

            batch = c.wait_batch(batch_id)
            assert batch["succeeded"] == str(N)
            assert "budget_exhausted" not in batch
            assert c.sim_stats()["submits"] == N  # nothing paid twice
            assert int(batch["spent_micro"]) == pytest.approx(each * N * 1e6, abs=N)
            assert batch["reserved_micro"] == "0"
            assert len(read_jsonl(batch["results_jsonl"])) == N
        finally:
            c.stop_all()
