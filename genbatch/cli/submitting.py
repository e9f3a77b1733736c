"""`genbatch submit`: a manifest becomes a new batch, a cost estimate (--dry-run), or more
rows for an existing batch (--resume)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypedDict

import typer
from rich.markup import escape

from genbatch.cli.inspecting import watch_json, watch_until_done
from genbatch.cli.shared import JsonOpt, emit, err, exit_with, out
from genbatch.client import DEFAULT_MODEL, Client, Roots, SubmitOptions, submit_options
from genbatch.client.as_json import resume_json, submit_json
from genbatch.client.outcomes import SubmitOutcome

ManifestArg = Annotated[str, typer.Argument(
    help="CSV (with header) or JSONL manifest: a path, file:///abs/path or s3://bucket/key")]


class Priority(StrEnum):
    high = "high"
    normal = "normal"
    low = "low"


class Tier(StrEnum):
    default = "default"
    flex = "flex"


# The options of `submit`, in the order its --help lists them.
ProviderOpt = Annotated[str | None, typer.Option(help="default provider for rows without one")]
ModelOpt = Annotated[str | None, typer.Option(help="default model for rows without one")]
SkipInvalidOpt = Annotated[bool, typer.Option(
    "--skip-invalid", help="submit the good rows; bad ones go to errors.jsonl")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="validate and estimate cost; submit nothing")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="watch until the batch finishes")]
PriorityOpt = Annotated[Priority | None, typer.Option(
    help="dispatch order: high before normal before low; round-robin within one "
         "[default: normal; low with --tier flex]", show_default=False)]
TierOpt = Annotated[Tier | None, typer.Option(
    help="service_tier for rows without one; flex = offline, half price, up to 72 h "
         "(Novita, HighwayAPI, BytePlus; refused on WaveSpeed)", show_default=False)]
ExpiresAfterOpt = Annotated[int | None, typer.Option(
    "--expires-after", metavar="SECONDS",
    help="execution_expires_after for rows without one (3600-259200; default the "
         "provider's, 172800 on BytePlus)", show_default=False)]
BudgetOpt = Annotated[float | None, typer.Option(
    metavar="USD", help="stop submitting once spent + reserved estimates would pass "
    "this (every row needs a known price); with --resume: the batch's new budget",
    show_default=False)]
NotifyOpt = Annotated[str | None, typer.Option(
    metavar="URL", help="POST a signed event here when the batch finishes",
    show_default=False)]
FallbackOpt = Annotated[str | None, typer.Option(
    metavar="PROVIDER:MODEL",
    help="resubmit an item that fails at its provider once to this provider and model",
    show_default=False)]
InputRootOpt = Annotated[list[str] | None, typer.Option(
    "--input-root", metavar="DIR|s3://BUCKET/PREFIX", help="a folder (or bucket prefix) "
    "input images may also come from, besides the manifest's own (repeatable; "
    "GENBATCH_INPUT_ROOTS adds more)", show_default=False)]
ResumeOpt = Annotated[str | None, typer.Option(
    "--resume", metavar="BATCH",
    help="apply to an existing batch: skip rows already succeeded or running (by "
         "custom_id), replace and requeue failed ones, add new ones")]
OutputOpt = Annotated[str | None, typer.Option(
    metavar="URL", help="the batch's output folder (s3://bucket/prefix, file:///path or a "
    "folder): videos and output manifests go there [default: GENBATCH_STORAGE_URL/"
    "<batch id>/]", show_default=False)]
JoinChainsOpt = Annotated[bool, typer.Option(
    "--join-chains", help="when the batch finishes, join each chain (rows whose image is "
    "@<custom_id>) whose shots all succeeded into chains/<root custom_id>.mp4, listed in "
    "chains.jsonl (no re-encode where the shots allow it)")]
AllowDuplicateOpt = Annotated[bool, typer.Option(
    "--allow-duplicate", help="submit even when this manifest, with these options, was "
    "submitted within GENBATCH_DUPLICATE_WINDOW_S")]
IdempotencyKeyOpt = Annotated[str | None, typer.Option(
    "--idempotency-key", metavar="KEY", help="a submit whose KEY was used before "
    "prints that batch and submits nothing (a retried pipeline step)", show_default=False)]


class RowDefaults(TypedDict):
    """How the manifest's rows are read, the same for a new, estimated or resumed batch."""

    provider: str | None
    model: str | None
    skip_invalid: bool
    input_roots: Roots


