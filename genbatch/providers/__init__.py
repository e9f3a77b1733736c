"""Provider adapters and the static registry the rest of genbatch calls.

Everything here but `make_provider` is static: no network, no API key. Model names are
provider-neutral (`seedance-v1.5-pro-i2v`, `seedance-v1-pro-i2v`, `seedance-v1-lite-i2v`);
each provider's `ModelSpec` says what goes on its wire.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from genbatch.config import ProviderSettings
from genbatch.errors import ConfigError, FieldProblem
from genbatch.models import GenerationRequest
from genbatch.providers import pricing
from genbatch.providers.adapter import Adapter, unknown_model
from genbatch.providers.base import ModelSpec, Provider
from genbatch.providers.byteplus import BytePlusProvider
from genbatch.providers.highwayapi import HighwayAPIProvider
from genbatch.providers.novita import NovitaProvider
from genbatch.providers.validation import validate
from genbatch.providers.wavespeed import WaveSpeedProvider

__all__ = [
    "PROVIDERS",
    "ModelSpec",
    "Provider",
    "estimate_cost",
    "get_spec",
    "make_provider",
    "model_specs",
    "validate_request",
]

PROVIDERS: tuple[str, ...] = ("novita", "highwayapi", "wavespeed", "byteplus")

_ADAPTERS: dict[str, type[Adapter]] = {
    "novita": NovitaProvider,
    "highwayapi": HighwayAPIProvider,
    "wavespeed": WaveSpeedProvider,
    "byteplus": BytePlusProvider,
}


def _adapter(provider: str) -> type[Adapter]:
    try:
        return _ADAPTERS[provider]
    except KeyError:
        raise ConfigError(
            f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}"
        ) from None


def model_specs(provider: str) -> Mapping[str, ModelSpec]:
    """The models `provider` serves, by genbatch model name."""
    return _adapter(provider).specs


def get_spec(provider: str, model: str) -> ModelSpec:
    """One model's spec; ConfigError naming the valid models when `model` is unknown."""
    specs = model_specs(provider)
    if model not in specs:
        raise ConfigError(unknown_model(provider, model, specs))
    return specs[model]


def validate_request(provider: str, model: str, request: GenerationRequest) -> list[FieldProblem]:
    """Every problem with `request` for `model` on `provider`; empty when it is acceptable.

    An unknown model is reported as a problem with the field `model`; an unknown provider
    raises ConfigError.
    """
    specs = model_specs(provider)
    if model not in specs:
        return [FieldProblem("model", unknown_model(provider, model, specs))]
    return validate(provider, specs[model], request)


def make_provider(
    settings: ProviderSettings,
    client: httpx.Client,
    *,
    submit_timeout_s: float | None = None,
) -> Provider:
    """The adapter for `settings.name`, talking through `client`.

    `submit_timeout_s`, when given, replaces the client's read timeout for submits only
    (Settings.submit_timeout_s); every other timeout is the client's. The API key is read at
    the first call, which raises ConfigError when it is missing.
    """
    return _adapter(settings.name)(settings, client, submit_timeout_s=submit_timeout_s)


def estimate_cost(provider: str, model: str, request: GenerationRequest) -> float | None:
    """Estimated USD for `request` (see pricing.py for how rough); None when no price is known."""
    return pricing.estimate(provider, get_spec(provider, model), request)
