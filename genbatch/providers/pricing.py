"""Price tables in USD. Every number here is an ESTIMATE from docs/wire/, never a quote.

* BytePlus (§5.5): USD per 1M output tokens, tokens ≈ W * H * fps * duration / 1024 (3P-302).
  The real count comes back as `usage.completion_tokens`, which `actual` prefers.
* Novita: no price is published for any Seedance endpoint (§2.7, §8 q7). We use the BytePlus
  list price as the estimate (Novita resells the same model); Novita does confirm flex = 50 %.
* HighwayAPI (§3): USD per generated second for 1.5 pro, from a 3P copy of jiekou's catalogue;
  silent is ½ and flex a further ½. No V1 price was found: None.
* WaveSpeed (§4.5): per-video prices divided into per-second rates; silent 1.5 pro is ½.
  No price for 1.5 pro 1080p, V1 pro 720p or V1 lite 1080p: None.
"""

from __future__ import annotations

from genbatch.models import GenerationRequest, PollResult, TaskStatus
from genbatch.providers.base import ModelSpec
from genbatch.providers.plugin import Prices

V15_PRO, V1_PRO, V1_LITE = "seedance-v1.5-pro-i2v", "seedance-v1-pro-i2v", "seedance-v1-lite-i2v"

# Nominal 16:9 pixel counts. Other ratios have about the same area by design, and these
# reproduce the per-second prices of HighwayAPI and WaveSpeed within a few per cent.
_PIXELS = {"480p": 854 * 480, "720p": 1280 * 720, "1080p": 1920 * 1080}
_FPS = 24

# USD per 1M output tokens: (default tier, flex tier), keyed by (model, audio on).
_TOKEN_PRICES: dict[tuple[str, bool], tuple[float, float]] = {
    (V15_PRO, True): (2.4, 1.2),
    (V15_PRO, False): (1.2, 0.6),
    (V1_PRO, False): (2.5, 1.25),
    (V1_LITE, False): (1.8, 0.9),  # 1.8 from a 3P doc, not SDK-BP; flex ½ is inferred
}

# HighwayAPI 1.5 pro: USD per generated second, audio on, default tier.
_HIGHWAY_PER_SECOND = {"480p": 0.024, "720p": 0.052, "1080p": 0.116}

# WaveSpeed: USD per generated second (audio on for 1.5 pro; V1 has no audio).
_WAVESPEED_PER_SECOND: dict[tuple[str, str], float] = {
    (V15_PRO, "480p"): 0.024,  # 0.12 per 5 s
    (V15_PRO, "720p"): 0.052,  # 0.26 per 5 s
    (V1_PRO, "480p"): 0.03,  # 0.15 per 5 s
    (V1_PRO, "1080p"): 0.12,  # 0.60 per 5 s
    (V1_LITE, "480p"): 0.016,  # 0.08 per 5 s
    (V1_LITE, "720p"): 0.032,  # 0.16 per 5 s
}

# Only succeeded tasks are billed (SDK-BP pricing.py); assumed for the other providers too.
_UNBILLED = frozenset({TaskStatus.FAILED, TaskStatus.EXPIRED, TaskStatus.CANCELLED})


def estimate_tokens(resolution: str, duration_s: int, fps: int = _FPS) -> int | None:
    """Seedance output tokens ≈ W * H * fps * duration / 1024 (docs/wire/byteplus.md §5.5)."""
    pixels = _PIXELS.get(resolution)
    return None if pixels is None else round(pixels * fps * duration_s / 1024)


def estimate(prices: Prices | None, spec: ModelSpec, request: GenerationRequest
             ) -> float | None:
    """Estimated USD for one request; None when no price is known."""
    return None if prices is None else _round(prices.estimate(spec, request))


def actual(prices: Prices | None, spec: ModelSpec, request: GenerationRequest,
           result: PollResult) -> float | None:
    """USD from reported usage where the provider prices it, else the estimate; 0 for a
    task that was not billed."""
    if result.status in _UNBILLED:
        return 0.0
    if prices is not None and prices.actual is not None:
        cost = prices.actual(spec, request, result)
        if cost is not None:
            return _round(cost)
    return estimate(prices, spec, request)


def by_reported_tokens(spec: ModelSpec, request: GenerationRequest, result: PollResult
                       ) -> float | None:
    """Seedance's reported `completion_tokens` at the token price (BytePlus, Novita)."""
    if result.usage_tokens is None:
        return None
    return _token_cost(spec, request, result.usage_tokens)


def _audio(spec: ModelSpec, request: GenerationRequest) -> bool:
    return spec.supports_audio and request.generate_audio is not False  # default: on


def _flex(request: GenerationRequest) -> bool:
    return request.service_tier == "flex"


def _shape(spec: ModelSpec, request: GenerationRequest) -> tuple[str | None, int]:
    return request.resolution or spec.default_resolution, request.duration or spec.default_duration


def _token_cost(spec: ModelSpec, request: GenerationRequest, tokens: int) -> float | None:
    prices = _TOKEN_PRICES.get((spec.name, _audio(spec, request)))
    if prices is None:
        return None
    default, flex = prices
    return tokens * (flex if _flex(request) else default) / 1_000_000


def by_tokens(spec: ModelSpec, request: GenerationRequest) -> float | None:
    resolution, duration = _shape(spec, request)
    tokens = estimate_tokens(resolution, duration) if resolution else None
    return None if tokens is None else _token_cost(spec, request, tokens)


def highwayapi(spec: ModelSpec, request: GenerationRequest) -> float | None:
    resolution, duration = _shape(spec, request)
    rate = _HIGHWAY_PER_SECOND.get(resolution or "") if spec.name == V15_PRO else None
    if rate is None:
        return None
    if not _audio(spec, request):
        rate /= 2
    if _flex(request):
        rate /= 2
    return rate * duration


def wavespeed(spec: ModelSpec, request: GenerationRequest) -> float | None:
    resolution, duration = _shape(spec, request)
    rate = _WAVESPEED_PER_SECOND.get((spec.name, resolution or ""))
    if rate is None:
        return None
    if spec.supports_audio and not _audio(spec, request):
        rate /= 2
    return rate * duration


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


# The price tables of genbatch's own providers (each plugin's `prices`).
SEEDANCE_TOKENS = Prices(by_tokens, by_reported_tokens)
HIGHWAYAPI = Prices(highwayapi)
WAVESPEED = Prices(wavespeed)
