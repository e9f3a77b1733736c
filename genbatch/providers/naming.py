"""Model names: genbatch's short names and each provider's own ids name the same model.

A user copies the model id from the provider's page, so every place that takes a model
(manifest `model`, `--model`, `--fallback`) accepts either spelling (docs/wire/notes.md §9):

    genbatch name          Novita, HighwayAPI     WaveSpeed                 BytePlus
    seedance-v1.5-pro-i2v  seedance-v1.5-pro-i2v  bytedance/seedance-v1.5-  seedance-1-5-pro-251215
                                                  pro/image-to-video
    seedance-v1-pro-i2v    seedance-v1-pro-i2v    bytedance/seedance-v1-    seedance-1-0-pro-250528
                                                  pro-i2v-{480p,720p,1080p}
    seedance-v1-lite-i2v   seedance-v1-lite-i2v   bytedance/seedance-v1-    seedance-1-0-lite-i2v-
                                                  lite-i2v-{480p,...}       250428

WaveSpeed's V1 ids are one endpoint per resolution, so such an id also pins the resolution.
Items are stored under the genbatch name (prices, learned times and failover key on it);
results show the provider's id (`provider_model`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from genbatch.providers.base import ModelSpec

RESOLUTION_SLOT = "{resolution}"


@dataclass(frozen=True, slots=True)
class ModelName:
    """What a model name resolves to: the spec, and the resolution the name fixes (if any)."""

    spec: ModelSpec
    resolution: str | None = None


def provider_ids(spec: ModelSpec) -> dict[str, str | None]:
    """The provider's own ids for `spec`, each with the resolution it pins (or None)."""
    if RESOLUTION_SLOT not in spec.wire_model:
        return {spec.wire_model: None}
    ordered = sorted(spec.resolutions, key=lambda r: int(r.removesuffix("p")))
    return {spec.wire_model.format(resolution=r): r for r in ordered}


def lookup(specs: Mapping[str, ModelSpec], name: str) -> ModelName | None:
    """The model `name` means among `specs` (genbatch name or provider id); None if none."""
    name = name.strip()
    if name in specs:
        return ModelName(specs[name])
    for spec in specs.values():
        ids = provider_ids(spec)
        if name in ids:
            return ModelName(spec, ids[name])
    return None


def accepted_names(specs: Mapping[str, ModelSpec]) -> list[str]:
    """Every name a provider accepts: genbatch's, then the provider's own ids."""
    names = list(specs)
    for spec in specs.values():
        names += [i for i in provider_ids(spec) if i not in names]
    return names


def unknown_model(provider: str, model: str, specs: Mapping[str, ModelSpec]) -> str:
    return (f"unknown model {model!r} on {provider}; choose one of "
            f"{', '.join(accepted_names(specs))}")


def pin_conflict(name: str, pinned: str, got: str) -> str:
    return (f"{name} is the {pinned} endpoint, got {got!r}; leave resolution empty or name "
            f"the model for {got}")


def provider_model(spec: ModelSpec, resolution: str | None) -> str:
    """The provider's own id of `spec` for a request at `resolution` (None: the default)."""
    if RESOLUTION_SLOT not in spec.wire_model:
        return spec.wire_model
    return spec.wire_model.format(resolution=resolution or spec.default_resolution or "")
