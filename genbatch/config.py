"""Settings: one object, built once at an entry point and passed down.

Every field reads the environment variable `GENBATCH_<FIELD>` (upper case) or a `.env` file in
the working directory. Nothing below the entry points reads `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from genbatch.accounts import QUEUEING_PROVIDERS, AccountSpec, ModelLimits, accounts_file
from genbatch.errors import ConfigError

PROVIDER_NAMES: tuple[str, ...] = ("novita", "highwayapi", "wavespeed", "byteplus")
REDIS_SCHEMES: tuple[str, ...] = ("redis://", "rediss://", "unix://")
VIDEO_HOSTS_HELP = ("comma-separated host patterns video URLs may point at (fnmatch: "
                    "*.example.com; * = any public host); unset = the provider's CDN defaults")


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """One provider account: where it lives, its key, and how much it may run at once.

    `name` is the provider (it picks the adapter), `account` the account's own name (the
    provider's name for the account of GENBATCH_<PROVIDER>_API_KEY; see genbatch/accounts.py).
    `max_in_flight` is the account's concurrency; the in-flight cap may run up to
    `queue_ahead_max` above it on providers that queue (worker/queue_ahead.py)."""

    name: str
    base_url: str
    api_key: SecretStr | None
    max_in_flight: int
    submit_rpm: float = 60.0
    poll_rpm: float = 600.0
    account: str = ""
    queue_ahead_max: int = 0
    drain: bool = False
    models: tuple[tuple[str, ModelLimits], ...] = ()
    key_source: str = ""

    @property
    def label(self) -> str:
        """The account's name."""
        return self.account or self.name

    def model_limits(self, model: str) -> ModelLimits | None:
        return next((limits for m, limits in self.models if m == model), None)

    def require_key(self) -> SecretStr:
        if self.api_key is None or not self.api_key.get_secret_value():
            source = self.key_source or f"GENBATCH_{self.name.upper()}_API_KEY"
            raise ConfigError(f"no API key for account {self.label!r} here: set {source}")
        return self.api_key


