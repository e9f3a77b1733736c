"""Finding providers: the `genbatch.providers` entry-point group.

A package adds a provider by being installed with an entry point whose object is a
`ProviderPlugin` (or a function of no arguments returning one)::

    [project.entry-points."genbatch.providers"]
    acme = "genbatch_acme:PLUGIN"

genbatch's own providers are registered the same way (its `pyproject.toml`). The entry
point's name must be the plugin's `name`. A plugin that fails to import, or whose
declaration is not sound (`check`), is left out and named in one line (`broken()`, the log
and `genbatch providers`); the others keep working.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint, entry_points

from genbatch.errors import ConfigError
from genbatch.providers.adapter import Adapter
from genbatch.providers.base import ModelSpec
from genbatch.providers.plugin import Capability, ProviderPlugin

log = logging.getLogger(__name__)

GROUP = "genbatch.providers"
# genbatch's own, in the order screens list them; plugins follow in name order.
BUILTIN: Mapping[str, str] = {
    "novita": "genbatch.providers.novita:PLUGIN",
    "highwayapi": "genbatch.providers.highwayapi:PLUGIN",
    "wavespeed": "genbatch.providers.wavespeed:PLUGIN",
    "byteplus": "genbatch.providers.byteplus:PLUGIN",
    "fal": "genbatch.providers.fal:PLUGIN",
    "runway": "genbatch.providers.runway:PLUGIN",
    "kling": "genbatch.providers.kling:PLUGIN",
    "veo": "genbatch.providers.veo:PLUGIN",
}
NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")
# The adapter method each capability needs (it must be the adapter's own, not the base's).
_METHODS = {Capability.LIST: "list_tasks", Capability.CANCEL: "cancel",
            Capability.UPLOAD: "upload", Capability.LOOKUP: "lookup",
            Capability.KEYED_DOWNLOAD: "download_headers", Capability.LIST_POLL: "recent"}


class PluginError(ConfigError):
    """Raised when a provider plugin cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Broken:
    """A provider plugin that was left out, and why (one line)."""

    name: str
    package: str
    reason: str


@dataclass(frozen=True)
class Catalog:
    plugins: Mapping[str, ProviderPlugin]
    broken: tuple[Broken, ...]


def plugins() -> Mapping[str, ProviderPlugin]:
    """Every working provider by name: genbatch's own first, then plugins by name."""
    return _catalog().plugins


def broken() -> tuple[Broken, ...]:
    return _catalog().broken


def names() -> tuple[str, ...]:
    return tuple(plugins())


def get(name: str) -> ProviderPlugin:
    """The provider `name`; ConfigError naming the known ones (and a broken one's reason)."""
    found = plugins().get(name)
    if found is not None:
        return found
    bad = next((b for b in broken() if b.name == name), None)
    if bad is not None:
        raise PluginError(f"provider {name!r} (package {bad.package}) is not usable: "
                          f"{bad.reason}")
    raise ConfigError(f"unknown provider {name!r}; choose one of {', '.join(names())}")


def with_flex_tier() -> tuple[str, ...]:
    """The providers with a model that takes `service_tier: flex` (named where one is refused)."""
    return tuple(name for name, plugin in plugins().items()
                 if any(spec.supports_service_tier for spec in plugin.models.values()))


def reload() -> None:
    """Look at the installed packages again (after installing a plugin in-process)."""
    _catalog.cache_clear()


@functools.cache
def _catalog() -> Catalog:
    found: dict[str, ProviderPlugin] = {}
    bad: list[Broken] = []
    for name, package, load in _sources():
        try:
            plugin = check(name, package, load())
        except Exception as exc:
            reason = str(exc) if isinstance(exc, PluginError) else \
                f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            bad.append(Broken(name, package, reason))
            log.warning("provider plugin %r (package %s) left out: %s", name, package, reason)
            continue
        if plugin.name in found:
            taken = found[plugin.name].package
            bad.append(Broken(name, package, f"the name is taken by package {taken}"))
            log.warning("provider plugin %r (package %s) left out: the name is taken by "
                        "package %s", name, package, taken)
            continue
        found[plugin.name] = plugin
    order = [n for n in BUILTIN if n in found] + sorted(n for n in found if n not in BUILTIN)
    return Catalog({n: found[n] for n in order}, tuple(bad))


