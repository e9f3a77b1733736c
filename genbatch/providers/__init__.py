"""Providers: the plugin registry and the static calls the rest of genbatch makes.

Every provider is a plugin (`plugin.py` holds the contract, `registry.py` finds them by
entry point); genbatch's own four are in this package. Everything here but `make_provider`
is static: no network, no API key. Models are stored under genbatch's provider-neutral names
(`seedance-v1.5-pro-i2v`, …); every function taking a model also takes the provider's own id
(naming.py); each provider's `ModelSpec` says what goes on its wire.

Comments cite the provider wire notes, docs/wire/ (§2 Novita … §9), and their sources by
tag (NOV-ERR, WS-CLI, …: the source key, docs/wire/index.md §0).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from genbatch.config import ProviderSettings
from genbatch.errors import FieldProblem
from genbatch.models import GenerationRequest, PollResult
from genbatch.providers import pricing, registry
from genbatch.providers.adapter import check_model, resolve_model
from genbatch.providers.base import ModelSpec, Provider
from genbatch.providers.naming import lookup, provider_model
from genbatch.providers.plugin import Capability, ProviderPlugin

__all__ = [
    "Capability",
    "ModelSpec",
    "Provider",
    "ProviderPlugin",
    "actual_cost",
    "can_list",
    "can_lookup",
    "canonical",
    "estimate_cost",
    "flex_providers",
    "get_spec",
    "make_provider",
    "model_specs",
    "names",
    "plugin",
    "provider_model_id",
    "validate_request",
]

_NO_REQUEST = GenerationRequest(image="-")


def names() -> tuple[str, ...]:
    """Every installed provider's name: genbatch's own first, then plugins by name."""
    return registry.names()


def plugin(provider: str) -> ProviderPlugin:
    """The provider's declaration; ConfigError naming the known ones when unknown."""
    return registry.get(provider)


def can_list(provider: str) -> bool:
    """`provider` documents a task list (reconciliation of ambiguous submits works there)."""
    return plugin(provider).has(Capability.LIST)


def can_list_poll(provider: str) -> bool:
    """`provider` lists an account's tasks with their status (Kling's Query Task (List)):
    one request sees every task (worker/list_poll.py)."""
    return plugin(provider).has(Capability.LIST_POLL)


def can_lookup(provider: str) -> bool:
    """`provider` finds a task by the attempt id its submit carried (Kling's
    external_task_id): an ambiguous submit there is settled exactly."""
    return plugin(provider).has(Capability.LOOKUP)


def model_specs(provider: str) -> Mapping[str, ModelSpec]:
    """The models `provider` serves, by genbatch model name."""
    return plugin(provider).models


def get_spec(provider: str, model: str) -> ModelSpec:
    """One model's spec (by genbatch name or provider id); ConfigError naming the accepted
    names when `model` is unknown."""
    return resolve_model(provider, model_specs(provider), model, _NO_REQUEST)[0]


def canonical(provider: str, model: str, request: GenerationRequest
              ) -> tuple[str, GenerationRequest]:
    """The genbatch name of `model` and `request` with the resolution a provider id pins
    (WaveSpeed's V1 per-resolution ids) filled in; ConfigError for an unknown model."""
    spec, request = resolve_model(provider, model_specs(provider), model, request)
    return spec.name, request


def provider_model_id(provider: str, model: str, resolution: str | None) -> str:
    """The provider's own id of `model` for a request at `resolution` (for display)."""
    return provider_model(get_spec(provider, model), resolution)


def validate_request(provider: str, model: str, request: GenerationRequest) -> list[FieldProblem]:
    """Every problem with `request` for `model` on `provider`; empty when it is acceptable.

    An unknown model is reported as a problem with the field `model`, a resolution other
    than the one a provider id pins as one with `resolution`; an unknown provider raises
    ConfigError.
    """
    problems = check_model(provider, model_specs(provider), model, request)
    return [_flex_elsewhere(provider, p) if p.field == "service_tier" and
            request.service_tier is not None and not _takes_flex(provider, model) else p
            for p in problems]


def flex_providers() -> tuple[str, ...]:
    """Providers with a model that takes `service_tier` (a flex tier or a low priority)."""
    return tuple(name for name, p in registry.plugins().items()
                 if any(spec.supports_service_tier for spec in p.models.values()))


def _takes_flex(provider: str, model: str) -> bool:
    found = lookup(model_specs(provider), model)
    return found is not None and found.spec.supports_service_tier


def _flex_elsewhere(provider: str, problem: FieldProblem) -> FieldProblem:
    """A refused service_tier, naming where a flex row can run instead."""
    others = [name for name in flex_providers() if name != provider]
    if not others:
        return problem
    return FieldProblem(problem.field, f"{problem.message}; providers that take it: "
                        f"{', '.join(others)}")


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
    return plugin(settings.name).make(settings, client, submit_timeout_s=submit_timeout_s)


def estimate_cost(provider: str, model: str, request: GenerationRequest) -> float | None:
    """Estimated USD for `request` (see pricing.py for how rough); None when no price is known."""
    spec, request = resolve_model(provider, model_specs(provider), model, request)
    return pricing.estimate(plugin(provider).prices, spec, request)


def actual_cost(provider: str, model: str, request: GenerationRequest,
                result: PollResult) -> float | None:
    """USD for a finished task: from its reported usage where the provider prices that,
    else the estimate; 0 when it was not billed."""
    spec, request = resolve_model(provider, model_specs(provider), model, request)
    return pricing.actual(plugin(provider).prices, spec, request, result)
