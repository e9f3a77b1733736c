"""fal's image-to-video models behind its queue, and their prices.

Every field below is from the model's own fal page (`fal.ai/models/<id>/api`, its
`llms.txt`) as quoted in /work/shared/video-apis.md §1.1 and checked against the stored
copies of those pages; where a page says nothing the comment says what is assumed.
fal takes durations as strings ("5"), images as URLs (`image_url`; a local image or data URI
is uploaded to fal's storage first, fal.py), and the end frame under its own name per model
(`extra["last_image_field"]`).

Prices are fal's list prices (USD): Kling per 5 s clip plus a per-second rate beyond it,
Seedance per output token (tokens ≈ W * H * 24 * duration / 1024, the same formula as
BytePlus's; fal's page: "$2.5 per million video tokens", $0.62 for 1080p 5 s).
fal has no flex tier: `X-Fal-Queue-Priority: low` only lets other work go first, so a flex
row is priced like any other.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from genbatch.images import MAX_BYTES
from genbatch.models import GenerationRequest
from genbatch.providers import pricing
from genbatch.providers.base import ModelSpec
from genbatch.providers.plugin import Prices

# fal's clients upload in one part up to 90 MB (multipart above); images stay within the
# common 30 MB rule (images.py) well before that.
UPLOAD_MAX_BYTES = MAX_BYTES
KLING_RATIOS = frozenset({"16:9", "9:16", "1:1"})  # the clip follows the image; see extra
SEEDANCE_RATIOS = frozenset({"21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "adaptive"})

# Kling 2.1 standard i2v: prompt up to 2500 characters, duration "5" | "10"; no aspect
# ratio or resolution (the image's), no seed, no end frame on the standard tier (refused
# by validation.py: `not_taken`); $0.28 per 5 s, +$0.056/s.
KLING_V21_STD = ModelSpec(
    name="kling-v2.1-std-i2v",
    wire_model="fal-ai/kling-video/v2.1/standard/image-to-video",
    ratio_field="",
    ratios=frozenset(),
    resolutions=frozenset(),
    durations=frozenset({5, 10}),
    prompt_required=True,
    prompt_max_chars=2500,
    supports_last_image=False,
    supports_service_tier=True,  # X-Fal-Queue-Priority: low
    supports_expires_after=True,  # X-Fal-Request-Timeout
    accepts_data_uri=False,  # uploaded to fal's storage first, as fal's clients do
    upload_max_bytes=UPLOAD_MAX_BYTES,
    default_duration=5,
    typical_seconds=120.0,
    extra={"base_usd": 0.28, "per_s_usd": 0.056, "not_taken": ("seed", "camera_fixed")},
)
# Kling 2.5 turbo pro i2v: as 2.1 standard (its spec, replaced where they differ), plus an
# end frame (`tail_image_url`);
# $0.35 per 5 s, +$0.07/s.
KLING_V25_TURBO_PRO = replace(
    KLING_V21_STD,
    name="kling-v2.5-turbo-pro-i2v",
    wire_model="fal-ai/kling-video/v2.5-turbo/pro/image-to-video",
    supports_last_image=True,
    typical_seconds=90.0,
    extra={"base_usd": 0.35, "per_s_usd": 0.07, "not_taken": ("seed", "camera_fixed"),
           "last_image_field": "tail_image_url"},
)
# Seedance 1.0 pro i2v on fal: aspect_ratio (auto = genbatch's adaptive), resolution
# 480p/720p/1080p (fal's default 1080p), duration "2".."12", camera_fixed, seed,
# end frame `end_image_url`. The same model as Novita's and WaveSpeed's
# seedance-v1-pro-i2v, so a Seedance row can fall back to `fal:seedance-v1-pro-i2v`.
SEEDANCE_V1_PRO = ModelSpec(
    name="seedance-v1-pro-i2v",
    wire_model="fal-ai/bytedance/seedance/v1/pro/image-to-video",
    ratio_field="aspect_ratio",
    ratios=SEEDANCE_RATIOS,
    resolutions=frozenset({"480p", "720p", "1080p"}),
    durations=frozenset(range(2, 13)),
    seed_min=-1,
    seed_max=2147483647,
    prompt_required=True,
    supports_last_image=True,
    supports_service_tier=True,
    supports_expires_after=True,
    accepts_data_uri=False,
    upload_max_bytes=UPLOAD_MAX_BYTES,
    default_resolution="1080p",
    default_duration=5,
    typical_seconds=90.0,
    extra={"usd_per_m_tokens": 2.5, "last_image_field": "end_image_url",
           "ratio_wire": {"adaptive": "auto"}},
)

MODELS = MappingProxyType({s.name: s for s in (KLING_V21_STD, KLING_V25_TURBO_PRO,
                                               SEEDANCE_V1_PRO)})


def estimate(spec: ModelSpec, request: GenerationRequest) -> float | None:
    """fal's list price of one request (USD)."""
    duration = request.duration or spec.default_duration
    extra = spec.extra
    if "usd_per_m_tokens" in extra:
        resolution = request.resolution or spec.default_resolution or "1080p"
        tokens = pricing.estimate_tokens(resolution, duration)
        return None if tokens is None else tokens * float(extra["usd_per_m_tokens"]) / 1e6
    base, per_s = float(extra["base_usd"]), float(extra["per_s_usd"])
    return base + max(0, duration - 5) * per_s


PRICES = Prices(estimate)