def submit(
    manifest: ManifestArg,
    provider: ProviderOpt = None,
    model: ModelOpt = DEFAULT_MODEL,
    skip_invalid: SkipInvalidOpt = False,
    dry_run: DryRunOpt = False,
    wait: WaitOpt = False,
    priority: PriorityOpt = None,
    tier: TierOpt = None,
    expires_after: ExpiresAfterOpt = None,
    budget: BudgetOpt = None,
    notify: NotifyOpt = None,
    fallback: FallbackOpt = None,
    input_root: InputRootOpt = None,
    resume: ResumeOpt = None,
    output: OutputOpt = None,
    join_chains: JoinChainsOpt = False,
    allow_duplicate: AllowDuplicateOpt = False,
    idempotency_key: IdempotencyKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate MANIFEST and enqueue it as a new batch; prints the batch id."""
    given: SubmitOptions = {
        "priority": priority.value if priority else None,
        "tier": tier.value if tier else None, "expires_after": expires_after,
        "budget_usd": budget, "notify_url": notify, "fallback": fallback, "output": output,
        "join_chains": join_chains}
    options = submit_options(resume=resume is not None, **given)
    rows: RowDefaults = {"provider": provider, "model": model, "skip_invalid": skip_invalid,
                         "input_roots": tuple(_root(r) for r in input_root or ())}
    client = Client()
    if resume is not None and not dry_run:
        code = resume_batch(client, manifest, resume, rows, options.budget_usd,
                            as_json=as_json, wait=wait)
    elif dry_run:
        code = estimate_batch(client, manifest, rows, given, as_json=as_json)
    else:
        code = new_batch(client, manifest, rows, given, allow_duplicate=allow_duplicate,
                         idempotency_key=idempotency_key, as_json=as_json, wait=wait)
    exit_with(code)


def new_batch(client: Client, manifest: str, rows: RowDefaults, given: SubmitOptions, *,
              allow_duplicate: bool, idempotency_key: str | None, as_json: bool,
              wait: bool) -> int:
    """Submit `manifest` as a new batch and print its id (or the batch an earlier submit
    with the same --idempotency-key made); returns the exit code."""
    handle = client.submit(manifest, allow_duplicate=allow_duplicate,
                           idempotency_key=idempotency_key, **rows, **given)
    assert handle.submitted is not None
    result = handle.submitted
    if as_json:
        emit(submit_json(result, dry_run=False))
        return watch_json(handle) if wait else 0
    if result.duplicate_of:
        err.print(f"already submitted as batch {result.duplicate_of} (same "
                  "--idempotency-key): nothing new submitted", highlight=False)
        print(result.duplicate_of, flush=True)
        return watch_until_done(client, result.duplicate_of, summary=True) if wait else 0
    print_problems(result)
    assert result.batch_id is not None
    err.print(f"{result.valid} rows queued, {result.invalid} skipped, estimated "
              f"${result.est_cost:.2f}", highlight=False)
    print(result.batch_id, flush=True)
    return watch_until_done(client, result.batch_id, summary=True) if wait else 0


def estimate_batch(client: Client, manifest: str, rows: RowDefaults, given: SubmitOptions, *,
                   as_json: bool) -> int:
    """Validate `manifest` and print what it would cost (--dry-run); submits nothing."""
    result = client.estimate(manifest, **rows, **given)
    if as_json:
        emit(submit_json(result, dry_run=True))
        return 0
    print_problems(result)
    print_estimate(result)
    return 0


def resume_batch(client: Client, manifest: str, batch_id: str, rows: RowDefaults,
                 budget_usd: float | None, *, as_json: bool, wait: bool) -> int:
    """Apply `manifest` to batch `batch_id` (--resume) and say what changed; returns the
    exit code."""
    resumed = client.resume(manifest, batch_id, budget_usd=budget_usd, **rows)
    if as_json:
        emit(resume_json(resumed))
        return watch_json(client.batch(batch_id)) if wait else 0
    if resumed.budget_usd is not None:
        err.print(f"batch {batch_id}: budget ${resumed.budget_usd:.2f}", highlight=False)
    err.print(f"batch {batch_id}: {resumed.added} rows added, {resumed.replaced} failed "
              f"rows replaced and queued again, {resumed.kept} left as they are "
              "(succeeded or still running)", highlight=False)
    print(batch_id, flush=True)
    return watch_until_done(client, batch_id) if wait else 0


def print_problems(result: SubmitOutcome) -> None:
    """The rows skipped (--skip-invalid) and the warnings, one line each on stderr."""
    for e in result.errors:
        err.print(f"[yellow]skipped[/] {e}", highlight=False)
    for warning in result.warnings:
        err.print(f"[yellow]warning[/] {escape(warning)}", highlight=False)


def print_estimate(result: SubmitOutcome) -> None:
    """A dry run's cost by provider and model, its total, and what a --budget would let
    through. Counts are of items: rows, or their variants once a row expands."""
    unit = "rows"
    if result.manifest_rows and result.manifest_rows != result.rows:
        out.print(f"{result.manifest_rows} manifest rows expand to {result.rows} items "
                  "(variants)")
        unit = "items"
    for (p, m), (n, cost) in sorted(result.by_model.items()):
        out.print(f"{p} {m}: {n} {unit}, estimated ${cost:.2f}")
    out.print(f"{result.valid} valid {unit}, estimated ${result.est_cost:.2f}"
              + (f" ({result.unpriced} {unit} without a known price)" if result.unpriced
                 else "") + "; nothing submitted (--dry-run)")
    if result.budget_usd is not None:
        out.print(f"budget ${result.budget_usd:.2f}: the first {result.fit} of "
                  f"{result.valid} {unit} fit (estimated ${result.fit_cost:.2f})"
                  + (f"; --budget would be refused: {result.unpriced} {unit} have no price"
                     if result.unpriced else ""))


def _root(text: str) -> Path | str:
    """An --input-root: a bucket prefix stays its URL, anything else is a folder."""
    return text.strip() if text.strip().lower().startswith("s3://") else Path(text)
