"""`genbatch accounts`: the provider accounts' health and the processes alive, and
`accounts resume` to lift a pause."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from genbatch.cli.shared import JsonOpt, emit, out
from genbatch.client import Client
from genbatch.client.as_json import accounts_json

accounts_app = typer.Typer(rich_markup_mode=None, invoke_without_command=True,
                           help="Provider accounts: their health, and the processes alive.")


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

