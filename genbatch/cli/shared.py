"""What the commands share: the two consoles, one JSON object a line, the arguments several
commands take, and our errors turned into one clear line and a non-zero exit (tracebacks are
for bugs)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from genbatch.client.rows import EXIT_USER_ERROR
from genbatch.config import Settings, load_settings
from genbatch.errors import GenbatchError, ManifestRejected

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

BatchArg = Annotated[str, typer.Argument(help="batch id (from `genbatch submit`)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def emit(obj: Mapping[str, Any]) -> None:
    """One JSON object, one line, flushed (a pipeline may read it while the command runs)."""
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def exit_with(code: int) -> None:
    """End the command with exit code `code`; 0 lets it return as usual."""
    if code:
        raise typer.Exit(code)


def fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(code)


@contextmanager
def errors_as_exit() -> Iterator[None]:
    """Our own errors and an unreachable Redis become one line on stderr and exit code 2
    (a rejected manifest first prints one line per problem)."""
    try:
        yield
    except ManifestRejected as exc:
        for e in exc.errors:
            err.print(str(e), highlight=False, markup=False)
        if exc.total_errors > len(exc.errors):
            err.print(f"... and {exc.total_errors - len(exc.errors)} more")
        fail(str(exc))
    except GenbatchError as exc:  # Redis lost after the first ping included (StoreUnavailable)
        fail(str(exc))


def process_settings() -> Settings:
    """The settings of a long-running process, checked whole before it starts: every
    provider's account settings too (a bad one is a ConfigError naming its variable), and
    each probable mistake (a misspelt variable, an unset api_key_env) one warning line."""
    from genbatch.providers import accounts

    settings = load_settings()
    accounts.accounts(settings)
    for warning in accounts.setting_warnings(settings):
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    return settings
