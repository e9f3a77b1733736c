"""A simulated remote task: its timeline is fixed when it is created, and its status at any
moment is read off that timeline (queued until `start`, running until `end`, then `outcome`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    """A task's provider-neutral status; each provider module spells it its own way."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


@dataclass(slots=True)
class Task:
    id: str
    provider: str
    model: str
    api_key: str
    fingerprint: str
    params: dict[str, Any]  # the provider's view of the request: seed, resolution, ...
    created: float  # wall-clock seconds
    start: float
    end: float
    outcome: Phase
    time_factor: float
    url_ttl_s: float  # simulated seconds
    fresh_urls: bool = False  # each poll signs a new URL valid url_ttl_s from then
    error_code: str = ""
    error_message: str = ""
    video_sha256: str = ""
    downloads: int = 0

    def phase(self, now: float) -> Phase:
        if now >= self.end:
            return self.outcome
        if now >= self.start:
            return Phase.RUNNING
        return Phase.QUEUED

    def progress(self, now: float) -> float:
        """Fraction of the run done, 0..1."""
        if now >= self.end:
            return 1.0 if self.outcome is Phase.SUCCEEDED else 0.0
        if now <= self.start:
            return 0.0
        return (now - self.start) / (self.end - self.start)

    def simulated(self, real_s: float) -> float:
        """A real-time span expressed in simulated seconds."""
        return max(0.0, real_s) * self.time_factor

    def updated_at(self, now: float) -> float:
        """When the status last changed (wall clock)."""
        if now >= self.end:
            return self.end
        return self.start if now >= self.start else self.created

    def url_expires(self, now: float) -> float:
        """Wall-clock time the output URL handed out at `now` stops working: from the
        task's completion, or from `now` for a provider that signs a URL per request."""
        signed = max(self.end, now) if self.fresh_urls else self.end
        return signed + self.url_ttl_s / self.time_factor

    def cancel(self, now: float) -> None:
        self.start = self.end = now
        self.outcome = Phase.CANCELLED


def sample_run_s(rng: random.Random, mean_s: float, sigma: float) -> float:
    """A lognormal generation time whose mean is `mean_s`."""
    if sigma == 0:
        return mean_s
    mu = math.log(mean_s) - sigma * sigma / 2
    return rng.lognormvariate(mu, sigma)


def pick_seed(rng: random.Random, requested: object) -> int:
    """The seed a task reports: the requested one, or a random one for absent or -1."""
    if isinstance(requested, int) and requested != -1:
        return requested
    return rng.randrange(2**31)
