"""A pipeline step: submit a manifest kept in S3, wait for it, hand the videos on.

    python examples/pipeline.py s3://bucket/in/manifest.csv s3://bucket/run-42 uris.txt

Settings come from the environment as for the CLI (GENBATCH_REDIS_URL, GENBATCH_S3_*,
provider keys on the workers; AWS credentials from boto3's usual chain). The videos and
the output manifests land under the output prefix; the URIs of the videos are written one
per line to the last argument, for the next step. Exit code: 0 every row succeeded, 1 some
did not (their rows are in errors.jsonl, next to results.jsonl), 2 a mistake, 3 the
batch did not finish (its budget stopped it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import genbatch
from genbatch.errors import GenbatchError


def show(info: genbatch.BatchInfo) -> None:
    print(f"{info.id}: {info.done}/{info.total} done, {info.failed} failed", flush=True)


def run(manifest: str, output: str, uris: Path) -> int:
    client = genbatch.Client()
    batch = client.submit(manifest, output=output)
    print(f"submitted {batch.id}: {batch.submitted.valid if batch.submitted else '?'} rows")
    info = batch.wait(on_progress=show)
    with uris.open("w", encoding="utf-8") as out:
        for row in batch.results():
            out.write(f"{row.output_uri}\n")
    for bad in batch.errors():
        print(f"line {bad.line} ({bad.custom_id}): {bad.status}: {bad.error_message}")
    print(f"results: {info.results_jsonl}")
    return info.exit_code


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return run(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
    except GenbatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
