"""The `genbatch` command line, one module per group of commands: `submitting`, `inspecting`
(status, watch, results), `operations` (cancel, retry, reconcile, notify), `review` (review,
redo, export), `accounts`, `providers` and `processes` (worker, scheduler, servers, demo);
`shared` holds what they share. The commands are registered here, in the order `genbatch
--help` lists them. User mistakes end in one clear line and a non-zero exit."""

from __future__ import annotations

from typing import Annotated

import typer

from genbatch import __version__
from genbatch.cli import inspecting, operations, processes, providers, review, submitting
from genbatch.cli.accounts import accounts_app
from genbatch.cli.shared import errors_as_exit

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Run CSV/JSONL manifests through asynchronous image-to-video APIs.")

app.command()(submitting.submit)
app.command()(inspecting.status)
app.command()(inspecting.watch)
app.command()(inspecting.results)
app.command()(operations.cancel)
app.command()(operations.retry)
app.command()(operations.reconcile)
app.command()(operations.notify)
app.command()(review.review)
app.command()(review.redo)
app.command()(review.export)
app.add_typer(accounts_app, name="accounts")
app.command()(providers.providers)
app.command()(processes.worker)
app.command()(processes.scheduler)
app.command()(processes.simulate)
app.command("redis")(processes.redis_server)
app.command()(processes.demo)
app.command()(processes.dashboard)
app.command()(processes.webhooks)


def _version(show: bool) -> None:
    if show:
        print(f"genbatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", help="print the version and exit", is_eager=True, callback=_version)
] = False) -> None:
    """Run CSV/JSONL manifests through asynchronous image-to-video APIs."""


def main() -> None:
    """Entry point. Click handles usage errors and exit codes (standalone mode); our own
    errors and an unreachable Redis become one line on stderr and exit code 2."""
    with errors_as_exit():
        app()
