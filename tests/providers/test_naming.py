"""Provider model ids: every provider's own id names the same model as genbatch's short
name, everywhere a model is named (docs/wire/notes.md §9)."""

from __future__ import annotations

import pytest

from genbatch import providers
from genbatch.errors import ConfigError
from genbatch.models import GenerationRequest
from genbatch.producer.options import parse_fallback

IMAGE = "https://example.com/a.png"
# (provider, the provider's own id as its pages spell it, genbatch name, pinned resolution)
IDS = [
    ("wavespeed", "bytedance/seedance-v1.5-pro/image-to-video", "seedance-v1.5-pro-i2v", None),
    ("wavespeed", "bytedance/seedance-v1-pro-i2v-720p", "seedance-v1-pro-i2v", "720p"),
    ("wavespeed", "bytedance/seedance-v1-pro-i2v-1080p", "seedance-v1-pro-i2v", "1080p"),
    ("wavespeed", "bytedance/seedance-v1-lite-i2v-480p", "seedance-v1-lite-i2v", "480p"),
    ("byteplus", "seedance-1-5-pro-251215", "seedance-v1.5-pro-i2v", None),
    ("byteplus", "seedance-1-0-pro-250528", "seedance-v1-pro-i2v", None),
    ("byteplus", "seedance-1-0-lite-i2v-250428", "seedance-v1-lite-i2v", None),
    ("novita", "seedance-v1.5-pro-i2v", "seedance-v1.5-pro-i2v", None),
    ("highwayapi", "seedance-v1-lite-i2v", "seedance-v1-lite-i2v", None),
]


@pytest.mark.parametrize(("provider", "wire_id", "name", "pinned"), IDS)
def test_a_provider_id_names_the_same_model(provider: str, wire_id: str, name: str,
                                            pinned: str | None) -> None:
    request = GenerationRequest(prompt="p", image=IMAGE)

    assert providers.validate_request(provider, wire_id, request) == []
    model, resolved = providers.canonical(provider, wire_id, request)

    assert model == name
    assert resolved.resolution == pinned
    assert providers.get_spec(provider, wire_id) is providers.get_spec(provider, name)
    assert providers.provider_model_id(provider, model, resolved.resolution) == wire_id
    assert parse_fallback(f"{provider}:{wire_id}") == (provider, wire_id)


def test_a_per_resolution_id_refuses_another_resolution() -> None:
    request = GenerationRequest(prompt="p", image=IMAGE, resolution="1080p")

    problems = providers.validate_request(
        "wavespeed", "bytedance/seedance-v1-pro-i2v-720p", request)

    assert [p.field for p in problems] == ["resolution"]
    assert "720p endpoint" in problems[0].message and "'1080p'" in problems[0].message


def test_an_unknown_name_lists_every_accepted_one_for_that_provider() -> None:
    request = GenerationRequest(prompt="p", image=IMAGE)

    [problem] = providers.validate_request("wavespeed", "seedance-1-5-pro-251215", request)

    assert problem.field == "model"
    for accepted in ("seedance-v1.5-pro-i2v", "bytedance/seedance-v1.5-pro/image-to-video",
                     "bytedance/seedance-v1-lite-i2v-1080p"):
        assert accepted in problem.message
    assert "seedance-1-5-pro-251215'" in problem.message  # only as the name it got
    with pytest.raises(ConfigError, match="choose one of"):
        providers.get_spec("byteplus", "bytedance/seedance-v1.5-pro/image-to-video")


def test_the_price_of_a_pinned_id_is_the_price_of_its_resolution() -> None:
    request = GenerationRequest(prompt="p", image=IMAGE, duration=5)

    by_id = providers.estimate_cost("wavespeed", "bytedance/seedance-v1-pro-i2v-1080p", request)
    by_name = providers.estimate_cost(
        "wavespeed", "seedance-v1-pro-i2v", request.model_copy(update={"resolution": "1080p"}))

    assert by_id == by_name == pytest.approx(0.60)
