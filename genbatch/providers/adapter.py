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
from genbatch.providers.base import ModelSpec, TaskListing
from genbatch.providers.http import Auth, Envelope, JsonApi
from genbatch.providers.naming import lookup, pin_conflict, unknown_model
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
    # How a request of an account is authenticated (None: `Authorization: Bearer <key>`).
    auth: ClassVar[Auth | None] = None

    def __init__(
        self,
        settings: ProviderSettings,
        client: httpx.Client,
        *,
        submit_timeout_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.api = JsonApi(settings, client, self.envelope, submit_timeout_s=submit_timeout_s,
                           auth=type(self).auth)

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self.specs

    def spec(self, model: str) -> ModelSpec:
        """The spec `model` names (genbatch name or provider id); ConfigError if unknown."""
        found = lookup(self.specs, model)
        if found is None:
            raise ConfigError(unknown_model(self.name, model, self.specs))
        return found.spec

    def validate(self, model: str, request: GenerationRequest) -> list[FieldProblem]:
        return check_model(self.name, self.specs, model, request)

    def checked(self, model: str, request: GenerationRequest
                ) -> tuple[ModelSpec, GenerationRequest]:
        """The model's spec and the request as sent (a resolution the model id pins filled
        in); raises RequestInvalid rather than send a request doomed to fail."""
        problems = self.validate(model, request)
        if problems:
            raise RequestInvalid(problems)
        return resolve_model(self.name, self.specs, model, request)

    def submittable(self, model: str, request: GenerationRequest
                    ) -> tuple[ModelSpec, GenerationRequest]:
        """As `checked`, for submit: an invalid request raises PermanentProviderError
        (code REQUEST_INVALID) without sending anything, so the worker fails the item."""
        try:
            return self.checked(model, request)
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

    def upload(self, data: bytes, filename: str, content_type: str) -> str:
        """Most providers take data URIs and document no upload."""
        raise PermanentProviderError(self.name, "UPLOAD_UNSUPPORTED",
                                     f"{self.name} documents no file upload")

    def cancel(self, model: str, remote_id: str) -> bool:
        """Most providers document no cancel call: nothing is sent."""
        return False

    def list_tasks(self, model: str, request: GenerationRequest, since: float) -> TaskListing:
        raise NotImplementedError(f"{self.name} documents no task list")

    def lookup(self, model: str, client_ref: str) -> str | None:
        raise NotImplementedError(f"{self.name} documents no lookup by a client task id")

    def recent(self, model: str, limit: int) -> list[tuple[str, PollResult]]:
        raise NotImplementedError(f"{self.name} documents no task list with statuses")

    def download_headers(self, url: str) -> dict[str, str]:
        """Headers a download of `url` needs (Capability.KEYED_DOWNLOAD); most need none."""
        return {}


def check_model(provider: str, specs: Mapping[str, ModelSpec], model: str,
                request: GenerationRequest) -> list[FieldProblem]:
    """Every problem with `request` for `model` (genbatch name or provider id) on
    `provider`: an unknown model, a resolution other than the one its id pins, the rules."""
    found = lookup(specs, model)
    if found is None:
        return [FieldProblem("model", unknown_model(provider, model, specs))]
    if found.resolution and request.resolution not in (None, found.resolution):
        return [FieldProblem("resolution",
                             pin_conflict(model, found.resolution, request.resolution))]
    return validate(provider, found.spec, resolved(found.resolution, request))


def resolve_model(provider: str, specs: Mapping[str, ModelSpec], model: str,
                  request: GenerationRequest) -> tuple[ModelSpec, GenerationRequest]:
    """The spec `model` names and the request with the resolution its id pins filled in;
    ConfigError for an unknown model."""
    found = lookup(specs, model)
    if found is None:
        raise ConfigError(unknown_model(provider, model, specs))
    return found.spec, resolved(found.resolution, request)


def resolved(resolution: str | None, request: GenerationRequest) -> GenerationRequest:
    """`request` with the resolution a model id pins, when it leaves its own unset."""
    if resolution is None or request.resolution is not None:
        return request
    return request.model_copy(update={"resolution": resolution})


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
