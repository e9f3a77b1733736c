"""Reviewing a batch's videos: `review` (keep / reject), `redo` (generate the rejected
again) and `export` (copy the kept ones out with a manifest)."""

from __future__ import annotations

from typing import Annotated

import typer

from genbatch.cli.shared import BatchArg, JsonOpt, emit, out
from genbatch.client import Client

IdsOpt = Annotated[list[str] | None, typer.Option(
    metavar="ID", help="custom_id of a succeeded video (repeat the option, or join ids "
    "with commas)", show_default=False)]


def review(batch: BatchArg, keep: IdsOpt = None, reject: IdsOpt = None,
           as_json: JsonOpt = False) -> None:
    """Keep or reject succeeded videos (what the review page's buttons do); a finished
    batch's output manifests are written again with each item's `review`."""
    report = Client().review(batch, keep or [], reject or [])
    if as_json:
        emit({"batch_id": batch, "kept": report.kept, "rejected": report.rejected,
              "counts": report.counts})
        return
    c = report.counts
    out.print(f"batch {batch}: {len(report.kept)} kept, {len(report.rejected)} rejected now; "
              f"{c['kept']} kept, {c['rejected']} rejected, {c['not_reviewed']} not reviewed "
              "in all", highlight=False)


def redo(batch: BatchArg, as_json: JsonOpt = False) -> None:
    """Generate the rejected videos again with a new seed, in the same batch: each is a new
    attempt of its item (paid once, within the batch's budget), its earlier take kept in
    its history and its review reset."""
    report = Client().redo(batch)
    if as_json:
        emit({"batch_id": batch, "redone": report.redone, "skipped": report.skipped,
              "estimated_cost_usd": round(report.estimate_usd, 6)})
        return
    if not report.redone:
        out.print(f"batch {batch}: no rejected video to redo", highlight=False)
    else:
        out.print(f"batch {batch}: {len(report.redone)} rejected videos queued again with a "
                  f"new seed (about ${report.estimate_usd:.2f}); `genbatch watch {batch}` "
                  "follows them", highlight=False)
    if report.skipped:
        out.print(f"{len(report.skipped)} rejected items are no longer succeeded and were left "
                  f"alone: {', '.join(report.skipped[:5])}", highlight=False)


def export(
    batch: BatchArg,
    kept: Annotated[str, typer.Option(
        "--kept", metavar="DEST", help="where the kept videos go: a new folder, "
        "s3://bucket/prefix or a .zip file", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Copy a batch's kept videos, with a manifest.jsonl of them, to a folder, S3 or a zip."""
    report = Client().export_kept(batch, kept)
    if as_json:
        emit({"batch_id": batch, "dest": report.dest, "videos": report.videos,
              "bytes": report.bytes})
        return
    out.print(f"batch {batch}: {report.videos} kept videos ({report.bytes:,} bytes) and "
              f"manifest.jsonl written to {report.dest}", highlight=False)
