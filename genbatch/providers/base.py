"""The one seam between genbatch and a generation API.

A `Provider` turns a normalised `GenerationRequest` into its own wire body, submits it, parses
its poll responses into a normalised `PollResult`, and translates every failure into the
`genbatch.errors` tree (here, and nowhere else). Adapters take an injected `httpx.Client`, so
tests drive them with `httpx.MockTransport` or point them at the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from genbatch.errors import FieldProblem
from genbatch.models import GenerationRequest, PollResult


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What one model on one provider accepts. Drives validation and body building.

    `name` is genbatch's provider-neutral model name (the Novita slug, e.g.
    `seedance-v1.5-pro-i2v`); `wire_model` is what goes on the wire (a URL path segment or
    a body `model` id, depending on the provider).
    """

    name: str
    wire_model: str
    ratio_field: str  # "ratio" or "aspect_ratio" (wire name of our `ratio`)
    ratios: frozenset[str]
    resolutions: frozenset[str]
    durations: frozenset[int]
    seed_min: int = -1
    seed_max: int | None = 4294967295
    prompt_required: bool = True
    prompt_max_chars: int | None = None
    resolution_required: bool = False
    supports_last_image: bool = True
    supports_audio: bool = False
    supports_watermark: bool = False
    supports_fps: bool = False
    fps_values: frozenset[int] = frozenset({24})
    supports_service_tier: bool = False
    supports_expires_after: bool = False
    accepts_data_uri: bool = True
    # False: the API takes image bytes only, no URL (Veo); the worker fetches an http(s) or
    # s3:// image itself, confined, and sends it inline (worker/remote_images.py).
    image_urls: bool = True
    # Local files and data URIs are uploaded first and sent as the URL the provider hosts
    # (WaveSpeed, docs/wire/notes.md §9); at most this many bytes each.
    upload_max_bytes: int | None = None
    default_resolution: str | None = None
    default_duration: int = 5
    typical_seconds: float = 60.0  # a typical generation time, for the first poll
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RemoteTask:
    """One task in a provider's task list: enough to tell whose it is."""

    id: str
    model: str  # the provider's model id as listed
    created_at: float  # Unix seconds, the provider's clock
    status: str = ""
    seed: int | None = None  # where the list shows it: tells concurrent tasks apart


@dataclass(frozen=True, slots=True)
class TaskListing:
    """Tasks of one model created since a time, newest first. `complete`: the pages went
    back past that time (or ran out), so a task created since then that is not listed was
    not created — as far as the provider's list is up to date."""

    tasks: list[RemoteTask]
    complete: bool


@runtime_checkable
class Provider(Protocol):
    """One provider account's adapter."""

    name: str

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        """The models this provider serves, by genbatch model name."""

    def validate(self, model: str, request: GenerationRequest) -> list[FieldProblem]:
        """Every reason `request` is not acceptable for `model`; empty when it is."""

    def build_body(self, model: str, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body to submit. Images must already be URLs or data URIs."""

    def submit(
        self, model: str, request: GenerationRequest, *, webhook_url: str | None = None
    ) -> str:
        """Create the remote task; return its id.

        `webhook_url`: where the provider should POST the finished task (WaveSpeed, Novita);
        providers without webhooks ignore it. A provider declaring Capability.LOOKUP also
        takes `client_ref=` (our attempt id, sent where the provider echoes it back).

        Raises RateLimited / RetryableProviderError when the request provably created
        nothing, PermanentProviderError when it was refused, AmbiguousSubmit when the task
        may exist (read timeout, dropped connection after sending, 5xx).
        """

    def upload(self, data: bytes, filename: str, content_type: str) -> str:
        """Host an input image at the provider (WaveSpeed); its URL. Raises
        PermanentProviderError when refused (or the provider has no upload),
        RetryableProviderError for anything else: an upload costs nothing."""

    def poll(self, model: str, remote_id: str) -> PollResult:
        """Fetch the remote task's status. Raises RetryableProviderError for 429/5xx/network,
        PermanentProviderError for 4xx (e.g. unknown task)."""

    def cancel(self, model: str, remote_id: str) -> bool:
        """Cancel a remote task where the provider allows it; False when it cannot."""

    def list_tasks(self, model: str, request: GenerationRequest, since: float) -> TaskListing:
        """The account's tasks of the model `request` runs on, created at or after `since`,
        newest first (a read: it never polls a task). NotImplementedError where the provider
        has no task list; RetryableProviderError / PermanentProviderError as for poll."""

    def lookup(self, model: str, client_ref: str) -> str | None:
        """The id of the task a submit with `client_ref` created; None when the provider
        says there is none (Capability.LOOKUP). RetryableProviderError when it cannot tell."""

    def recent(self, model: str, limit: int) -> list[tuple[str, PollResult]]:
        """The account's newest `limit` tasks of `model`'s kind, each (task id, status as a
        poll would report it), newest first (Capability.LIST_POLL). Raises as poll does."""

    def download_headers(self, url: str) -> dict[str, str]:
        """Headers (the key) a download of `url` needs; sent only to the provider's own
        host, never after a redirect to another (Capability.KEYED_DOWNLOAD)."""
