"""Counters the tests read back through `GET /_sim/stats`, and the bounded request log."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


def request_fingerprint(provider: str, model: str, body: Any) -> str:
    """sha256 of provider, model and the canonical JSON body: equal requests, equal prints."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{provider}\n{model}\n{canonical}".encode()).hexdigest()


MAX_RUNS = 10_000


@dataclass
class Stats:
    """Everything counted since the last reset."""

    log_size: int = 1000
    submit_attempts: int = 0  # authenticated submit requests with a JSON body
    submits: int = 0  # tasks created
    attempts_by_fingerprint: Counter[str] = field(default_factory=Counter)
    submits_by_fingerprint: Counter[str] = field(default_factory=Counter)
    polls: int = 0
    lists: int = 0  # task-list calls (WaveSpeed history, BytePlus tasks list)
    cancels: int = 0
    responses_429: int = 0
    responses_5xx: int = 0
    malformed: int = 0
    submit_timeouts: int = 0
    downloads: int = 0
    downloads_refused: int = 0
    uploads: int = 0  # files stored by WaveSpeed's media upload
    webhooks_sent: int = 0  # callback POSTs attempted
    webhooks_delivered: int = 0  # ... answered 2xx
    webhooks_dropped: int = 0  # not sent (p_webhook_drop)
    webhooks_retried: int = 0  # attempts after a failed one
    webhook_statuses: Counter[str] = field(default_factory=Counter)  # "200", "error", ...
    # Simulated run time of each task, in creation order (the first MAX_RUNS): lets a
    # benchmark compute the best makespan any client could have reached on these very draws.
    run_seconds: list[float] = field(default_factory=list)
    request_log: deque[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.request_log = deque(maxlen=self.log_size)

    def resize_log(self, size: int) -> None:
        self.request_log = deque(self.request_log, maxlen=size)

    def record_run(self, seconds: float) -> None:
        if len(self.run_seconds) < MAX_RUNS:
            self.run_seconds.append(round(seconds, 3))

    def count_response(self, status: int) -> None:
        if status == 429:
            self.responses_429 += 1
        elif status >= 500:
            self.responses_5xx += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "submit_attempts": self.submit_attempts,
            "submits": self.submits,
            "submit_attempts_by_fingerprint": dict(self.attempts_by_fingerprint),
            "submits_by_fingerprint": dict(self.submits_by_fingerprint),
            "polls": self.polls,
            "lists": self.lists,
            "cancels": self.cancels,
            "responses_429": self.responses_429,
            "responses_5xx": self.responses_5xx,
            "malformed": self.malformed,
            "submit_timeouts": self.submit_timeouts,
            "downloads": self.downloads,
            "downloads_refused": self.downloads_refused,
            "uploads": self.uploads,
            "webhooks_sent": self.webhooks_sent,
            "webhooks_delivered": self.webhooks_delivered,
            "webhooks_dropped": self.webhooks_dropped,
            "webhooks_retried": self.webhooks_retried,
            "webhook_statuses": dict(self.webhook_statuses),
            "run_seconds": list(self.run_seconds),
            "request_log": list(self.request_log),
        }
