"""The provider contract: everything the batch layer knows of a provider, in one declaration.

A provider is a plugin. Its package exposes one `ProviderPlugin` under the entry-point group
`genbatch.providers` (see `registry.py`); genbatch's own four are registered the same way.
The worker, producer, dispatcher, pricing, webhooks and reconciliation read a provider only
through this declaration and the `Provider` adapter it makes (`base.py`):

- `name`, `summary`; `models`: each `ModelSpec` holds the validation rules;
- `adapter`: builds the request body, submits, polls, and optionally lists tasks, cancels and
  uploads a local image; it classifies every failure by raising the `genbatch.errors` tree
  (`RetryableProviderError`, `RateLimited`, `SlotFull`, `PermanentProviderError`,
  `AmbiguousSubmit`; `JsonApi` in `http.py` does that for JSON APIs);
- `limits`: an account's defaults (base URL, concurrency, submit and poll requests per minute,
  account levels) and whether work over the concurrency waits at the provider (`queues`:
  queue-ahead applies) or is refused; a refusal that means "slot full" is the adapter's
  `SlotFull` (back to the queue, no rate cut; `Envelope.slot_full` lists the codes);
- `outputs`: where its videos are served from and how long their URLs live;
- `prices`: an estimate per request and the cost from reported usage;
- `callbacks`: how a callback body is read and, where the provider signs them, verified;
- `account_codes`: refusal codes that pause an account (bad key, no balance, a daily cap);
- `capabilities`: the optional parts it has, declared and checked against the adapter.

What two providers share (HTTP, retries, quotas, failover, storage) stays in genbatch.
A provider's package also ships its simulated protocol (entry-point group
`genbatch.simulators`, `genbatch/simulator/plugins.py`) and proves both with the conformance
kit (`genbatch.testing`). docs/writing-a-provider.md walks through all of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

from genbatch.config import ProviderSettings
from genbatch.models import GenerationRequest, PollResult
from genbatch.providers.base import ModelSpec, Provider


class Capability(StrEnum):
    """An optional part of a provider, declared by its plugin."""

    LIST = "list_tasks"  # a task list: ambiguous submits are reconciled against it
    CANCEL = "cancel"  # a queued task can be cancelled
    UPLOAD = "upload"  # hosts a local image (for a provider that takes URLs only)
    CALLBACKS = "callbacks"  # calls back a URL given with the submit
    SIGNED_CALLBACKS = "signed_callbacks"  # ... and signs the callback
    KEYED_DOWNLOAD = "keyed_download"  # its video URL needs the key (sent to its host only)
    # Each submit carries our attempt id (`submit(client_ref=)`, Kling's external_task_id)
    # and `lookup(model, client_ref)` finds its task: an ambiguous submit is settled exactly.
    LOOKUP = "lookup"
    # Hands back the video's last frame when asked (BytePlus `return_last_frame` →
    # `content.last_frame_url`): a chain's next shot starts on it without decoding.
    LAST_FRAME = "last_frame"
    # One request lists the account's newest tasks with their status and video (Kling's
    # Query Task (List)): `recent(model, limit)`; the worker reads the whole account every
    # GENBATCH_LIST_POLL_S instead of polling each task (worker/list_poll.py).
    LIST_POLL = "list_poll"


@dataclass(frozen=True, slots=True)
class Limits:
    """An account's defaults (each settable per account) and how the provider keeps them."""

    base_url: str
    max_in_flight: int = 10
    submit_rpm: float = 60.0
    poll_rpm: float = 600.0
    queues: bool = False  # over its concurrency a task waits at the provider (not refused)
    tiers: Mapping[str, tuple[int, float]] = field(default_factory=dict)  # level: (C, rpm)


@dataclass(frozen=True, slots=True)
class Outputs:
    """Where finished videos are served from (fnmatch host patterns; the download refuses any
    other host) and how long a URL lives when the answer does not say (None: the global
    GENBATCH_VIDEO_URL_TTL_S)."""

    video_hosts: tuple[str, ...]
    url_ttl_s: float | None = None


Estimate = Callable[[ModelSpec, GenerationRequest], "float | None"]
Actual = Callable[[ModelSpec, GenerationRequest, PollResult], "float | None"]


@dataclass(frozen=True, slots=True)
class Prices:
    """USD estimates. `actual` prices a finished task from its reported usage (None: the
    estimate); failed, expired and cancelled tasks are not billed (`pricing.py`)."""

    estimate: Estimate
    actual: Actual | None = None


# (remote task id, result), or None for a delivery to acknowledge and ignore.
ParseCallback = Callable[[dict[str, Any]], "tuple[str | None, PollResult] | None"]
# (secret, headers, raw body, now) -> the delivery's id; raises BadSignature.
VerifyCallback = Callable[[str, Mapping[str, str], bytes, float], str]


@dataclass(frozen=True, slots=True)
class Callbacks:
    """How the provider calls back: the adapter puts the URL into the submit; `parse` reads a
    delivery; `verify` checks its signature under the value of the provider setting
    `secret_setting` (GENBATCH_<PROVIDER>_<SETTING>) where the provider signs: while that is
    unset nothing is verified, unless `verify_unset` (a provider that signs with a published
    key, such as fal's JWKS, verifies every delivery; `verify` then gets "")."""

    parse: ParseCallback
    verify: VerifyCallback | None = None
    secret_setting: str = ""
    verify_unset: bool = False


@dataclass(frozen=True, slots=True)
class AccountCodes:
    """The provider's refusal codes (besides the common ones in `failures.py`) that say the
    account, not the request, is at fault: the account is paused until a person acts or,
    for a daily cap, until the cap resets."""

    auth: frozenset[str] = frozenset()
    balance: frozenset[str] = frozenset()
    daily_cap: frozenset[str] = frozenset()


AdapterFactory = Callable[..., Provider]  # (ProviderSettings, httpx.Client, *, submit_timeout_s)


@dataclass(frozen=True)
class ProviderPlugin:
    """One provider, as its package declares it. See the module docstring."""

    name: str
    summary: str
    adapter: AdapterFactory
    models: Mapping[str, ModelSpec]
    limits: Limits
    outputs: Outputs
    prices: Prices | None = None
    callbacks: Callbacks | None = None
    account_codes: AccountCodes = AccountCodes()
    capabilities: frozenset[Capability] = frozenset()
    settings: Mapping[str, str] = field(default_factory=dict)  # extra setting: description
    # The setting holding the account's key (GENBATCH_<PROVIDER>_<KEY_SETTING>; an accounts
    # file's api_key). Kling names it access_key, its secret_key being one of `settings`.
    key_setting: str = "api_key"
    # Its task list shows each task's seed (BytePlus): every submit then carries one (the
    # row's, else a random one recorded with the item), so reconciliation can tell
    # concurrent ambiguous submits of one model apart.
    lists_seeds: bool = False
    package: str = ""  # the distribution it came from (filled in by the registry)

    def make(self, settings: ProviderSettings, client: httpx.Client, *,
             submit_timeout_s: float | None = None) -> Provider:
        """The adapter for one account, talking through `client`."""
        return self.adapter(settings, client, submit_timeout_s=submit_timeout_s)

    def has(self, capability: Capability) -> bool:
        return capability in self.capabilities
