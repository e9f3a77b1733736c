"""Chains through the real set-up: three 3-shot chains in one manifest, on Novita (the last
frame decoded from the stored video), BytePlus (the provider's `last_frame_url`) and
HighwayAPI (whose first shot fails). The simulator gives every task a video of its own, so
the request log shows which frame each shot was started from."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import av
import httpx
import pytest
from PIL import Image, ImageChops

from genbatch.frames import last_frame, poster
from genbatch.producer.options import BatchOptions
from genbatch.simulator import SimProfile
from genbatch.worker.control import retry_batch
from tests.integration.cluster import running_cluster
from tests.integration.test_batch_ops import ops_runtime
from tests.integration.test_pipeline import mixed_manifest, read_jsonl

pytestmark = pytest.mark.integration
MODEL = "seedance-v1.5-pro-i2v"
CHAINS = {"n": "novita", "b": "byteplus", "h": "highwayapi"}


def _manifest(folder: Path, sim_url: str) -> Path:
    mixed_manifest(folder, sim_url, 1)  # copies the sample images
    rows = []
    for prefix, provider in CHAINS.items():
        for shot in (1, 2, 3):
            image = "images/sneaker.jpg" if shot == 1 else f"@{prefix}{shot - 1}"
            rows.append({"custom_id": f"{prefix}{shot}", "provider": provider, "model": MODEL,
                         "prompt": f"{prefix} shot {shot}", "image": image,
                         "resolution": "480p", "duration": 5})
    rows.insert(1, rows.pop(5))  # b3 before its parents: a chain may point forwards
    path = folder / "chains.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _submitted_images(log: list[dict[str, Any]]) -> dict[str, Image.Image]:
    """prompt -> the first-frame image each submit carried, decoded."""
    found = {}
    for entry in log:
        if entry["method"] != "POST" or not entry["body"].startswith("{"):
            continue
        body = json.loads(entry["body"])
        if "content" in body:  # BytePlus
            prompt = body["content"][0]["text"]
            image = next(c["image_url"]["url"] for c in body["content"]
                         if c.get("role") == "first_frame")
        else:
            prompt, image = body.get("prompt"), body.get("image")
        if isinstance(image, str) and image.startswith("data:image/"):
            data = base64.b64decode(image.partition(",")[2])
            found[prompt] = Image.open(io.BytesIO(data)).convert("RGB")
    return found


def _png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _same(a: Image.Image, b: Image.Image) -> bool:
    if a.size != b.size:
        return False
    bands: Any = ImageChops.difference(a, b).getextrema()  # one (low, high) per band
    return bool(max(high for _, high in bands) <= 2)


def _local(uri: str) -> Path:
    return Path(urlparse(uri).path)


def test_three_shot_chains_start_on_the_last_frame_and_join_into_one_video(
        redis_url: str, tmp_path: Path) -> None:
    profile = SimProfile(time_factor=50.0, latency_mean_s=10.0, seed=3, distinct_videos=True,
                         request_log_body_chars=500_000,
                         keys={"test-highwayapi-key": {"p_task_fail": 1.0}})
    with running_cluster(redis_url, tmp_path, profile) as c:
        manifest = _manifest(tmp_path, c.sim_url)
        submitted = c.submit(manifest, provider=None, model=None,
                             options=BatchOptions.build(join_chains=True))
        assert (submitted.valid, submitted.invalid, submitted.chained) == (9, 0, 6)
        batch_id = str(submitted.batch_id)

        batch = c.wait_batch(batch_id)

        assert (batch["succeeded"], batch["failed"], batch["parent_failed"]) == ("6", "1", "2")
        results = {r["custom_id"]: r for r in read_jsonl(batch["results_jsonl"])}
        errors = {e["custom_id"]: e for e in read_jsonl(batch["errors_jsonl"])}
        stats = c.sim_stats()
        sent = _submitted_images(stats["request_log"])
        for prefix in ("n", "b"):
            for shot in (2, 3):
                parent, child = results[f"{prefix}{shot - 1}"], results[f"{prefix}{shot}"]
                assert child["parent_custom_id"] == parent["custom_id"]
                video = _local(parent["output_uri"])
                frame = _png(last_frame(video))
                carried = sent[f"{prefix} shot {shot}"]
                assert _same(carried, frame)  # the parent's last frame, exactly
                assert not _same(carried, _png(poster(video, width=320)))  # not its first
                assert _same(_png(_local(child["input_frame"]).read_bytes()), frame)
            assert results[f"{prefix}1"]["parent_custom_id"] is None
        # BytePlus handed its last frames over: the parents asked, the frames were fetched.
        bp_submits = [json.loads(e["body"]) for e in stats["request_log"]
                      if e["method"] == "POST" and '"content"' in e["body"]]
        asked = {b["content"][0]["text"]: b.get("return_last_frame") for b in bp_submits}
        assert asked == {"b shot 1": True, "b shot 2": True, "b shot 3": None}
        assert sum(e["path"].startswith("/_sim/frames/") for e in stats["request_log"]) == 2

        # The failed chain: its first shot failed, the other two were never sent and land in
        # errors.jsonl as written, to be resubmitted with it.
        assert errors["h1"]["status"] == "failed"
        for shot in (2, 3):
            row = errors[f"h{shot}"]
            assert (row["status"], row["error_code"]) == ("parent_failed", "parent_failed")
            assert row["image"] == f"@h{shot - 1}"
        assert "h shot 2" not in sent and "h shot 3" not in sent

        chains = {line["chain"]: line for line in read_jsonl(batch["chains_jsonl"])}
        assert chains["h1"]["status"] == "incomplete" and chains["h1"]["path"] is None
        for root in ("n1", "b1"):
            line = chains[root]
            assert line["shots"] == [root, root[0] + "2", root[0] + "3"]
            assert (line["status"], line["reencoded"]) == ("joined", False)
            with av.open(str(_local(line["path"]))) as joined:
                pictures = [f.to_image() for f in joined.decode(video=0)]  # type: ignore[no-untyped-call]
            assert len(pictures) == line["frames"] == 3 * 24
            shots = [_local(results[s]["output_uri"]) for s in line["shots"]]
            assert _same(pictures[23].convert("RGB"), _png(last_frame(shots[0])))
            assert _same(pictures[-1].convert("RGB"), _png(last_frame(shots[2])))

        # Retried, the failed parent brings its two children back with it.
        httpx.put(f"{c.sim_url}/_sim/profile", timeout=10, json=profile.model_dump(
            mode="json") | {"keys": {}}).raise_for_status()
        report = retry_batch(ops_runtime(c), batch_id, ("failed",))
        assert (report.requeued, report.chained) == (1, 2)
        batch = c.wait_batch(batch_id)
        assert (batch["succeeded"], batch["parent_failed"]) == ("9", "0")
        chains = {line["chain"]: line for line in read_jsonl(batch["chains_jsonl"])}
        assert {root: line["status"] for root, line in chains.items()} == \
            {"n1": "joined", "b1": "joined", "h1": "joined"}
