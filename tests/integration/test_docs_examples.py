"""The "Use from Python" example of docs/python-api.md, run as it is printed, against a real
cluster."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from genbatch.simulator import SimProfile
from tests.integration.cluster import Cluster, running_cluster
from tests.integration.test_python_api import write_manifest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def docs_block(page: str, section: str, language: str = "python") -> str:
    """The first ```language block under the heading `## section` of docs/`page`."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(rf"```{language}\n(.*?)```", body, re.DOTALL)
    assert found, f"no {language} block under {section}"
    return found.group(1)


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    profile = SimProfile.model_validate({"time_factor": 50.0, "latency_mean_s": 20.0,
                                         "latency_sigma": 0.3, "seed": 11})
    with running_cluster(redis_url, tmp_path, profile) as c:
        yield c


def test_use_from_python_runs_as_printed(cluster: Cluster, tmp_path: Path) -> None:
    folder = tmp_path / "project"
    write_manifest(folder, [("novita", "images/sneaker.jpg"), ("novita", "images/bottle.png")])
    ran = subprocess.run([sys.executable, "-c", docs_block("python-api.md", "Use from Python")],
                         env={**cluster.env, "PYTHONPATH": str(ROOT)}, cwd=folder,
                         capture_output=True, text=True, timeout=300, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = ran.stdout.splitlines()
    assert out[0].startswith("batch ") and out[0].endswith(" with 2 rows")
    assert "2/2 done" in out
    assert sum(line.startswith("clip-") for line in out) == 2
    assert out[-1].startswith("results.jsonl: file://")
