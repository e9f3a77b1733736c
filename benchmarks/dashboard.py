"""The batch page, the items API and the review page on a 100k-item batch: how long each
request takes, against loading every item of the batch once (what a page that loaded all
would cost); then a poster decoded against one read back from storage.

    .venv/bin/python benchmarks/dashboard.py [--items 100000] [--runs 7]

A private Redis (AOF off: nothing here needs it) holds one batch of N items in realistic
shape (93 % succeeded, 4 % failed, 2 % pending, 1 % expired) and a full chart series; the
dashboard app answers in-process (Starlette's test client, no network). Every figure is
the median of `--runs` requests, measured in this one run; the last column is that median
divided by the time to read all N items (`store.items.of_batch`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from starlette.testclient import TestClient

from genbatch.config import Settings
from genbatch.console.dashboard import create_app
from genbatch.demo.redis_server import start_redis
from genbatch.models import Review
from genbatch.storage import LocalStorage
from genbatch.store import JobStore

BID = "bench-100k"
CHUNK = 1000


def state_of(i: int) -> str:
    r = i % 100
    return "failed" if r < 4 else "pending" if r < 6 else "expired" if r < 7 else "succeeded"


def record(i: int) -> dict[str, str]:
    state = state_of(i)
    rec = {"seq": str(i), "state": state, "provider": ("novita", "byteplus")[i % 2],
           "model": "seedance-v1.5-pro-i2v", "custom_id": f"shot-{i:06d}", "line": str(i + 1),
           "est_cost": "0.115", "attempts": "1", "polls": "2",
           "req": json.dumps({"prompt": f"product shot {i} on a marble table, slow pan",
                              "image": "https://cdn.example.com/in/sneaker.jpg",
                              "resolution": "720p", "duration": 5, "seed": i})}
    if state == "succeeded":
        rec.update(output_uri=f"file:///out/{BID}/shot-{i:06d}.mp4", sha256="0" * 64,
                   bytes="1843200", cost="0.115", finished_at=repr(time.time()))
    elif state in ("failed", "expired"):
        rec.update(error_code="TASK_STATUS_FAILED", error_message="the inference service "
                   "returned an error", finished_at=repr(time.time()))
    return rec


def fill(store: JobStore, n: int) -> None:
    store.ingest.create(BID, {"manifest": "/bench.csv", "provider": "novita"},
                        created_at=time.time() - 3600)
    for start in range(1, n + 1, CHUNK):
        store.ingest.add_items(BID, [record(i) for i in range(start, min(start + CHUNK, n + 1))])
    store.ingest.commit(BID, ["novita", "byteplus"])
    verdicts = [(i, Review.KEPT if i % 20 < 2 else Review.REJECTED)  # 10 % kept, 5 % rejected
                for i in range(1, n + 1) if state_of(i) == "succeeded" and i % 20 < 3]
    for verdict in (Review.KEPT, Review.REJECTED):
        store.reviews.mark(BID, [i for i, v in verdicts if v is verdict], verdict)
    t0 = time.time() - 3600
    for k in range(2000):  # an hour of samples: the series thins itself to its cap
        store.series.sample([BID], t0 + k * 1.8, 1.0)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gb-bench-dash-") as tmp:
        server = start_redis(Path(tmp) / "redis")
        try:
            run(server.url, Path(tmp), args.items, args.runs)
        finally:
            server.stop()


def run(url: str, tmp: Path, n: int, runs: int) -> None:
    store = JobStore.from_url(url)
    t = time.perf_counter()
    fill(store, n)
    print(f"batch of {n:,} items written in {time.perf_counter() - t:.1f} s; series: "
          f"{len(store.series.read(BID))} points, "
          f"{store.debug.client.memory_usage(f'gb:series:{BID}')} bytes in Redis")
    app = create_app(Settings(redis_url=url), store=store, storage=LocalStorage(tmp / "out"))
    full = median_ms(lambda: sum(1 for _ in store.items.of_batch(BID, n)), max(3, runs // 2))
    api = f"/api/batches/{BID}/items"
    cases = [
        ("batch page (HTML)", f"/batches/{BID}"),
        ("batch page (JSON, with series)", f"/api/batches/{BID}"),
        ("items: first page of 50", api),
        ("items: page of 50 after #50,000", f"{api}?after=50000"),
        ("items: last page (before the end)", f"{api}?before={n + 1}"),
        ("items: state=failed (4 %), 50", f"{api}?state=failed"),
        ("items: state=expired (1 %) after #90,000", f"{api}?state=expired&after=90000"),
        ("items: search custom_id 'shot-0999' (rare)", f"{api}?q=shot-0999&after=99000"),
        ("items: search with no match (one budget)", f"{api}?q=nothing-like-this"),
        ("items table (HTML), 50", f"/batches/{BID}/items"),
        ("review page (HTML), 60 videos", f"/batches/{BID}/gallery"),
        ("review page (HTML), 1,000 videos", f"/batches/{BID}/gallery?limit=1000"),
        ("review page: rejected (5 %), 60", f"/batches/{BID}/gallery?review=rejected"),
        ("review page: not reviewed, 60", f"/batches/{BID}/gallery?review=not_reviewed"),
    ]
    rows = []
    with TestClient(app) as client:
        for label, path in cases:
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
            shown = len(answer.json()["items"]) if path.startswith(api) else "-"
            ms = median_ms(lambda p=path: client.get(p), runs)  # type: ignore[misc]
            rows.append((label, shown, ms))
    print(f"\nloading all {n:,} items (items.of_batch): {full:,.0f} ms\n")
    print("| request | items shown | median ms | ÷ loading all |")
    print("|---|---|---|---|")
    for label, shown, ms in rows:
        print(f"| {label} | {shown} | {ms:,.1f} | {ms / full:.4f} |")
    posters(tmp, runs)


def posters(tmp: Path, runs: int) -> None:
    """A poster decoded from its video (a tile's first view) against the stored JPEG read
    back (every later view), on the simulator's sample video (64x64, 1 s: a real 720p
    video costs more to decode, not less)."""
    from genbatch.console.review import make_poster
    from genbatch.records import Item
    from genbatch.simulator import media

    storage = LocalStorage(tmp / "posters")
    storage.put_bytes("p/v.mp4", (media.ASSETS / "sample.mp4").read_bytes(), "video/mp4")
    item = Item({"batch": "p", "custom_id": "v", "seq": "1"})
    storage.put_bytes("p/posters/v.jpg", make_poster(storage, item), "image/jpeg")
    decode = median_ms(lambda: make_poster(storage, item), runs)
    stored = median_ms(lambda: storage.get_bytes("p/posters/v.jpg"), runs)
    print(f"\nposter: decoded {decode:.2f} ms, stored JPEG read {stored:.3f} ms "
          f"(decoding is {decode / stored:.0f}x the read a later view does)")


if __name__ == "__main__":
    main()
