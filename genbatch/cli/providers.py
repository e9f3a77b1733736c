"""`genbatch providers`: the installed providers (genbatch's own and plugins), their models,
limits, capabilities and packages, and the plugins left out with why."""

from __future__ import annotations

import json

from genbatch.cli.shared import JsonOpt, out


def providers(as_json: JsonOpt = False) -> None:
    """Every installed provider: its package, models, limits (and whether work over its
    concurrency waits at the provider or is refused) and capabilities; a plugin that cannot
    be used is named in one line, with why."""
    from genbatch.console.providers import providers_json, providers_view

    if as_json:
        print(json.dumps(providers_json(), indent=2))
        return
    out.print(providers_view())
