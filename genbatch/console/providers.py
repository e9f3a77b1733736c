"""`genbatch providers`: the installed providers, their models, limits and capabilities, where
each comes from, and the plugins left out (one line each, with why)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from genbatch.providers import registry
from genbatch.providers.accounts import PROVIDER_SETTINGS
from genbatch.providers.naming import provider_ids
from genbatch.providers.plugin import ProviderPlugin


def settings_of(plugin: ProviderPlugin) -> list[str]:
    """The environment variables that configure the provider's default account."""
    names = (plugin.key_setting, *PROVIDER_SETTINGS, *plugin.settings)
    return [f"GENBATCH_{plugin.name.upper()}_{name.upper()}" for name in names]


def describe(plugin: ProviderPlugin) -> dict[str, Any]:
    """One provider as plain data (`genbatch providers --json`)."""
    limits = plugin.limits
    return {
        "name": plugin.name,
        "package": plugin.package,
        "summary": plugin.summary,
        "models": [{"name": spec.name, "provider_ids": sorted(provider_ids(spec)),
                    "durations": sorted(spec.durations),
                    "resolutions": sorted(spec.resolutions), "ratios": sorted(spec.ratios)}
                   for spec in plugin.models.values()],
        "capabilities": sorted(plugin.capabilities),
        "limits": {"base_url": limits.base_url, "concurrency": limits.max_in_flight,
                   "submit_rpm": limits.submit_rpm, "poll_rpm": limits.poll_rpm,
                   "over_concurrency": "queues" if limits.queues else "refused",
                   "tiers": sorted(limits.tiers)},
        "settings": settings_of(plugin),
        "priced": plugin.prices is not None,
    }


def providers_json() -> dict[str, Any]:
    return {"providers": [describe(p) for p in registry.plugins().values()],
            "broken": [{"name": b.name, "package": b.package, "reason": b.reason}
                       for b in registry.broken()]}


def providers_view() -> RenderableType:
    """The providers as a table, then one line per broken plugin."""
    table = Table(title="providers", title_justify="left", show_lines=True)
    table.add_column("provider", no_wrap=True)
    table.add_column("models", no_wrap=True)
    table.add_column("limits", overflow="fold")
    table.add_column("capabilities", overflow="fold")
    for plugin in registry.plugins().values():
        limits = plugin.limits
        over = "more wait" if limits.queues else "more refused"
        table.add_row(
            f"[bold]{plugin.name}[/]\n[dim]{plugin.package}[/]",
            "\n".join(plugin.models),
            f"{limits.max_in_flight} at once,\n{over};\n{limits.submit_rpm:g} submits/min",
            ", ".join(sorted(plugin.capabilities)) or "-",
        )
    parts: list[RenderableType] = [table]
    parts += [f"[red]broken:[/] provider {b.name!r} (package {b.package}): {b.reason}"
              for b in registry.broken()]
    return Group(*parts)
