"""Static request validation, driven by `ModelSpec`: the same rules for every provider.

Every problem names its field, the allowed values and the model and provider, e.g.
`duration: must be 5 or 10 for seedance-v1-pro-i2v on novita, got 7`. Image *content*
(format, size, pixels) is checked elsewhere (genbatch/images.py); here only the kind of
reference (URL vs data URI / local file), for providers that take URLs only, and the size
of what a provider's upload takes (WaveSpeed: 20 MB).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

from genbatch.errors import FieldProblem
from genbatch.models import GenerationRequest
from genbatch.providers.base import ModelSpec

DISPLAY_NAMES = {
    "novita": "Novita",
    "highwayapi": "HighwayAPI",
    "wavespeed": "WaveSpeed",
    "byteplus": "BytePlus",
    "fal": "fal",
    "runway": "Runway",
    "kling": "Kling",
    "veo": "Veo (Gemini API)",
}
SERVICE_TIERS = ("default", "flex")
EXPIRES_AFTER_RANGE = (3600, 259200)  # seconds, counted from the task's created_at
Rules = Callable[[ModelSpec, GenerationRequest], list[FieldProblem]]
_RATIO_ORDER = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "9:21", "adaptive")


def not_taken(spec: ModelSpec) -> frozenset[str]:
    """Request fields `spec` has no wire name for: `extra["not_taken"]`, and ratio or
    resolution when it lists none (the clip follows the image, e.g. Kling on fal)."""
    fields = set(spec.extra.get("not_taken", ()))
    if not spec.ratios:
        fields.add("ratio")
    if not spec.resolutions:
        fields.add("resolution")
    return frozenset(fields)


def validate(provider: str, spec: ModelSpec, request: GenerationRequest) -> list[FieldProblem]:
    """Every reason `request` does not fit `spec` on `provider`; empty when it fits. A model
    with rules of its own (`spec.extra["rules"]`, a function of (spec, request); Kling, Veo)
    is checked by them: they call `common_rules` for what they share."""
    rules: Rules | None = spec.extra.get("rules")
    return rules(spec, request) if rules is not None else common_rules(provider, spec, request)


def common_rules(provider: str, spec: ModelSpec, request: GenerationRequest
                 ) -> list[FieldProblem]:
    """The rules every provider shares, driven by `spec`."""
    where = f"{spec.name} on {provider}"
    display = DISPLAY_NAMES.get(provider, provider)
    problems = _not_taken(where, spec, request)
    request = request.model_copy(update=dict.fromkeys(not_taken(spec) & _CLEARABLE))
    return [
        *problems,
        *_too_big_for_a_data_uri(display, spec, request),
        *_prompt_problems(spec, request, where),
        *_image_problems(spec, request, where, display),
        *_shape_problems(spec, request, where),
        *_feature_problems(spec, request, where),
        *_tier_problems(spec, request, where, display, provider),
    ]


def _unsupported(field: str, where: str) -> FieldProblem:
    return FieldProblem(field, f"{where} does not take {field}; leave it unset")


def _prompt_problems(spec: ModelSpec, request: GenerationRequest,
                     where: str) -> Iterator[FieldProblem]:
    if spec.prompt_required and not request.prompt.strip():
        yield FieldProblem("prompt", f"is required for {where}")
    if spec.prompt_max_chars is not None and len(request.prompt) > spec.prompt_max_chars:
        yield FieldProblem(
            "prompt",
            f"must be at most {spec.prompt_max_chars} characters for {where}, "
            f"got {len(request.prompt)}",
        )


def _image_problems(spec: ModelSpec, request: GenerationRequest, where: str,
                    display: str) -> Iterator[FieldProblem]:
    """The kind of each image reference the provider takes, and the size it uploads."""
    for field in ("image", "last_image"):
        ref = getattr(request, field)
        # An s3:// image goes to a URL-only provider as a presigned https URL.
        if ref is None or _is_http_url(ref) or _is_object_url(ref) or spec.accepts_data_uri:
            continue
        if spec.upload_max_bytes is None:
            got = "a data URI" if _is_data_uri(ref) else \
                "a chained frame (stored by genbatch)" if ref.startswith("@") else "a local file"
            yield FieldProblem(field, f"{display} takes image URLs (http/https) only, got "
                               f"{got}; upload the image and give its URL")
        elif (size := _local_size(ref)) is not None and size > spec.upload_max_bytes:
            yield FieldProblem(field, f"{display} uploads images up to "
                               f"{_mb(spec.upload_max_bytes)}, got {_mb(size)}")
    if request.last_image is not None and not spec.supports_last_image:
        yield _unsupported("last_image", where)


def _shape_problems(spec: ModelSpec, request: GenerationRequest,
                    where: str) -> Iterator[FieldProblem]:
    """The video's resolution, ratio and duration, and the seed."""
    if request.resolution is not None and request.resolution not in spec.resolutions:
        yield FieldProblem("resolution",
                           _one_of(_by_number(spec.resolutions), where, request.resolution))
    if request.ratio is not None and request.ratio not in spec.ratios:
        yield FieldProblem("ratio", _one_of(_ratios(spec.ratios), where, request.ratio))
    if request.duration is not None and request.duration not in spec.durations:
        yield FieldProblem("duration", _ints_message(spec.durations, where, request.duration))
    if request.seed is not None and not _in_range(request.seed, spec.seed_min, spec.seed_max):
        if spec.seed_max is None:
            yield FieldProblem(
                "seed", f"must be at least {spec.seed_min} for {where}, got {request.seed}")
        else:
            yield FieldProblem(
                "seed",
                f"must be between {spec.seed_min} and {spec.seed_max} for {where}, "
                f"got {request.seed}",
            )


