"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from genbatch.simulator import SimProfile
from tests.integration.cluster import Cluster, running_cluster


@pytest.fixture
def s3_cluster(redis_url: str, tmp_path: Path, s3: str) -> Iterator[Cluster]:
    """A worker and the scheduler storing into a real S3 server (moto): the pipeline case."""
    profile = SimProfile.model_validate({"time_factor": 50.0, "latency_mean_s": 20.0,
                                         "latency_sigma": 0.3, "seed": 7})
    with running_cluster(redis_url, tmp_path, profile, storage_url="s3://pipeline-out/store",
                         s3_endpoint_url=s3, s3_region="us-east-1") as c:
        yield c