def _sources() -> Iterable[tuple[str, str, functools.partial[object]]]:
    """(name, package, loader) of each entry point, genbatch's own first (by module path when
    the installed metadata does not list them: a source tree on sys.path)."""
    # genbatch's own first: another package cannot take one of their names
    points = sorted(entry_points(group=GROUP), key=lambda p: _package(p) != "genbatch")
    listed = {p.name for p in points if _package(p) == "genbatch"}
    for name, target in BUILTIN.items():
        if name not in listed:
            yield name, "genbatch", functools.partial(_load_path, target)
    for point in points:
        yield point.name, _package(point), functools.partial(point.load)


def _load_path(target: str) -> object:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _package(point: EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return str(dist.name) if dist is not None else point.value.partition(":")[0]


def check(name: str, package: str, obj: object) -> ProviderPlugin:
    """`obj` (a ProviderPlugin, or a function returning one) as a sound plugin named `name`;
    PluginError saying what is wrong otherwise."""
    plugin = obj() if callable(obj) and not isinstance(obj, ProviderPlugin) else obj
    if not isinstance(plugin, ProviderPlugin):
        raise PluginError(f"the entry point gives {type(plugin).__name__}, not a ProviderPlugin")
    if plugin.name != name or not NAME.fullmatch(name):
        raise PluginError(f"its name {plugin.name!r} must equal the entry point's ({name!r}) "
                          "and be lower-case letters, digits and _")
    _check_models(plugin.models)
    limits = plugin.limits
    if not limits.base_url.startswith(("http://", "https://")):
        raise PluginError(f"limits.base_url {limits.base_url!r} is not an http(s) URL")
    if limits.max_in_flight < 1 or limits.submit_rpm <= 0 or limits.poll_rpm <= 0:
        raise PluginError("limits: max_in_flight must be >= 1 and the rates > 0")
    _check_capabilities(plugin)
    return replace(plugin, package=plugin.package or package)


def _check_models(models: Mapping[str, ModelSpec]) -> None:
    if not models:
        raise PluginError("its model table is empty")
    for key, spec in models.items():
        if not isinstance(spec, ModelSpec):
            raise PluginError(f"model {key!r}: {type(spec).__name__} is not a ModelSpec")
        if key != spec.name:
            raise PluginError(f"model {key!r}: listed under another name than its own "
                              f"({spec.name!r})")
        if not spec.durations or not spec.wire_model:
            raise PluginError(f"model {key!r}: needs a wire_model and at least one duration")


def _check_capabilities(plugin: ProviderPlugin) -> None:
    callbacks = plugin.callbacks
    if plugin.has(Capability.CALLBACKS) != (callbacks is not None):
        raise PluginError("declares callbacks without a Callbacks parser, or the reverse")
    signed = callbacks is not None and callbacks.verify is not None
    if plugin.has(Capability.SIGNED_CALLBACKS) != signed:
        raise PluginError("declares signed callbacks without a verify function, or the reverse")
    if signed and callbacks is not None and not callbacks.secret_setting \
            and not callbacks.verify_unset:
        raise PluginError("signed callbacks need the setting that holds the secret")
    adapter = plugin.adapter
    if not isinstance(adapter, type):
        return
    for capability, method in _METHODS.items():
        own = issubclass(adapter, Adapter) and getattr(adapter, method) is not \
            getattr(Adapter, method)
        if plugin.has(capability) and issubclass(adapter, Adapter) and not own:
            raise PluginError(f"declares {capability} but its adapter has no {method}()")
        if own and not plugin.has(capability):
            raise PluginError(f"its adapter has {method}() but {capability} is not declared")