def _feature_problems(spec: ModelSpec, request: GenerationRequest,
                      where: str) -> Iterator[FieldProblem]:
    """The options only some models take: fps, audio, watermark."""
    if request.fps is not None:
        if not spec.supports_fps:
            yield _unsupported("fps", where)
        elif request.fps not in spec.fps_values:
            yield FieldProblem("fps", _ints_message(spec.fps_values, where, request.fps))
    if request.generate_audio is not None and not spec.supports_audio:
        yield _unsupported("generate_audio", where)
    if request.watermark is not None and not spec.supports_watermark:
        yield _unsupported("watermark", where)


def _tier_problems(spec: ModelSpec, request: GenerationRequest, where: str, display: str,
                   provider: str) -> Iterator[FieldProblem]:
    """The service tier and how long the provider may take (execution_expires_after)."""
    if request.service_tier is not None:
        if not spec.supports_service_tier:
            yield FieldProblem(
                "service_tier",
                f"{display} has no flex tier for {spec.name}; service_tier is "
                f"not accepted on {provider}, leave it unset (got {request.service_tier!r})",
            )
        elif request.service_tier not in SERVICE_TIERS:
            yield FieldProblem("service_tier",
                               _one_of(list(SERVICE_TIERS), where, request.service_tier))
    if request.execution_expires_after is not None:
        low, high = EXPIRES_AFTER_RANGE
        if not spec.supports_expires_after:
            yield _unsupported("execution_expires_after", where)
        elif not low <= request.execution_expires_after <= high:
            yield FieldProblem(
                "execution_expires_after",
                f"must be between {low} and {high} seconds for "
                f"{where}, got {request.execution_expires_after}",
            )


def _not_taken(where: str, spec: ModelSpec, request: GenerationRequest) -> list[FieldProblem]:
    return [FieldProblem(field, f"{where} does not take {field}; leave it unset")
            for field in sorted(not_taken(spec)) if getattr(request, field, None) is not None]


def _too_big_for_a_data_uri(display: str, spec: ModelSpec, request: GenerationRequest
                            ) -> list[FieldProblem]:
    """Images over the model's data URI limit (`extra["data_uri_max_chars"]`, Runway)."""
    limit = spec.extra.get("data_uri_max_chars")
    if limit is None or not spec.accepts_data_uri:
        return []
    problems = []
    for field in ("image", "last_image"):
        ref = getattr(request, field)
        chars = None if ref is None else _data_uri_chars(ref)
        if chars is not None and chars > limit:
            problems.append(FieldProblem(
                field, f"{display} takes data URIs up to {_mb(limit)} and this image makes "
                f"one of {_mb(chars)}; give an https URL instead"))
    return problems


_CLEARABLE = frozenset({"ratio", "resolution", "seed", "camera_fixed", "last_image"})


def _data_uri_chars(ref: str) -> int | None:
    """The length of the data URI `ref` is, or that a local file becomes (base64)."""
    if _is_data_uri(ref):
        return len(ref)
    if _is_http_url(ref) or _is_object_url(ref):
        return None
    size = _local_size(ref)
    return None if size is None else (size + 2) // 3 * 4 + 32


def _is_http_url(ref: str) -> bool:
    return ref.strip().lower().startswith(("http://", "https://"))


def _is_object_url(ref: str) -> bool:
    return ref.strip().lower().startswith("s3://")


def _is_data_uri(ref: str) -> bool:
    return ref.lstrip().lower().startswith("data:")


def _local_size(ref: str) -> int | None:
    """Bytes of a data URI's image or of a local file; None when unknown (a stored copy)."""
    if _is_data_uri(ref):
        payload = ref.partition(",")[2].strip()
        return len(payload) * 3 // 4 - payload[-2:].count("=")
    try:
        return os.stat(ref).st_size
    except (OSError, ValueError):
        return None


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")


def _in_range(value: int, low: int, high: int | None) -> bool:
    return value >= low and (high is None or value <= high)


def _alternatives(values: Iterable[object]) -> str:
    items = [str(v) for v in values]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _one_of(allowed: list[str], where: str, got: str) -> str:
    return f"must be {_alternatives(allowed)} for {where}, got {got!r}"


def _ints_message(allowed: frozenset[int], where: str, got: int) -> str:
    ordered = sorted(allowed)
    contiguous = ordered == list(range(ordered[0], ordered[-1] + 1))
    if len(ordered) > 2 and contiguous:
        return f"must be between {ordered[0]} and {ordered[-1]} for {where}, got {got}"
    return f"must be {_alternatives(ordered)} for {where}, got {got}"


def _by_number(values: frozenset[str]) -> list[str]:
    """`480p, 720p, 1080p` in numeric order."""
    return sorted(values, key=lambda v: (int("".join(c for c in v if c.isdigit()) or 0), v))


def _ratios(values: frozenset[str]) -> list[str]:
    known = [r for r in _RATIO_ORDER if r in values]
    return known + sorted(values - set(known))


def no_flex(display: str, provider: str, got: str, offered: Iterable[str]) -> FieldProblem:
    """service_tier on a provider without a flex tier (Kling, Veo): refused, naming the
    providers that `offered` one. Overnight work there is a client-side deadline
    (execution_expires_after)."""
    return FieldProblem("service_tier", f"{display} has no flex tier; service_tier is not "
                        f"accepted on {provider} (got {got!r}). Among genbatch's providers "
                        f"{', '.join(offered)} offer service_tier flex; on "
                        f"{provider} use execution_expires_after for an overnight deadline")
