"""Variants end to end: 2 products x 3 ratios x 2 seeds through a real Redis, worker and
scheduler against the simulator give 12 items with stable ids, each result carrying its
variant's values (and the seed the provider reports is the variant's)."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import genbatch
from genbatch.demo import SAMPLES
from genbatch.simulator import SimProfile
from tests.integration.cluster import Cluster, running_cluster

pytestmark = pytest.mark.integration
PRODUCTS = {"sneaker": "images/sneaker.jpg", "watch": "images/watch.jpg"}
RATIOS = ["9:16", "1:1", "16:9"]
SEEDS = [11, 12]


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    profile = SimProfile.model_validate({"time_factor": 50.0, "latency_mean_s": 20.0,
                                         "latency_sigma": 0.3, "seed": 3})
    with running_cluster(redis_url, tmp_path, profile) as c:
        yield c


def write_manifest(folder: Path) -> Path:
    """One row per product; BytePlus reports the seed it was given, so the results show
    which seed each variant really ran with."""
    shutil.copytree(SAMPLES / "images", folder / "images", dirs_exist_ok=True)
    path = folder / "ads.jsonl"
    path.write_text("".join(json.dumps({
        "custom_id": f"ad-{name}", "provider": "byteplus", "image": image,
        "prompt": "Slow dolly-in on the {product}, framed {ratio}", "vars": {"product": name},
        "resolution": "480p", "duration": 5,
        "variants": {"seed": SEEDS, "ratio": RATIOS}}) + "\n"
        for name, image in PRODUCTS.items()))
    return path


def test_two_products_three_ratios_two_seeds_give_twelve_items_with_stable_ids(
        cluster: Cluster, tmp_path: Path) -> None:
    client = genbatch.Client(cluster.settings)
    manifest = write_manifest(tmp_path / "in")
    batch = client.submit(manifest, model="seedance-v1.5-pro-i2v")
    assert batch.submitted is not None
    assert (batch.submitted.manifest_rows, batch.submitted.valid) == (2, 12)
    info = batch.wait(timeout=240)
    assert (info.total, info.succeeded, info.exit_code) == (12, 12, 0)

    results = list(batch.results())
    expected = [(f"ad-{name}~{r.replace(':', 'x')}-s{s}", {"ratio": r, "seed": s})
                for name, r, s in itertools.product(PRODUCTS, RATIOS, SEEDS)]
    assert sorted((row.custom_id, row.variant) for row in results) == sorted(expected)
    for row in results:
        assert row.variant is not None and row.seed == row.variant["seed"]
        assert row.output_uri and row.output_uri.endswith(f"/{row.custom_id}.mp4")
        assert Path(row.output_uri.removeprefix("file://")).is_file()
    written = cluster.storage.get_bytes(f"{batch.id}/results.jsonl").decode().splitlines()
    assert sorted(json.loads(line)["variant"]["ratio"] for line in written) == sorted(RATIOS * 4)

    # The same manifest again finds the same 12 items: nothing new, nothing replaced.
    again = client.resume(manifest, batch.id, model="seedance-v1.5-pro-i2v")
    assert (again.added, again.replaced, again.kept) == (0, 0, 12)
