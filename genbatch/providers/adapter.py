"""What every adapter shares: model lookup, validation, flat bodies, pricing, lenient parsing.

A concrete adapter sets `name`, `specs` and `envelope` and implements `build_body`, `submit`
and `poll` (and `cancel` where the provider can cancel).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from genbatch.config import ProviderSettings
from genbatch.errors import ConfigError, FieldProblem, PermanentProviderError, RequestInvalid
from genbatch.models import GenerationRequest, PollResult
from genbatch.providers import pricing
from genbatch.providers.base import ModelSpec
from genbatch.providers.http import Envelope, JsonApi
from genbatch.providers.validation import validate

# Request fields that go on the wire under their own name, when set.
_PLAIN_FIELDS = (
    "last_image",
    "duration",
    "seed",
    "camera_fixed",
    "generate_audio",
    "watermark",
    "fps",
    "service_tier",
    "execution_expires_after",
)


def unknown_model(provider: str, model: str, specs: Mapping[str, ModelSpec]) -> str:
    return f"unknown model {model!r} on {provider}; choose one of {', '.join(specs)}"


def wire_resolution(spec: ModelSpec, request: GenerationRequest) -> str | None:
    """The resolution to send: the request's, or ours when the provider insists on one."""
    if request.resolution is not None:
        return request.resolution
    return spec.default_resolution if spec.resolution_required else None


def flat_body(spec: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
    """The request as one flat JSON object (Novita, HighwayAPI, WaveSpeed); unset fields out."""
    body: dict[str, Any] = {}
    if request.prompt:
        body["prompt"] = request.prompt
    body["image"] = request.image
    resolution = wire_resolution(spec, request)
    if resolution is not None:
        body["resolution"] = resolution
    if request.ratio is not None:
        body[spec.ratio_field] = request.ratio
    for field in _PLAIN_FIELDS:
        value = getattr(request, field)
        if value is not None:
            body[field] = value
    return body


class Adapter:
    """Base of the provider adapters; satisfies `genbatch.providers.base.Provider`."""

    name: str = ""
    specs: ClassVar[Mapping[str, ModelSpec]] = {}
    envelope: ClassVar[Envelope]

    def __init__(
        self,
        settings: ProviderSettings,
        client: httpx.Client,
        *,
        submit_timeout_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.api = JsonApi(settings, client, self.envelope, submit_timeout_s=submit_timeout_s)

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self.specs

    def spec(self, model: str) -> ModelSpec:
        try:
            return self.specs[model]
        except KeyError:
            raise ConfigError(unknown_model(self.name, model, self.specs)) from None

    def validate(self, model: str, request: GenerationRequest) -> list[FieldProblem]:
        if model not in self.specs:
            return [FieldProblem("model", unknown_model(self.name, model, self.specs))]
        return validate(self.name, self.specs[model], request)

    def checked_spec(self, model: str, request: GenerationRequest) -> ModelSpec:
        """The model's spec; raises RequestInvalid rather than send a request doomed to fail."""
        problems = self.validate(model, request)
        if problems:
            raise RequestInvalid(problems)
        return self.specs[model]

    def submittable_spec(self, model: str, request: GenerationRequest) -> ModelSpec:
        """As `checked_spec`, for submit: an invalid request raises PermanentProviderError
        (code REQUEST_INVALID) without sending anything, so the worker fails the item."""
        try:
            return self.checked_spec(model, request)
        except RequestInvalid as exc:
            raise PermanentProviderError(self.name, "REQUEST_INVALID", f"not sent: {exc}") from None

    def build_body(self, model: str, request: GenerationRequest) -> dict[str, Any]:
        raise NotImplementedError

    def submit(
        self, model: str, request: GenerationRequest, *, webhook_url: str | None = None
    ) -> str:
        raise NotImplementedError

    def poll(self, model: str, remote_id: str) -> PollResult:
        raise NotImplementedError

    def cancel(self, model: str, remote_id: str) -> bool:
        """Most providers document no cancel call: nothing is sent."""
        return False

    def estimate_cost(self, model: str, request: GenerationRequest) -> float | None:
        return pricing.estimate(self.name, self.spec(model), request)

    def actual_cost(
        self, model: str, request: GenerationRequest, result: PollResult
    ) -> float | None:
        return pricing.actual(self.name, self.spec(model), request, result)


# -- lenient readers for poll bodies: numbers may be strings, keys may be missing -----------


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def as_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    number = as_float(value)
    return int(number) if number is not None and number == int(number) else None


def first(value: Any) -> Any:
    """The first item of a list (None when empty or not a list)."""
    return value[0] if isinstance(value, list) and value else None


def progress(value: Any) -> float | None:
    number = as_float(value)
    return None if number is None else min(100.0, max(0.0, number))
