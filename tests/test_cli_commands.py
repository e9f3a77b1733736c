"""The command surface as `genbatch --help` shows it: every command, in its order, each with
its help, and every option and argument with its own (the docs' CLI reference is made from
them)."""

from __future__ import annotations

from typing import Any

from typer.main import get_command
from typer.testing import CliRunner

from genbatch.cli import app
from genbatch.cli.submitting import Priority, Tier
from genbatch.models import PRIORITIES
from genbatch.providers.validation import SERVICE_TIERS

COMMANDS = ["submit", "status", "watch", "results", "cancel", "retry", "reconcile", "notify",
            "review", "redo", "export",
            "providers", "worker", "scheduler", "simulate", "redis", "demo", "dashboard",
            "webhooks", "accounts"]


def commands(group: Any, prefix: str = "") -> dict[str, Any]:
    """Every command under `group` by its full name ("accounts resume")."""
    found = {}
    for name, command in group.commands.items():
        found[prefix + name] = command
        if hasattr(command, "commands"):
            found |= commands(command, f"{prefix}{name} ")
    return found


def test_help_lists_every_command_in_order() -> None:
    res = CliRunner().invoke(app, ["--help"], terminal_width=80)
    assert res.exit_code == 0
    listed = res.output.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed if line.strip()] == COMMANDS


def test_every_command_option_and_argument_has_help() -> None:
    found = commands(get_command(app))
    assert set(COMMANDS) | {"accounts resume"} == set(found)
    missing = [f"{name} {param.name}" for name, command in found.items()
               for param in command.params if not getattr(param, "help", None)]
    assert [name for name, command in found.items() if not command.help] == []
    assert missing == []


def test_version() -> None:
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.output.startswith("genbatch ")


def test_priority_and_tier_choices_are_the_vocabulary() -> None:
    assert tuple(Priority) == PRIORITIES
    assert tuple(Tier) == SERVICE_TIERS
