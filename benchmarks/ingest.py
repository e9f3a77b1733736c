"""Ingest benchmark: CSV and JSONL manifests of 10k and 100k rows into a private Redis.

    .venv/bin/python benchmarks/ingest.py [--sizes 10000,100000] [--repeat 3] [--distinct]

Each case runs `ingest_manifest` (validate, persist, queue) in a fresh subprocess, so the
peak RSS (`ru_maxrss`) is the producer's alone. Redis bytes per item is the change in
INFO `used_memory` over the case divided by its rows (the database is flushed between
runs), measured after the batch is committed, so the temporary custom_id hash is gone.
rows/CPU-s is rows per second of the producer's own CPU time (user + sys), which a busy
machine disturbs less than wall time; Redis µs/row is the Redis server's CPU time (INFO
cpu) per row, on the same cores. Each case runs `--repeat` times and the table shows the
median run (by rows/s): other work on a shared 2-core machine moves single runs by ±25 %.
Rows mix local sample images (copied once each into storage) and image URLs. With
`--distinct`, every row names a local image of its own instead (small 300x300 PNGs made
beside the manifest, each different), so each is probed and copied into storage: the peak
RSS then shows whether the producer's caches stay bounded.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from PIL import Image

from genbatch.demo import SAMPLES

ROOT = Path(__file__).resolve().parent.parent
IMAGES = sorted((SAMPLES / "images").iterdir())
PROVIDER, MODEL = "novita", "seedance-v1.5-pro-i2v"
COLUMNS = ["custom_id", "prompt", "image", "resolution", "ratio", "duration", "seed",
           "generate_audio"]


def make_row(i: int) -> dict[str, object]:
    image = (str(IMAGES[i % len(IMAGES)]) if i % 2 else
             f"https://cdn.example.com/products/{i % 997}/hero.png")
    return {"custom_id": f"sku-{i:07d}", "prompt": f"Slow dolly-in on product {i}, soft light",
            "image": image, "resolution": "720p" if i % 3 else "480p", "ratio": "16:9",
            "duration": 5, "seed": i, "generate_audio": bool(i % 2)}


def distinct_png(png: bytes, n: int) -> bytes:
    """`png` with a text chunk naming `n` after its header: a different file, same pixels."""
    body = b"n\x00" + str(n).encode()
    text = struct.pack(">I", len(body)) + b"tEXt" + body + \
        struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return png[:33] + text + png[33:]


def write_images(folder: Path, n: int) -> None:
    """images/i<k>.png for k in 1..n, each a distinct small PNG."""
    (folder / "images").mkdir(exist_ok=True)
    out = io.BytesIO()
    Image.new("L", (300, 300), 128).save(out, "PNG")
    for i in range(1, n + 1):
        (folder / "images" / f"i{i}.png").write_bytes(distinct_png(out.getvalue(), i))


def write_manifest(folder: Path, fmt: str, n: int, distinct: bool = False) -> Path:
    path = folder / f"manifest-{n}.{fmt}"
    if distinct:
        write_images(folder, n)
    with path.open("w", encoding="utf-8", newline="") as fh:
        if fmt == "csv":
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            for i in range(1, n + 1):
                row = make_row(i)
                if distinct:
                    row["image"] = f"images/i{i}.png"
                w.writerow([str(row[c]).lower() if isinstance(row[c], bool) else row[c]
                            for c in COLUMNS])
        else:
            for i in range(1, n + 1):
                fh.write(json.dumps(make_row(i)) + "\n")
    return path


def child(manifest: str, redis_url: str, storage_url: str) -> None:
    """One ingest in this (fresh) process; prints a JSON line of what it measured."""
    from genbatch.producer.ingest import ingest_manifest
    from genbatch.storage import open_storage
    from genbatch.store import JobStore

    store = JobStore.from_url(os.environ["GENBATCH_REDIS_URL"] if redis_url == "env"
                              else redis_url)
    storage = open_storage(storage_url)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage0.ru_utime + usage0.ru_stime
    start = time.perf_counter()
    result = ingest_manifest(Path(manifest), store=store, storage=storage,
                             provider=PROVIDER, model=MODEL, input_roots=(SAMPLES,))
    elapsed = time.perf_counter() - start
    if result.invalid or result.valid != result.rows:
        raise SystemExit(f"bad rows: {result.errors[:3]}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"rows": result.rows, "seconds": elapsed, "rss_kb": usage.ru_maxrss,
                      "cpu": usage.ru_utime + usage.ru_stime - cpu0}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--distinct", action="store_true",
                        help="CSV only, a distinct local image on every row")
    parser.add_argument("--fsync", default="always",
                        help="Redis appendfsync modes to measure, comma-separated "
                        "(always,everysec: the cost of durable submit records side by side)")
    parser.add_argument("--child", nargs=3, metavar=("MANIFEST", "REDIS", "STORAGE"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    sys.path.insert(0, str(ROOT))
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for fsync in args.fsync.split(","):
        with tempfile.TemporaryDirectory(prefix="genbatch-bench-") as tmp:
            rows += measure(Path(tmp), sizes, args.repeat, args.distinct, fsync)
    print(f"{'fsync':<10}{'format':<7}{'rows':>9}{'rows/s':>10}{'seconds':>9}{'rows/CPU-s':>12}"
          f"{'Redis µs/row':>14}{'peak RSS MB':>13}{'Redis B/item':>14}")
    for fsync, fmt, n, rate, rss, per_item, secs, per_cpu, redis_us in rows:
        print(f"{fsync:<10}{fmt:<7}{n:>9,}{rate:>10,.0f}{secs:>9.2f}{per_cpu:>12,.0f}"
              f"{redis_us:>14.1f}{rss:>13.1f}{per_item:>14,.0f}")


def measure(folder: Path, sizes: list[int], repeat: int, distinct: bool,
            fsync: str) -> list[tuple[Any, ...]]:
    """Each manifest ingested `repeat` times into a Redis fsyncing its AOF `fsync`; the
    median run of each."""
    from genbatch.demo.redis_server import start_redis
    from genbatch.store import JobStore

    rows: list[tuple[Any, ...]] = []
    server = start_redis(folder / "redis", fsync=fsync)  # AOF on, as deployed
    try:
        r = JobStore.from_url(server.url).debug.client
        for fmt in ("csv",) if distinct else ("csv", "jsonl"):
            for n in sizes:
                manifest = write_manifest(folder, fmt, n, distinct)
                runs = [one_run(r, folder, manifest, server.url, n, fsync, fmt)
                        for _ in range(repeat)]
                runs.sort(key=lambda run: run[3])
                rows.append(runs[len(runs) // 2])
                manifest.unlink()
    finally:
        server.stop()
    return rows


def one_run(r: Any, folder: Path, manifest: Path, url: str, n: int, fsync: str,
            fmt: str) -> tuple[Any, ...]:
    """One producer process ingesting `manifest` into the flushed Redis at `url`."""
    r.flushdb()
    before = int(r.info("memory")["used_memory"])
    redis_cpu = _cpu(r.info("cpu"))
    out = subprocess.run(  # the URL (with its password) in the environment
        [sys.executable, __file__, "--child", str(manifest), "env", str(folder / "storage")],
        check=True, capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "GENBATCH_REDIS_URL": url},
    ).stdout
    m = json.loads(out.strip().splitlines()[-1])
    redis_us = (_cpu(r.info("cpu")) - redis_cpu) / n * 1e6
    after = int(r.info("memory")["used_memory"])
    return (fsync, fmt, n, m["rows"] / m["seconds"], m["rss_kb"] / 1024, (after - before) / n,
            m["seconds"], m["rows"] / m["cpu"], redis_us)


def _cpu(info: dict[str, float]) -> float:
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


if __name__ == "__main__":
    main()
