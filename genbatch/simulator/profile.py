"""How the simulator behaves: a default `Behaviour` plus per-API-key overrides.

A profile is a JSON file. Every field of `Behaviour` may appear at the top level (the default
for every key) and again under `keys.<api key>` (only the fields given there override):

    {"time_factor": 100, "latency_mean_s": 30, "rpm": 60,
     "keys": {"hw-key": {"provider": "highwayapi"}, "slow-key": {"concurrency": 2}}}

`model_limits` adds limits of one model at a key, on top of the key's own (BytePlus states
its limits per account and model); a model is named as the provider's request names it
(BytePlus's `model` field, WaveSpeed's path after `/api/v3/`, Novita's after `/v3/async/`):

    {"concurrency": 10, "model_limits": {"seedance-1-0-pro-250528": {"rpm": 30, "concurrency": 2}}}

Under `keys.<api key>`, `model_limits` replaces the default's whole map (like any field).

Durations are simulated seconds; the simulator divides every one of them by `time_factor`
(so `time_factor: 100` turns a 30 s generation into 0.3 s of real time). `submit_hang_s` is
the exception: it is real seconds, because it exists to trip a client's read timeout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

Provider = Literal["novita", "highwayapi", "wavespeed", "byteplus", "fal", "runway", "kling", "veo"]
Operation = Literal["submit", "poll", "cancel", "download"]
Probability = float


class ModelLimit(BaseModel):
    """Limits of one model at one API key, applied on top of the key's own limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rpm: int | None = Field(
        default=None, ge=1, description="accepted submits of this model per minute; over it "
        "the provider's 429 (BytePlus RateLimitExceeded.EndpointRPMExceeded)",
    )
    concurrency: int | None = Field(
        default=None, ge=1, description="running tasks of this model; WaveSpeed and BytePlus "
        "queue submits beyond it, Novita and HighwayAPI answer 429 once this many are unfinished",
    )


class Behaviour(BaseModel):
    """Everything that may differ per API key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Provider | None = Field(
        default=None,
        description="Which rules the un-prefixed Novita-family paths (/v3/async/...) apply for "
        "this key: 'highwayapi' selects HighwayAPI's; anything else Novita's",
    )
    # Timing (simulated seconds).
    latency_mean_s: float = Field(default=30.0, gt=0, description="mean generation run time")
    latency_sigma: float = Field(default=0.3, ge=0, description="lognormal sigma of run time")
    queue_delay_s: float = Field(default=2.0, ge=0, description="time queued before running")
    time_factor: float = Field(default=1.0, gt=0, description="divide simulated time by this")
    url_ttl_s: float | None = Field(
        default=None, gt=0,
        description="output URL lifetime; unset = the provider's own (Novita and HighwayAPI "
        "3600 s, BytePlus 24 h, WaveSpeed 7 days)",
    )
    fresh_url_per_poll: bool | None = Field(
        default=None, description="each poll of a finished task signs a fresh output URL "
        "(valid url_ttl_s from then); unset = the provider's way: Novita, HighwayAPI and "
        "BytePlus presign per request, WaveSpeed serves one fixed CDN URL",
    )
    # Limits.
    rpm: int | None = Field(default=None, ge=1, description="accepted submits per minute")
    concurrency: int | None = Field(
        default=None, ge=1,
        description="running tasks per key; WaveSpeed, BytePlus, fal (IN_QUEUE) and Runway "
        "(THROTTLED) queue submits beyond it, Novita, HighwayAPI and Veo answer 429 once "
        "this many are unfinished, Kling 1303",
    )
    model_limits: dict[str, ModelLimit] = Field(
        default_factory=dict, description="per-model limits at the key, by model name",
    )
    queue_cap: int = Field(default=120, ge=1, description="BytePlus: queued tasks per key")
    daily_cap: int | None = Field(
        default=None, ge=1, description="Runway and Veo: tasks of one model a key may create "
        "per (simulated) 24 hours; over it the task creation answers 429 (Veo: naming a "
        "per-day quota)",
    )
    secret_key: str = Field(
        default="sim-kling-secret", min_length=1,
        description="Kling: the secret key the JWT of this access key must be signed with",
    )
    retry_after_s: float | None = Field(
        default=None, gt=0, description="send Retry-After on 429s (default: no header)"
    )
    # Failure injection: probabilities per request (or per task for p_task_fail).
    p_429: Probability = Field(default=0.0, ge=0, le=1)
    p_5xx: Probability = Field(default=0.0, ge=0, le=1)
    p_malformed: Probability = Field(default=0.0, ge=0, le=1, description="200, body not JSON")
    p_submit_timeout: Probability = Field(
        default=0.0, ge=0, le=1, description="create the task, then give no answer"
    )
    submit_timeout_mode: Literal["drop", "hang", "error"] = Field(
        default="drop",
        description="drop: close the connection mid-response; hang: answer only after "
        "submit_hang_s (or never, if the client gives up first); error: answer 500 (the "
        "task exists all the same)",
    )
    submit_hang_s: float = Field(default=30.0, ge=0, description="real seconds")
    p_task_fail: Probability = Field(default=0.0, ge=0, le=1)
    p_webhook_drop: Probability = Field(
        default=0.0, ge=0, le=1, description="a finished task's webhook callback is not sent"
    )
    out_of_balance: bool = Field(
        default=False, description="refuse every submit with the provider's balance error "
        "(Novita 400 BILLING_BALANCE_NOT_ENOUGH, BytePlus 403 AccountOverdueError, WaveSpeed "
        "402)"
    )
    inject_on: frozenset[Operation] = Field(
        default=frozenset({"submit", "poll"}),
        description="operations p_429, p_5xx and p_malformed apply to",
    )


class SimProfile(Behaviour):
    """The whole simulator configuration: default behaviour, per-key overrides, globals."""

    seed: int = Field(default=0, description="seed of the simulator's random generator")
    api_keys: list[str] | None = Field(
        default=None, description="accepted keys; unset = any non-empty bearer token"
    )
    keys: dict[str, Behaviour] = Field(
        default_factory=dict, description="per-API-key overrides (only the fields given)"
    )
    request_log_size: int = Field(default=1000, ge=0)
    request_log_body_chars: int = Field(default=2048, ge=0)
    distinct_videos: bool = Field(
        default=False, description="each task's video is its own (a colour from the task "
        "id, darkening frame by frame; simulator/shots.py) instead of the shared sample")

    _resolved: dict[str, Behaviour] = PrivateAttr(default_factory=dict)

    def for_key(self, api_key: str) -> Behaviour:
        """The behaviour for one API key: the defaults with that key's overrides on top."""
        found = self._resolved.get(api_key)
        if found is None:
            base = self.model_dump(include=set(Behaviour.model_fields))
            override = self.keys.get(api_key)
            if override is not None:
                base.update(override.model_dump(exclude_unset=True))
            found = Behaviour.model_validate(base)
            self._resolved[api_key] = found
        return found

    def accepts(self, api_key: str) -> bool:
        return bool(api_key) and (self.api_keys is None or api_key in self.api_keys)


class ProfileError(ValueError):
    """Raised when a simulator profile cannot be read or is invalid."""


def load_profile(path: str | None) -> SimProfile:
    """Read a profile from a JSON file; None gives the default profile."""
    if path is None:
        return SimProfile()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read simulator profile {path}: {exc.strerror}") from exc
    try:
        return SimProfile.model_validate_json(text)
    except ValidationError as exc:
        raise ProfileError(f"invalid simulator profile {path}: {exc}") from exc
