"""The registry: provider and model lookup, make_provider, static spec sanity."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from genbatch import providers
from genbatch.config import ProviderSettings
from genbatch.errors import ConfigError, FieldProblem
from genbatch.models import GenerationRequest
from genbatch.providers import (
    get_spec,
    make_provider,
    model_specs,
    names,
    validate_request,
)
from genbatch.providers.base import Provider
from genbatch.providers.registry import BUILTIN as BUILTINS

Build = Callable[..., Provider]
Req = Callable[..., GenerationRequest]
MODELS = ("seedance-v1.5-pro-i2v", "seedance-v1-pro-i2v", "seedance-v1-lite-i2v")
# The providers of the three Seedance models (fal, Runway, Kling and Veo serve others: their
# own tests); installed plugins (examples/provider-plugin) follow genbatch's own.
SEEDANCE = tuple(p for p in names() if MODELS[0] in model_specs(p))


def test_providers_match_the_settings_names() -> None:
    assert names()[:8] == tuple(BUILTINS) == (*SEEDANCE, "fal", "runway", "kling", "veo")
    assert SEEDANCE == ("novita", "highwayapi", "wavespeed", "byteplus")
    assert list(names()[8:]) == sorted(names()[8:])
    assert names() == providers.names()


@pytest.mark.parametrize("provider", SEEDANCE)
def test_every_seedance_provider_serves_the_three_seedance_models(provider: str) -> None:
    assert tuple(model_specs(provider)) == MODELS


def test_unknown_provider_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="novita, highwayapi, wavespeed, byteplus"):
        model_specs("replicate")


def test_unknown_model_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"seedance-v1\.5-pro-i2v, seedance-v1-pro-i2v"):
        get_spec("novita", "seedance-2.0")


def test_validate_request_reports_an_unknown_model_as_a_field_problem(req: Req) -> None:
    problems = validate_request("wavespeed", "kling-v2", req())
    assert [p.field for p in problems] == ["model"]
    assert "seedance-v1-lite-i2v" in problems[0].message


def test_validate_request_on_an_unknown_provider_raises(req: Req) -> None:
    with pytest.raises(ConfigError):
        validate_request("nope", "seedance-v1-pro-i2v", req())


@pytest.mark.parametrize("provider", SEEDANCE)
@pytest.mark.parametrize("model", MODELS)
def test_specs_are_self_consistent(provider: str, model: str) -> None:
    spec = get_spec(provider, model)
    assert spec.name == model
    assert spec.default_duration in spec.durations
    assert spec.default_resolution in spec.resolutions
    assert spec.typical_seconds > 0
    assert spec.ratio_field in ("ratio", "aspect_ratio")
    assert ("adaptive" in spec.ratios) == (spec.ratio_field == "ratio")


@pytest.mark.parametrize(
    ("model", "wire"),
    [
        ("seedance-v1.5-pro-i2v", "seedance-1-5-pro-251215"),
        ("seedance-v1-pro-i2v", "seedance-1-0-pro-250528"),
        ("seedance-v1-lite-i2v", "seedance-1-0-lite-i2v-250428"),
    ],
)
def test_byteplus_wire_model_ids(model: str, wire: str) -> None:
    assert get_spec("byteplus", model).wire_model == wire


@pytest.mark.parametrize("provider", SEEDANCE)
def test_make_provider_returns_a_provider_for_the_settings(adapter: Build, provider: str) -> None:
    made = adapter(provider)
    assert isinstance(made, Provider)
    assert made.name == provider
    assert made.models == model_specs(provider)


def test_make_provider_rejects_an_unknown_provider() -> None:
    settings = ProviderSettings("nope", "https://x.test", SecretStr("k"), 1)
    with httpx.Client() as client, pytest.raises(ConfigError, match="unknown provider"):
        make_provider(settings, client)


def test_a_missing_api_key_fails_before_any_request(req: Req) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"task_id": "t"})

    settings = ProviderSettings("novita", "https://api.novita.test", None, 1)
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        provider = make_provider(settings, client)
        with pytest.raises(ConfigError, match="GENBATCH_NOVITA_API_KEY"):
            provider.submit("seedance-v1.5-pro-i2v", req())
    assert sent == []


def test_field_problem_for_model_is_stable(req: Req) -> None:
    assert validate_request("novita", "x", req()) == [
        FieldProblem(
            "model",
            "unknown model 'x' on novita; choose one of seedance-v1.5-pro-i2v, "
            "seedance-v1-pro-i2v, seedance-v1-lite-i2v",
        )
    ]
