"""The conformance kit's simulator profile: one API key per fault, generated per run.

Each key's `Behaviour` (genbatch/simulator/profile.py) makes every request of that key meet
one fault, so a test picks the fault by picking the key. The keys are random, so a test can
also check that a key never leaks into an error, a log record or a result; a key outside
the profile (`bad`) is refused as an invalid key.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genbatch.simulator import SimProfile

# 1 simulated second = 1 real millisecond; output URLs live an hour of real time.
FAST: Mapping[str, Any] = {
    "time_factor": 1000, "latency_mean_s": 5, "latency_sigma": 0, "queue_delay_s": 1,
    "url_ttl_s": 3600 * 1000,
}
# Real seconds: long enough that nothing finishes while a test looks at it.
LONG_S = 3600
SUBMIT_HANG_S = 20.0

FAULTS: Mapping[str, Mapping[str, Any]] = {
    "happy": {},
    "task_fail": {"p_task_fail": 1.0},
    "poll_5xx": {"p_5xx": 1.0, "inject_on": ["poll"]},
    "no_balance": {"out_of_balance": True},
    "hang": {"p_submit_timeout": 1.0, "submit_timeout_mode": "hang",
             "submit_hang_s": SUBMIT_HANG_S},
    "drop": {"p_submit_timeout": 1.0, "submit_timeout_mode": "drop"},
    "error_after": {"p_submit_timeout": 1.0, "submit_timeout_mode": "error"},
    "error_before": {"p_5xx": 1.0, "inject_on": ["submit"]},
    "rate": {"p_429": 1.0, "inject_on": ["submit"]},
    # One slot; a task runs an hour: the second submit is over the concurrency.
    "busy": {"concurrency": 1, "time_factor": 1, "latency_mean_s": LONG_S,
             "queue_delay_s": 0},
    # Every task waits an hour before it runs: cancellable.
    "queued": {"time_factor": 1, "queue_delay_s": LONG_S},
}


@dataclass(frozen=True)
class Keys:
    """The API key of each fault (`FAULTS`), and `bad`, one the simulator refuses."""

    by_fault: Mapping[str, str]
    bad: str

    def __getitem__(self, fault: str) -> str:
        return self.by_fault[fault]

    def all(self) -> tuple[str, ...]:
        return (*self.by_fault.values(), self.bad)


def make_keys(prefix: str = "gbkit") -> Keys:
    """Fresh random keys, one per fault."""
    return Keys({fault: f"{prefix}-{fault.replace('_', '-')}-{secrets.token_hex(8)}"
                 for fault in FAULTS}, bad=f"{prefix}-bad-{secrets.token_hex(8)}")


def profile(keys: Keys, seed: int = 0) -> SimProfile:
    """The simulator profile: fast defaults, each key's fault, only these keys accepted."""
    return SimProfile.model_validate({
        **FAST, "seed": seed, "api_keys": list(keys.by_fault.values()),
        "keys": {keys[fault]: dict(behaviour) for fault, behaviour in FAULTS.items()},
    })
