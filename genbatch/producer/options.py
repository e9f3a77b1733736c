"""Batch-wide options given to `genbatch submit`: checked once, stored in the batch record.

Workers and the dispatcher read them back from the batch hash (`BatchOptions.from_meta`),
so every process sees the same values without them travelling in task arguments.

- `tier` / `expires_after` become the default `service_tier` / `execution_expires_after`
  of every row that does not set its own; rows are then validated per provider as usual,
  so `--tier flex` is refused, row by row, where a provider has no flex tier (WaveSpeed).
- A flex batch is an overnight batch: its priority defaults to `low`.
- `budget_usd` caps the batch's spend (the dispatcher reserves each item's estimate).
- `notify_url` receives a signed event when the batch finishes.
- `fallback` is a `provider:model` that an item failing at its provider is retried on once.
- `output` is the batch's own output folder (`s3://bucket/prefix`, `file:///abs/path` or a
  folder): its videos and output manifests go there instead of `<storage>/<batch_id>/`.
- `join_chains`: when the batch finishes, each chain whose shots all succeeded is joined
  into one video, `chains/<root custom_id>.mp4`, listed in `chains.jsonl`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from genbatch import providers
from genbatch.errors import ConfigError, GenbatchError
from genbatch.models import PRIORITIES
from genbatch.providers.validation import EXPIRES_AFTER_RANGE, SERVICE_TIERS
from genbatch.store.budget import check_budget


@dataclass(frozen=True, slots=True)
class BatchOptions:
    priority: str = "normal"
    tier: str | None = None
    expires_after: int | None = None
    budget_usd: float | None = None
    notify_url: str | None = None
    fallback: tuple[str, str] | None = None  # (provider, model)
    output: str | None = None  # the batch's output folder URL (absolute)
    join_chains: bool = False

    @classmethod
    def build(
        cls, *, priority: str | None = None, tier: str | None = None,
        expires_after: int | None = None, budget_usd: float | None = None,
        notify_url: str | None = None, fallback: str | None = None, output: str | None = None,
        join_chains: bool = False,
    ) -> BatchOptions:
        """Check the options as the user typed them; a problem is one GenbatchError line."""
        if tier is not None and tier not in SERVICE_TIERS:
            raise GenbatchError(
                f"--tier must be one of {', '.join(SERVICE_TIERS)} (got {tier!r})")
        if priority is None:
            priority = "low" if tier == "flex" else "normal"
        if priority not in PRIORITIES:
            raise GenbatchError(
                f"--priority must be one of {', '.join(PRIORITIES)} (got {priority!r})")
        low, high = EXPIRES_AFTER_RANGE
        if expires_after is not None and not low <= expires_after <= high:
            raise GenbatchError(
                f"--expires-after must be between {low} and {high} seconds (got {expires_after})")
        if budget_usd is not None:
            check_budget(budget_usd)
        if notify_url is not None:
            parts = urlsplit(notify_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise GenbatchError(f"--notify must be an http(s) URL (got {notify_url!r})")
        return cls(priority=priority, tier=tier, expires_after=expires_after,
                   budget_usd=budget_usd, notify_url=notify_url,
                   fallback=parse_fallback(fallback) if fallback else None,
                   output=parse_output(output) if output else None, join_chains=join_chains)

    def row_defaults(self) -> dict[str, Any]:
        """Request fields every row gets unless it sets its own."""
        defaults: dict[str, Any] = {}
        if self.tier is not None:
            defaults["service_tier"] = self.tier
        if self.expires_after is not None:
            defaults["execution_expires_after"] = self.expires_after
        return defaults

    def meta(self) -> dict[str, str]:
        """The batch-hash fields that record these options (empty string = not set)."""
        return {
            "priority": self.priority,
            "tier": self.tier or "",
            "expires_after": "" if self.expires_after is None else str(self.expires_after),
            "budget_usd": "" if self.budget_usd is None else repr(self.budget_usd),
            "notify_url": self.notify_url or "",
            "fallback": ":".join(self.fallback) if self.fallback else "",
            "output_url": self.output or "",
            "join_chains": "1" if self.join_chains else "",
        }

    @classmethod
    def from_meta(cls, batch: Mapping[str, str]) -> BatchOptions:
        """Read the options back from a batch hash (absent fields: defaults)."""
        expires = batch.get("expires_after") or ""
        budget = batch.get("budget_usd") or ""
        fallback = batch.get("fallback") or ""
        return cls(
            priority=batch.get("priority") or "normal",
            tier=batch.get("tier") or None,
            expires_after=int(expires) if expires else None,
            budget_usd=float(budget) if budget else None,
            notify_url=batch.get("notify_url") or None,
            fallback=parse_fallback(fallback) if fallback else None,
            output=batch.get("output_url") or None,
            join_chains=bool(batch.get("join_chains")),
        )


def parse_fallback(text: str) -> tuple[str, str]:
    """`provider:model` → (provider, model), both known to genbatch."""
    provider, sep, model = text.partition(":")
    if not sep or not provider or not model:
        raise GenbatchError(f"--fallback must be PROVIDER:MODEL (got {text!r})")
    try:
        providers.get_spec(provider, model)
    except ConfigError as exc:
        raise GenbatchError(f"--fallback {text}: {exc}") from exc
    return provider, model


def parse_output(text: str) -> str:
    """The batch's output folder as an absolute URL or path: `s3://bucket[/prefix]`,
    `file:///abs/path`, or a folder (made absolute: workers may run elsewhere)."""
    value = text.strip()
    parts = urlsplit(value)
    scheme = parts.scheme.lower() if len(parts.scheme) > 1 else ""  # "C:" is a drive
    if scheme == "s3" and parts.netloc and not parts.query and not parts.fragment:
        return value.rstrip("/")
    if scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        return value.rstrip("/")
    if not scheme and value:
        return str(Path(value).expanduser().resolve())
    raise GenbatchError("--output must be s3://bucket/prefix, file:///absolute/path or a "
                        f"folder (got {text!r})")
