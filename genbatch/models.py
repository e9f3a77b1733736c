"""The normalised shapes every part shares: a generation request and a poll result.

The request's field names are also the manifest's column names. `None` means "not set":
the adapter leaves the field out and the provider applies its own default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

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
    # Not a manifest column: set by the worker on a chain's parent where the provider can
    # hand back the video's last frame (BytePlus `return_last_frame`).
    return_last_frame: bool | None = None


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
    run_s: float | None = None  # seconds the provider spent generating, queue time excluded
    last_frame_url: str | None = None  # the video's last frame, where the provider gives it


class ItemState(StrEnum):
    """Where one manifest line is in genbatch's own pipeline (see docs/design.md)."""

    WAITING = "waiting_parent"  # a chained shot waiting for its parent's last frame
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
    PARENT_FAILED = "parent_failed"  # its chain's parent ended without a video: never sent

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
        ItemState.PARENT_FAILED,
    }
)
# The terminal states of an item that leave no video: its chained children end
# `parent_failed` (genbatch/worker/chains.py).
NO_VIDEO_STATES = TERMINAL_STATES - {ItemState.SUCCEEDED}
# States that hold a generation slot at the provider account.
IN_FLIGHT_STATES = frozenset({ItemState.DISPATCHED, ItemState.SUBMITTING, ItemState.SUBMITTED})


class Counter(StrEnum):
    """A batch record's counters: `total`, and one per state (STATE_COUNTER)."""

    TOTAL = "total"
    WAITING = ItemState.WAITING.value
    PENDING = ItemState.PENDING.value
    IN_FLIGHT = "in_flight"  # the states holding a slot (IN_FLIGHT_STATES)
    DOWNLOADING = ItemState.DOWNLOADING.value
    SUCCEEDED = ItemState.SUCCEEDED.value
    FAILED = ItemState.FAILED.value
    EXPIRED = ItemState.EXPIRED.value
    CANCELLED = ItemState.CANCELLED.value
    AMBIGUOUS = ItemState.AMBIGUOUS.value
    PARENT_FAILED = ItemState.PARENT_FAILED.value


# The batch counter an item in each state is counted in: the states holding a slot share
# `in_flight`, every other state has a counter of its own name. The job store's Lua scripts
# get their state tables generated from these (store/scripts.py), so they cannot drift.
STATE_COUNTER: Mapping[ItemState, Counter] = MappingProxyType(
    {s: Counter.IN_FLIGHT if s in IN_FLIGHT_STATES else Counter(s.value) for s in ItemState}
)
# A batch record's counters, in the order screens and metrics list them.
BATCH_COUNTERS: tuple[Counter, ...] = (Counter.TOTAL, *dict.fromkeys(STATE_COUNTER.values()))
# The counters of items in a terminal state (each one's own).
TERMINAL_COUNTERS: tuple[Counter, ...] = tuple(STATE_COUNTER[s] for s in ItemState if s.terminal)
# The counters of items not yet in a terminal state (a batch is done when they are all 0).
OPEN_COUNTERS: tuple[Counter, ...] = tuple(
    dict.fromkeys(c for s, c in STATE_COUNTER.items() if s not in TERMINAL_STATES)
)


class BatchStatus(StrEnum):
    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

class NotifyStatus(StrEnum):
    """Where the delivery of a batch's finished event is (`notify_status` on the batch)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# A batch in one of these is done: its output manifests are written.
FINISHED_STATUSES = frozenset({BatchStatus.COMPLETED, BatchStatus.CANCELLED})


class Review(StrEnum):
    """A person's verdict on a succeeded video (the review page, `genbatch review`)."""

    KEPT = "kept"
    REJECTED = "rejected"
    NOT_REVIEWED = "not_reviewed"  # no verdict yet, or redone since
