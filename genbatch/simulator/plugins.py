"""Simulated protocols as plugins: the `genbatch.simulators` entry-point group.

A package that adds a provider (entry point `genbatch.providers`) adds the simulator of its
wire protocol the same way::

    [project.entry-points."genbatch.simulators"]
    acme = "genbatch_acme.simulator:SIMULATOR"

The object is a `SimulatorPlugin` (or a function of no arguments returning one). Its
`routes(prefix)` gives the protocol's Starlette routes, built on the shared steps of
`genbatch.simulator.gate` (authentication, rate and concurrency limits, failure injection
per API key) and the `Simulator` state (`state.py`: tasks, their timelines, stats);
`create_app` mounts them under `/<name>`, so the provider's base URL on a simulator at
`http://127.0.0.1:8700` is `http://127.0.0.1:8700/<name>`. Every installed one is served
by `genbatch simulate`, the tests and the conformance kit (`genbatch.testing`).

genbatch's own protocols (`BUILTIN`) are mounted by `app.py` itself (also at the root,
as on their real hosts); their names, and `_sim`, are taken. A plugin that fails to load, is
not a `SimulatorPlugin`, takes a taken name or whose routes fail to build is left out and
named in one line (the log and `GET /_sim/health`); the others keep serving.

This module, like the whole simulator, imports nothing of genbatch outside it.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points

from starlette.routing import BaseRoute, Mount

log = logging.getLogger(__name__)

GROUP = "genbatch.simulators"
BUILTIN = ("novita", "highwayapi", "wavespeed", "byteplus", "fal", "runway", "kling", "veo")
RESERVED = frozenset({*BUILTIN, "_sim"})
NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")
Routes = Callable[[str], Sequence[BaseRoute]]  # (the mount prefix, e.g. "/acme") -> routes


@dataclass(frozen=True)
class SimulatorPlugin:
    """One provider's simulated protocol. `name` is the provider's (its `ProviderPlugin`
    name); `routes(prefix)` builds its routes, told where they are mounted (for URLs it
    hands out, such as an upload's)."""

    name: str
    routes: Routes
    summary: str = ""


@dataclass(frozen=True, slots=True)
class BrokenSimulator:
    """A simulator plugin that was left out, and why (one line)."""

    name: str
    package: str
    reason: str

    def line(self) -> str:
        return f"simulator plugin {self.name!r} (package {self.package}) left out: {self.reason}"


@dataclass(frozen=True)
class Mounted:
    """What `mounts` found: the mounts of the working plugins, and the broken ones."""

    mounts: tuple[Mount, ...]
    names: tuple[str, ...]
    broken: tuple[BrokenSimulator, ...]


def mounts(extra: Sequence[SimulatorPlugin] = ()) -> Mounted:
    """A Mount under `/<name>` for each installed simulator plugin (and each of `extra`, for
    tests), in name order; broken ones named in one log line each and left out."""
    found: dict[str, Mount] = {}
    broken: list[BrokenSimulator] = []
    for name, package, load in _sources(extra):
        try:
            plugin = _check(name, load(), taken=found)
            mount = Mount(f"/{plugin.name}", routes=list(plugin.routes(f"/{plugin.name}")))
        except Exception as exc:
            bad = BrokenSimulator(name, package, _reason(exc))
            log.warning("%s", bad.line())
            broken.append(bad)
            continue
        found[plugin.name] = mount
    order = sorted(found)
    return Mounted(tuple(found[n] for n in order), tuple(order), tuple(broken))


def _sources(extra: Sequence[SimulatorPlugin]
             ) -> Iterator[tuple[str, str, Callable[[], object]]]:
    for point in entry_points(group=GROUP):
        dist = getattr(point, "dist", None)
        package = str(dist.name) if dist is not None else point.value.partition(":")[0]
        yield point.name, package, point.load
    for plugin in extra:
        yield plugin.name, "(given)", functools.partial(_given, plugin)


def _given(plugin: SimulatorPlugin) -> object:
    return plugin


class SimulatorPluginError(Exception):
    """Raised when a simulator plugin cannot be served; the message says why."""


def _check(name: str, obj: object, *, taken: dict[str, Mount]) -> SimulatorPlugin:
    plugin = obj() if callable(obj) and not isinstance(obj, SimulatorPlugin) else obj
    if not isinstance(plugin, SimulatorPlugin):
        raise SimulatorPluginError(
            f"the entry point gives {type(plugin).__name__}, not a SimulatorPlugin")
    if plugin.name != name or not NAME.fullmatch(name):
        raise SimulatorPluginError(
            f"its name {plugin.name!r} must equal the entry point's ({name!r}) and be "
            "lower-case letters, digits and _")
    if name in RESERVED or name in taken:
        raise SimulatorPluginError(f"the name {name!r} is taken")
    return plugin


def _reason(exc: Exception) -> str:
    if isinstance(exc, SimulatorPluginError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