class Settings(BaseSettings):
    """All genbatch settings. docs/reference/configuration.md lists each one."""

    model_config = SettingsConfigDict(
        env_prefix="GENBATCH_", env_file=".env", extra="ignore", validate_default=True
    )

    # Where state and outputs live.
    redis_url: str | None = Field(
        default=None, description="Redis URL of the job store and broker; unset = embedded Redis"
    )
    storage_url: str = Field(
        default="./genbatch-output",
        description="Object storage: a folder, file:///abs/path, or s3://bucket/prefix",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, moto); unset = AWS"
    )
    s3_region: str | None = Field(default=None, description="S3 region name")
    s3_images: Literal["presign", "inline"] = Field(
        default="presign", description="how an s3:// input image reaches the provider: "
        "presign = a presigned GET URL living as long as the generation may (the provider "
        "must reach the endpoint); inline = its bytes as a data URI, or through the "
        "provider's upload where it takes URLs only (WaveSpeed)"
    )
    input_roots: str = Field(
        default="", description="folders (separated by ':') that local images may come from "
        "besides the manifest's own folder; any other path is refused"
    )
    presign_results_s: int = Field(
        default=0, ge=0, description="with S3 storage, add a presigned URL valid this long to "
        "each results row (0 = off)"
    )

    # Provider accounts.
    novita_api_key: SecretStr | None = None
    novita_base_url: str = "https://api.novita.ai"
    novita_max_in_flight: int = Field(default=20, ge=1)
    novita_submit_rpm: float = Field(default=20, gt=0)
    novita_poll_rpm: float = Field(default=600, gt=0)
    novita_video_hosts: str | None = Field(default=None, description=VIDEO_HOSTS_HELP)
    highwayapi_api_key: SecretStr | None = None
    highwayapi_base_url: str = "https://api.highwayapi.ai"
    highwayapi_max_in_flight: int = Field(default=20, ge=1)
    highwayapi_submit_rpm: float = Field(default=200, gt=0)
    highwayapi_poll_rpm: float = Field(default=1200, gt=0)
    highwayapi_video_hosts: str | None = Field(default=None, description=VIDEO_HOSTS_HELP)
    wavespeed_api_key: SecretStr | None = None
    wavespeed_base_url: str = "https://api.wavespeed.ai"
    wavespeed_max_in_flight: int = Field(default=2, ge=1)
    wavespeed_submit_rpm: float = Field(default=2, gt=0)
    wavespeed_poll_rpm: float = Field(default=120, gt=0)
    wavespeed_video_hosts: str | None = Field(default=None, description=VIDEO_HOSTS_HELP)
    byteplus_api_key: SecretStr | None = None
    byteplus_base_url: str = "https://ark.ap-southeast.bytepluses.com"
    byteplus_max_in_flight: int = Field(default=20, ge=1)
    byteplus_submit_rpm: float = Field(default=60, gt=0)
    byteplus_poll_rpm: float = Field(default=600, gt=0)
    byteplus_video_hosts: str | None = Field(default=None, description=VIDEO_HOSTS_HELP)

    accounts_file: str | None = Field(
        default=None, description="a TOML file of named provider accounts, several per "
        "provider (docs/operating/accounts.md); read again when it changes"
    )
    queue_ahead_max: int = Field(
        default=20, ge=0, description="on providers that queue over-concurrency tasks "
        "(WaveSpeed, BytePlus), keep at most this many tasks per account queued at the "
        "provider beyond its concurrency (sized from the learned generation time; 0 = off)"
    )

    # HTTP.
    connect_timeout_s: float = Field(default=10.0, gt=0)
    submit_timeout_s: float = Field(default=60.0, gt=0, description="read timeout of a submit")
    request_timeout_s: float = Field(default=30.0, gt=0, description="read timeout of polls")
    download_timeout_s: float = Field(default=120.0, gt=0)

    # Polling.
    first_poll_s: float = Field(
        default=30.0, gt=0, description="latest first poll after submit for a model whose "
        "generation time is not learned yet (then 0.8 x the learned time; an ETA wins)"
    )
    poll_min_interval_s: float = Field(default=5.0, gt=0)
    poll_max_interval_s: float = Field(default=60.0, gt=0)
    item_deadline_s: float = Field(
        default=180000.0, gt=0,
        description="an item still unfinished this long after submit ends expired",
    )

    # Recovery and scheduling.
    scheduler_tick_s: float = Field(default=0.5, gt=0)
    task_lease_s: float = Field(
        default=300.0, gt=0,
        description="a queued submit/poll/download not done in this time is re-sent; a submit "
        "in progress this long is declared ambiguous",
    )
    download_max_attempts: int = Field(
        default=5, ge=1, description="re-polls for a fresh video URL (after the URL lapsed, "
        "or storage kept failing until it was about to) before an item ends output_gone or "
        "download_failed"
    )
    download_lease_s: float = Field(
        default=10.0, gt=0, description="a download is re-sent this long after its worker "
        "stopped renewing it (renewed while it streams)"
    )
    video_url_ttl_s: float = Field(
        default=3600.0, gt=0, description="lifetime of a video URL whose provider states "
        "none (Novita/HighwayAPI send video_url_ttl; BytePlus 24 h, WaveSpeed 7 days)"
    )
    download_expiry_margin_s: float = Field(
        default=60.0, ge=0, description="stop retrying a download this long (at most a tenth "
        "of the URL's lifetime) before its URL expires, and ask the provider for a fresh one"
    )
    download_max_bytes: int = Field(
        default=2 * 1024**3, gt=0, description="largest video accepted (a 1080p 12 s video is "
        "about 10-40 MB); bigger ends the item bad_output"
    )
    download_allow_private: bool = Field(
        default=False, description="let video URLs and their redirects reach loopback, "
        "link-local and private addresses (off: only public ones, and the simulator's "
        "loopback when a provider's base URL is loopback)"
    )
    validating_timeout_s: float = Field(
        default=900.0, gt=0, description="a batch still being ingested whose producer has "
        "written nothing for this long (it died) is discarded by the scheduler"
    )
    dispatch_batch_size: int = Field(default=200, ge=1)
    dispatch_on_free: bool = Field(
        default=True, description="a worker that frees an in-flight slot dispatches into it "
        "at once instead of waiting for the scheduler's tick"
    )

    # Reconciliation of ambiguous submits (docs/reliability.md).
    reconcile_settle_s: float = Field(
        default=30.0, ge=0, description="wait this long after an ambiguous submit before "
        "looking for its task in the provider's task list (lists lag behind creates)"
    )
    reconcile_margin_s: float = Field(
        default=5.0, ge=0, description="the time window searched around the submit, each "
        "side (covers clock differences between genbatch and the provider; wider also "
        "catches other submits of the same model, which then cannot be told apart)"
    )
    reconcile_every_s: float = Field(
        default=300.0, gt=0, description="an item left ambiguous (several candidates, a list "
        "call failed) is looked at again this often ..."
    )
    reconcile_deadline_s: float = Field(
        default=86400.0, gt=0, description="... until this long after its submit; then it "
        "stays ambiguous for `genbatch retry --ambiguous` or `genbatch reconcile`"
    )

    duplicate_window_s: float = Field(
        default=86400.0, gt=0, description="a manifest submitted again with the same options "
        "within this time is refused (naming its batch) unless --allow-duplicate"
    )
    clock_skew_s: float = Field(
        default=0.0, description="pretend this process's clock is off by this many seconds "
        "(for tests of the one-clock rule: every process works on Redis's clock)"
    )
    allow_volatile_redis: bool = Field(
        default=False, description="let workers run against a Redis without an append-only "
        "file (a restart can then forget submitted tasks, which are paid twice)"
    )

    # Account health (docs/operating/accounts.md).
    account_degrade_after: int = Field(
        default=3, ge=1, description="consecutive connect/5xx/429 failures that mark an "
        "account degraded (it keeps working, with backoff)"
    )
    account_pause_after: int = Field(
        default=3, ge=1, description="consecutive auth or balance refusals that pause an "
        "account's dispatch (instead of failing the rest of the batch item by item)"
    )
    account_backoff_max_s: float = Field(
        default=300.0, gt=0, description="cap of the per-account backoff after connect "
        "errors (2 s, doubling)"
    )
    account_probe_s: float = Field(
        default=300.0, gt=0, description="a paused account lets one item through this often "
        "(a probe: it resumes by itself when that succeeds)"
    )
    heartbeat_s: float = Field(
        default=10.0, gt=0, description="workers and the scheduler leader write a heartbeat "
        "this often; one missing for 3 beats is gone"
    )

    # Quota: AIMD on 429 (see genbatch/store/limits.py).
    aimd_decrease: float = Field(
        default=0.5, gt=0, lt=1, description="multiply an account's rate by this on a 429"
    )
    aimd_recover_s: float = Field(
        default=120.0, gt=0, description="seconds for a shrunk rate to grow back to full "
        "(linear: additive increase)"
    )
    aimd_min_factor: float = Field(default=0.05, gt=0, le=1, description="rate floor")

    # Webhook out: the signed event POSTed to `submit --notify URL` (genbatch/notify.py).
    notify_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key signing batch events; unset = none is sent"
    )
    notify_allow_private: bool = Field(
        default=False, description="allow --notify URLs whose host is or resolves to a "
        "loopback, private, link-local or other non-public address"
    )
    notify_max_attempts: int = Field(
        default=8, ge=1, description="delivery attempts (backoff 10 s x 3^n, at most 1 h)"
    )

    # Worker.
    worker_concurrency: int = Field(default=8, ge=1)
    worker_pool: Literal["threads", "prefork", "solo"] = "threads"
    log_level: str = "INFO"

    # Time compression for tests and the demo against the simulator (1 = real time).
    time_factor: float = Field(default=1.0, gt=0, description="divide every wait by this")

    # Webhooks in (`genbatch webhooks`; docs/webhooks-in.md). Unset base URL = webhooks off.
    webhook_base_url: str | None = Field(
        default=None, description="public URL of the webhook receiver, sent to every provider "
        "as the callback address; unset = webhooks off, polling only"
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="key (16+ characters) of the HMAC that makes each callback "
        "URL unguessable; webhooks stay off until both it and webhook_base_url are set"
    )
    wavespeed_webhook_secret: SecretStr | None = Field(
        default=None, description="WaveSpeed's webhook signing secret (GET /api/v3/webhook/"
        "secret; with or without whsec_): when set, the receiver also verifies each WaveSpeed "
        "callback's webhook-signature, its age (5 min) and that its webhook-id is new"
    )
    webhook_safety_poll_s: float = Field(
        default=300.0, gt=0, description="with webhooks on, poll a webhook item only this often "
        "(a safety net for lost callbacks)"
    )

    # Dashboard (`genbatch dashboard`; docs/operating/monitoring.md).
    dashboard_basic_auth: SecretStr | None = Field(
        default=None, description="`user:password` every dashboard route then asks for "
        "(HTTP basic auth, for a dashboard exposed behind a proxy); unset = none"
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url and not url.startswith(REDIS_SCHEMES):
            raise ValueError(f"must start with {', '.join(REDIS_SCHEMES)}")
        return url or None

    def provider(self, name: str) -> ProviderSettings:
        """The account of GENBATCH_<NAME>_* (the defaults of the provider's other accounts)."""
        if name not in PROVIDER_NAMES:
            raise ConfigError(
                f"unknown provider {name!r}; choose one of {', '.join(PROVIDER_NAMES)}"
            )
        return ProviderSettings(
            name=name,
            base_url=str(getattr(self, f"{name}_base_url")).rstrip("/"),
            api_key=getattr(self, f"{name}_api_key"),
            max_in_flight=int(getattr(self, f"{name}_max_in_flight")),
            submit_rpm=float(getattr(self, f"{name}_submit_rpm")),
            poll_rpm=float(getattr(self, f"{name}_poll_rpm")),
            account=name,
            queue_ahead_max=self.queue_ahead_max if name in QUEUEING_PROVIDERS else 0,
        )

    def accounts(self, provider: str | None = None, *,
                 fresh: bool = False) -> tuple[ProviderSettings, ...]:
        """Every account (of `provider`, or of all providers in PROVIDER_NAMES order): the
        accounts file's for a provider it names, else the provider's environment account.
        `fresh`: look at the file now rather than within its re-read interval."""
        specs = accounts_file(self.accounts_file, PROVIDER_NAMES).specs(fresh=fresh) \
            if self.accounts_file else ()
        out: list[ProviderSettings] = []
        for name in (provider,) if provider else PROVIDER_NAMES:
            base = self.provider(name)
            mine = [_from_spec(base, spec) for spec in specs if spec.provider == name]
            out.extend(mine or [base])
        return tuple(out)

    def account(self, name: str) -> ProviderSettings:
        """The account named `name` (ConfigError naming the known ones otherwise)."""
        found = self.find_account(name)
        if found is None:
            known = ", ".join(a.label for a in self.accounts())
            raise ConfigError(f"no account {name!r} here; known: {known}")
        return found

    def find_account(self, name: str) -> ProviderSettings | None:
        """The account named `name`; when unknown, the accounts file is looked at again at
        once (another process may have dispatched to an account just added to it)."""
        found = next((a for a in self.accounts() if a.label == name), None)
        if found is None and self.accounts_file:
            found = next((a for a in self.accounts(fresh=True) if a.label == name), None)
        return found

    def input_root_paths(self) -> tuple[Path, ...]:
        """GENBATCH_INPUT_ROOTS as folders (empty parts ignored)."""
        return tuple(Path(part) for part in self.input_roots.split(os.pathsep) if part.strip())

    def keys_held(self) -> tuple[str, ...]:
        """Accounts whose API key these settings hold (names only, never the values)."""
        return tuple(a.label for a in self.accounts()
                     if a.api_key is not None and a.api_key.get_secret_value())

    def providers_held(self) -> tuple[str, ...]:
        """Providers with at least one account whose key these settings hold."""
        return tuple(dict.fromkeys(a.name for a in self.accounts()
                                   if a.api_key is not None and a.api_key.get_secret_value()))

    def configure_logging(self) -> None:
        """Log lines of the long-running commands (scheduler, worker supervisor, webhooks)."""
        import logging

        logging.basicConfig(level=self.log_level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise ConfigError(
                "GENBATCH_REDIS_URL is not set (genbatch demo starts its own Redis; "
                "other commands need yours)"
            )
        return self.redis_url


def _from_spec(base: ProviderSettings, spec: AccountSpec) -> ProviderSettings:
    """A file's account, its unset limits taken from the provider's environment ones."""
    queue_ahead = spec.queue_ahead_max if spec.queue_ahead_max is not None \
        else base.queue_ahead_max
    return ProviderSettings(
        name=base.name, base_url=(spec.base_url or base.base_url).rstrip("/"),
        api_key=spec.api_key, max_in_flight=spec.max_in_flight or base.max_in_flight,
        submit_rpm=spec.submit_rpm or base.submit_rpm, poll_rpm=spec.poll_rpm or base.poll_rpm,
        account=spec.name, drain=spec.drain, models=spec.models, key_source=spec.key_source,
        queue_ahead_max=queue_ahead if base.name in QUEUEING_PROVIDERS else 0,
    )


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment and `.env`, with explicit overrides on top.
    A bad value is a ConfigError naming the variable: one line per bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError("; ".join(_setting_problem(e) for e in exc.errors())) from None


def _setting_problem(error: Mapping[str, Any]) -> str:
    """`GENBATCH_X=value: what is wrong` (never the value of a secret)."""
    field = str(error["loc"][0]) if error.get("loc") else "?"
    name = f"GENBATCH_{field.upper()}"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    secret = "key" in field or "secret" in field
    value = error.get("input")
    if secret or not isinstance(value, str | int | float):
        return f"{name}: {message}"
    shown = redact_url(str(value)) if "url" in field else str(value)
    return f"{name}={shown[:80]}: {message}"


def redact_url(url: str) -> str:
    """The URL without a password (`redis://:***@host`), for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
