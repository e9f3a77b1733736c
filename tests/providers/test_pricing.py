"""Price estimates (USD) from the docs/wire/ tables, and actual cost from reported usage."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers import actual_cost, estimate_cost
from genbatch.providers.base import Provider
from genbatch.providers.pricing import estimate_tokens

Build = Callable[..., Provider]
Req = Callable[..., GenerationRequest]
V15, V1_PRO, V1_LITE = "seedance-v1.5-pro-i2v", "seedance-v1-pro-i2v", "seedance-v1-lite-i2v"


def test_token_formula_matches_the_worked_example() -> None:
    # docs/wire/byteplus.md §5.5: 1280 x 720 x 24 x 5 / 1024 = 108,000 tokens.
    assert estimate_tokens("720p", 5) == 108_000
    assert estimate_tokens("4k", 5) is None


@pytest.mark.parametrize(
    ("fields", "usd"),
    [
        ({}, 0.2592),  # 720p 5 s with audio at $2.4/M: the §5.5 example, about $0.26
        ({"generate_audio": False}, 0.1296),
        ({"service_tier": "flex"}, 0.1296),
        ({"generate_audio": False, "service_tier": "flex"}, 0.0648),
        ({"duration": 10}, 0.5184),
    ],
)
def test_byteplus_15_pro(req: Req, fields: dict[str, object], usd: float) -> None:
    assert estimate_cost("byteplus", V15, req(**fields)) == pytest.approx(usd)


def test_byteplus_v1_uses_its_own_price_and_assumes_1080p_when_unset(req: Req) -> None:
    tokens_1080p_5s = 1920 * 1080 * 24 * 5 / 1024
    assert estimate_cost("byteplus", V1_PRO, req()) == pytest.approx(tokens_1080p_5s * 2.5e-6)
    assert estimate_cost("byteplus", V1_LITE, req(resolution="480p")) == pytest.approx(
        854 * 480 * 24 * 5 / 1024 * 1.8e-6, rel=1e-4
    )


def test_novita_is_estimated_at_the_byteplus_list_price(req: Req) -> None:
    request = req(resolution="480p", duration=8, service_tier="flex")
    assert estimate_cost("novita", V15, request) == estimate_cost("byteplus", V15, request)


@pytest.mark.parametrize(
    ("fields", "usd"),
    [
        ({"resolution": "480p"}, 0.024 * 5),
        ({"resolution": "720p", "duration": 10}, 0.52),
        ({"resolution": "1080p"}, 0.116 * 5),
        ({"resolution": "480p", "generate_audio": False}, 0.012 * 5),
        (
            {"resolution": "480p", "generate_audio": False, "service_tier": "flex", "duration": 12},
            0.006 * 12,
        ),
    ],
)
def test_highwayapi_15_pro_per_second(req: Req, fields: dict[str, object], usd: float) -> None:
    assert estimate_cost("highwayapi", V15, req(**fields)) == pytest.approx(usd)


def test_highwayapi_v1_price_is_unknown(req: Req) -> None:
    assert estimate_cost("highwayapi", V1_PRO, req()) is None


@pytest.mark.parametrize(
    ("model", "fields", "usd"),
    [
        (V15, {"resolution": "480p"}, 0.12),
        (V15, {"resolution": "480p", "generate_audio": False}, 0.06),
        (V15, {"resolution": "720p", "duration": 10}, 0.52),
        (V15, {}, 0.26),  # unset resolution is WaveSpeed's default, 720p
        (V1_PRO, {"resolution": "480p", "duration": 10}, 0.30),
        (V1_PRO, {"resolution": "1080p"}, 0.60),
        (V1_LITE, {"resolution": "720p", "duration": 10}, 0.32),
        (V1_PRO, {"resolution": "720p"}, None),  # not found in any source
    ],
)
def test_wavespeed_per_video_prices(
    req: Req, model: str, fields: dict[str, object], usd: float | None
) -> None:
    cost = estimate_cost("wavespeed", model, req(**fields))
    assert cost == (None if usd is None else pytest.approx(usd))


def test_actual_cost_prefers_reported_tokens(req: Req) -> None:
    result = PollResult(status=TaskStatus.SUCCEEDED, usage_tokens=108_900)
    cost = actual_cost("byteplus", V15, req(service_tier="flex"), result)
    assert cost == pytest.approx(108_900 * 1.2e-6)


def test_actual_cost_falls_back_to_the_estimate(req: Req) -> None:
    result = PollResult(status=TaskStatus.SUCCEEDED)
    assert actual_cost("wavespeed", V15, req(), result) == pytest.approx(0.26)


@pytest.mark.parametrize("status", [TaskStatus.FAILED, TaskStatus.EXPIRED, TaskStatus.CANCELLED])
def test_unsuccessful_tasks_cost_nothing(req: Req, status: TaskStatus) -> None:
    result = PollResult(status=status, usage_tokens=5000)
    assert actual_cost("byteplus", V15, req(), result) == 0.0
