"""Looking at batches: `status`, `watch` and `results`, and the watch `submit --wait` ends
with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from genbatch.cli.shared import BatchArg, JsonOpt, emit, err, exit_with, out
from genbatch.client import Client
from genbatch.client.handle import BatchHandle
from genbatch.client.rows import BatchInfo
from genbatch.records import Batch

# A batch's output manifests (chains.jsonl with submit --join-chains).
OUTPUT_FIELDS = ("results_jsonl", "results_csv", "errors_jsonl", "chains_jsonl")


def status(
    batch: Annotated[str | None, typer.Argument(help="batch id; omit to list batches")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one batch in detail (counts, cost, options, what it waits on, its accounts,
    its errors, its outputs), or the most recent batches; first, on stderr, the Redis in
    use (with GENBATCH_REDIS_SENTINELS, the primary they name now)."""
    from genbatch.console.detail import batch_detail
    from genbatch.console.views import batches_table

    client = Client()
    records = [client.record(batch)] if batch else client.records()
    if not as_json:  # JSON output stays one document
        err.print(f"redis: {client.redis_in_use()}", highlight=False)
    if as_json:
        summaries = [BatchInfo.of(b, client.store.batches.served_by(b.id) if batch else None
                                  ).model_dump(mode="json") for b in records]
        print(json.dumps(summaries[0] if batch else summaries, indent=2))
    elif batch:
        record = records[0]
        out.print(batch_detail(record, client.diagnose(record), client.errors(record),
                               client.store.batches.served_by(record.id)))
    else:
        out.print(batches_table(records, width=out.width))


def watch(batch: BatchArg, as_json: JsonOpt = False) -> None:
    """Live progress of a batch (counts and ETA) until it finishes (exit 0: every item
    succeeded, 1: some did not, 3: stopped by its budget); --json: a status object per
    line whenever it changes."""
    client = Client()
    exit_with(watch_json(client.batch(batch)) if as_json else watch_until_done(client, batch))


def watch_until_done(client: Client, batch_id: str, summary: bool = False) -> int:
    """Show the batch's progress until it finishes; then say so if its budget stopped it,
    and how to go on. With `summary`, end as the demo does: the results and their paths.
    Returns the exit code its end calls for."""
    from genbatch.console.views import results_table, watch_batch

    try:
        batch = watch_batch(client.store, batch_id, err)
    except KeyboardInterrupt:  # only the watching stops: the batch is in Redis, not here
        err.print(f"\nstopped watching; batch {batch_id} keeps running (`genbatch watch "
                  f"{batch_id}` to follow it again, `genbatch cancel {batch_id}` to stop it)",
                  highlight=False)
        return 130
    stop = client.budget_stop(batch)
    if stop is not None:
        err.print(stop, highlight=False)
    if summary:
        out.print(results_table(list(client.rows(batch_id))))
        print_outputs(client.record(batch_id))
    return BatchInfo.of(batch).exit_code


def watch_json(handle: BatchHandle) -> int:
    """A status object per line until the batch settles; returns its exit code."""
    return handle.wait(on_progress=lambda info: emit(info.model_dump(mode="json"))).exit_code


def print_outputs(batch: Batch) -> None:
    """Where the batch's output manifests are, those written so far."""
    for name in OUTPUT_FIELDS:
        if batch.get(name):
            out.print(f"{name.replace('_', '.')}: {batch[name]}", highlight=False)


def results(
    batch: BatchArg,
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="write all rows as JSONL to this file")
                      ] = None,
    failed: Annotated[bool, typer.Option(
        "--failed", help="only the items that did not succeed")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="every row as JSON, one object per line, on stdout")] = False,
) -> None:
    """Results of a batch: a table, or every row (results and errors) as JSONL to a file."""
    from genbatch.console.views import results_table

    client = Client()
    if output is not None:
        written = client.write_results(batch, output, failed_only=failed)
        err.print(f"wrote {written} rows to {output}")
        return
    if as_json:
        for row in client.rows(batch, failed_only=failed):
            emit(row)
        return
    record = client.record(batch)
    out.print(results_table(list(client.rows(batch, failed_only=failed))))
    print_outputs(record)
