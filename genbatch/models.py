"""The normalised shapes every part shares: a generation request and a poll result.

The request's field names are also the manifest's column names. `None` means "not set":
the adapter leaves the field out and the provider applies its own default.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

REQUEST_FIELDS: tuple[str, ...] = (
    "prompt",
    "image",
    "last_image",
    "resolution",
    "ratio",
    "duration",
    "seed",
    "camera_fixed",
    "generate_audio",
    "watermark",
    "fps",
    "service_tier",
    "execution_expires_after",
)

# Batch priorities (`submit --priority`), dispatched in this order.
PRIORITIES: tuple[str, ...] = ("high", "normal", "low")


class GenerationRequest(BaseModel):
    """One image-to-video generation, in provider-neutral terms.

    `image` and `last_image` hold an http(s) URL, a `data:image/...;base64,` URI, or a
    local path / stored-object reference that the worker turns into a data URI.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    prompt: str = ""
    image: str = Field(min_length=1)
    last_image: str | None = None
    resolution: str | None = None
    ratio: str | None = None
    duration: int | None = None
    seed: int | None = None
    camera_fixed: bool | None = None
    generate_audio: bool | None = None
    watermark: bool | None = None
    fps: int | None = None
    service_tier: str | None = None
    execution_expires_after: int | None = None


class TaskStatus(StrEnum):
    """A remote task's status, normalised across providers."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_TASK


_TERMINAL_TASK = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.EXPIRED, TaskStatus.CANCELLED}
)


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll of a remote task tells us. Every field but `status` may be missing."""

    status: TaskStatus
    raw_status: str = ""
    progress: float | None = None  # 0..100
    eta_s: float | None = None  # provider's estimate of seconds to completion
    video_url: str | None = None
    video_ttl_s: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    usage_tokens: int | None = None
    usage_seconds: float | None = None
    seed: int | None = None


class ItemState(StrEnum):
    """Where one manifest line is in genbatch's own pipeline (see DESIGN.md)."""

    PENDING = "pending"  # validated, waiting for a dispatch slot
    DISPATCHED = "dispatched"  # a submit task is queued
    SUBMITTING = "submitting"  # attempt recorded, POST in progress
    SUBMITTED = "submitted"  # remote task exists; being polled
    DOWNLOADING = "downloading"  # remote task succeeded; fetching the video
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    AMBIGUOUS = "ambiguous"  # submit outcome unknown: maybe created, maybe billed

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        ItemState.SUCCEEDED,
        ItemState.FAILED,
        ItemState.EXPIRED,
        ItemState.CANCELLED,
        ItemState.AMBIGUOUS,
    }
)
# States that hold a generation slot at the provider account.
IN_FLIGHT_STATES = frozenset({ItemState.DISPATCHED, ItemState.SUBMITTING, ItemState.SUBMITTED})


class BatchStatus(StrEnum):
    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


# A batch's counters (its hash fields): `total`, then one per place an item can be.
BATCH_COUNTERS: tuple[str, ...] = (
    "total", "pending", "in_flight", "downloading",
    "succeeded", "failed", "expired", "cancelled", "ambiguous",
)
# The counters of items not yet in a terminal state.
OPEN_COUNTERS: tuple[str, ...] = ("pending", "in_flight", "downloading")
