"""The documentation's generated references (docs/hooks/reference.py) name every setting and
every command, and every page is reachable from the site's nav. `make docs` builds the site
itself with --strict (broken links, pages left out of the nav)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from genbatch.config import NOT_VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "hooks/reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_reference_names_every_setting_with_a_description(
    reference: ModuleType,
) -> None:
    page = reference.settings_reference()
    rows = {line.split("`")[1]: line for line in page.splitlines() if line.startswith("| `")}

    for field in set(Settings.model_fields) - NOT_VARIABLES:
        env = f"GENBATCH_{field.upper()}"
        assert env in rows, f"{env} missing from the configuration reference"
        meaning = rows[env].rstrip(" |").rsplit(" | ", 1)[1]
        assert meaning.strip(), f"{env} has no description (give its Field a description=)"


def test_the_cli_reference_names_every_command_and_option(reference: ModuleType) -> None:
    import typer

    from genbatch.cli import app

    page = reference.cli_reference()
    headings = set(re.findall(r"^#{2,3} (genbatch.*)$", page, re.MULTILINE))

    def walk(command: object, path: str) -> None:
        assert path in headings, f"{path} missing from the CLI reference"
        section = page.split(f" {path}\n", 1)[1].split("\n## ", 1)[0]
        for param in getattr(command, "params", []):
            for opt in getattr(param, "opts", []):
                if opt.startswith("-") and not getattr(param, "hidden", False):
                    assert opt in section, f"{path} {opt} missing from the CLI reference"
        for name, sub in getattr(command, "commands", {}).items():
            if not sub.hidden:
                walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "genbatch")
    assert {"genbatch submit", "genbatch accounts resume"} <= headings


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.SafeLoader)
    generated = {"reference/cli.md", "reference/configuration.md"}

    def entries(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [e for item in nav for e in entries(item)]
        if isinstance(nav, dict):
            return [e for value in nav.values() for e in entries(value)]
        return []

    in_nav = set(entries(config["nav"]))
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert on_disk | generated == in_nav


def test_each_provider_page_lists_its_settings_with_the_plugins_defaults(
    reference: ModuleType,
) -> None:
    from genbatch.providers import registry

    for name, plugin in registry.plugins().items():
        table = reference.provider_settings(name)
        assert f"`GENBATCH_{name.upper()}_{plugin.key_setting.upper()}`" in table
        assert f"`{plugin.limits.base_url}`" in table
        assert f"| `{plugin.limits.max_in_flight}` |" in table
