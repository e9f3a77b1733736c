"""Settings: one object, built once at an entry point and passed down.

Every field reads the environment variable `GENBATCH_<FIELD>` (upper case) or a `.env` file in
the working directory. Nothing below the entry points reads `os.environ`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from genbatch.accounts import ModelLimits
from genbatch.errors import ConfigError

REDIS_SCHEMES: tuple[str, ...] = ("redis://", "rediss://", "unix://")
# Settings fields that no single variable sets (`provider_env` gathers the others).
NOT_VARIABLES = frozenset({"provider_env"})
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
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
    # The provider's own further settings (a plugin's `settings`, e.g. a second secret).
    options: tuple[tuple[str, SecretStr], ...] = ()

    @property
    def label(self) -> str:
        """The account's name."""
        return self.account or self.name

    def model_limits(self, model: str) -> ModelLimits | None:
        return next((limits for m, limits in self.models if m == model), None)

    def option(self, name: str) -> str | None:
        """The value of the provider's own setting `name` (GENBATCH_<PROVIDER>_<NAME>)."""
        found = next((value for key, value in self.options if key == name), None)
        return None if found is None else found.get_secret_value()

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
    redis_sentinels: str | None = Field(
        default=None, description="comma-separated host:port of Redis Sentinels: the job store "
        "and broker then use the primary they name (following a failover without a restart); "
        "GENBATCH_REDIS_URL then only gives the database number and the password"
    )
    redis_master_name: str = Field(
        default="mymaster", description="the name the Sentinels monitor the primary under"
    )
    redis_password: SecretStr | None = Field(
        default=None, description="with Sentinels: the password of the primary and its "
        "replicas (unset = GENBATCH_REDIS_URL's, if any)"
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None, description="the Sentinels' own password (their requirepass); unset = none"
    )
    redis_min_replicas: str = Field(
        default="auto", description="replicas that must acknowledge a submit's record before "
        "its POST (Redis WAIT; WAITAOF on 7.2+): a number, or auto = 1 when the primary has a "
        "connected replica, else 0; not acknowledged in 1 s = the item goes back to its queue, "
        "unsent"
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
        default="", description="folders and bucket prefixes (s3://bucket/prefix), separated "
        "by ':', that input images may come from besides the manifest's own folder or bucket "
        "prefix; any other path or object is refused"
    )
    max_variants_per_row: int = Field(
        default=100, ge=1, description="most variants one manifest row may expand into (the "
        "product of its `variants` lists)"
    )
    max_items_per_batch: int = Field(
        default=1_000_000, ge=1, description="most items one manifest may make (its rows, "
        "each row's variants counted): a bigger one is refused at the line that passes it"
    )
    presign_results_s: int = Field(
        default=0, ge=0, description="with S3 storage, add a presigned URL valid this long to "
        "each results row (0 = off)"
    )

    # Provider accounts of genbatch's own providers (any provider, a plugin's too, also takes
    # GENBATCH_<PROVIDER>_API_KEY, _BASE_URL, _MAX_IN_FLIGHT, _SUBMIT_RPM, _POLL_RPM and
    # _VIDEO_HOSTS: see `provider_env`). Unset limits are the provider plugin's defaults.
    novita_api_key: SecretStr | None = None
    novita_base_url: str | None = None
    novita_max_in_flight: int | None = Field(default=None, ge=1)
    novita_submit_rpm: float | None = Field(default=None, gt=0)
    novita_poll_rpm: float | None = Field(default=None, gt=0)
    novita_video_hosts: str | None = Field(default=None, description=VIDEO_HOSTS_HELP)
    highwayapi_api_key: SecretStr | None = None
    highwayapi_base_url: str | None = None
    highwayapi_max_in_flight: int | None = Field(default=None, ge=1)
    highwayapi_submit_rpm: float | None = Field(default=None, gt=0)
    highwayapi_poll_rpm: float | None = Field(default=None, gt=0)
    highwayapi_video_hosts: str | None = Field(default=None, description=VIDEO_HOSTS_HELP)
    wavespeed_api_key: SecretStr | None = None
    wavespeed_base_url: str | None = None
    wavespeed_max_in_flight: int | None = Field(default=None, ge=1)
    wavespeed_submit_rpm: float | None = Field(default=None, gt=0)
    wavespeed_poll_rpm: float | None = Field(default=None, gt=0)
    wavespeed_video_hosts: str | None = Field(default=None, description=VIDEO_HOSTS_HELP)
    byteplus_api_key: SecretStr | None = None
    byteplus_base_url: str | None = None
    byteplus_max_in_flight: int | None = Field(default=None, ge=1)
    byteplus_submit_rpm: float | None = Field(default=None, gt=0)
    byteplus_poll_rpm: float | None = Field(default=None, gt=0)
    byteplus_video_hosts: str | None = Field(default=None, description=VIDEO_HOSTS_HELP)
    provider_env: dict[str, SecretStr] = Field(
        default_factory=dict, description="every other GENBATCH_<PROVIDER>_<SETTING> (a "
        "plugin provider's), by lower-case name without the prefix; read by the provider"
    )

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
        default=10.0, gt=0, description="latest first poll after submit for a model whose "
        "generation time is not learned yet (then every quarter of the task's age until one "
        "is seen done; once learned, 0.8 x the learned time; an ETA wins)"
    )
    poll_min_interval_s: float = Field(default=5.0, gt=0)
    list_poll_s: float = Field(
        default=0.5, ge=0, description="where a provider lists an account's tasks with their "
        "status (Kling), the shortest time between two listings of one account (about two "
        "listings per task that ends, no more often than this), which then replace each "
        "task's own polls (0: poll each task)"
    )
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
        default=86400.0, gt=0, description="... until this long after its submit (its "
        "reconciliation window: the batch waits for it until then); then it is final as "
        "ambiguous, a task found later is recorded, not adopted (`genbatch reconcile`, "
        "`genbatch retry --ambiguous`)"
    )

    duplicate_window_s: float = Field(
        default=86400.0, gt=0, description="a manifest submitted again with the same options "
        "within this time is refused (naming its batch) unless --allow-duplicate"
    )
    clock_skew_s: float = Field(
        default=0.0, description="pretend this process's clock is off by this many seconds "
        "(for tests of the one-clock rule: every process works on Redis's clock)"
    )
    fsync_wait_s: float = Field(
        default=2.0, ge=0, le=30, description="with `appendfsync everysec` and no WAITAOF, "
        "how long (real seconds) a submit's record is left to reach the disk before the POST: "
        "the worker then reads it back and sends only if it is still there (0: no wait, and "
        "a Redis restart flags what could have been paid twice)"
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
    hostname: str | None = Field(
        default=None, description="the host name a worker records on the items it submits "
        "and downloads (batch pages: \"served by\"); unset = the host of the worker's "
        "--hostname node@host, else the machine's hostname"
    )
    worker_pool: Literal["threads", "prefork", "solo"] = "threads"
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL")

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

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, file_secret_settings,
                _ProviderEnv(settings_cls))

    @model_validator(mode="before")
    @classmethod
    def _undeclared_to_provider_env(cls, data: Any) -> Any:
        """Keyword arguments no field declares join `provider_env` (over the environment's)."""
        if not isinstance(data, dict):
            return data
        extra = {k: v for k, v in data.items() if k not in cls.model_fields}
        if not extra:
            return data
        env = dict(data.get("provider_env") or {})
        env.update({k.lower(): v for k, v in extra.items() if v is not None})
        return {**{k: v for k, v in data.items() if k not in extra}, "provider_env": env}

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url and not url.startswith(REDIS_SCHEMES):
            raise ValueError(f"must start with {', '.join(REDIS_SCHEMES)}")
        if url and not url.startswith("unix://"):
            _check_redis_address(url)
        return url or None

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: str | None) -> str | None:
        if value and value.strip():
            parse_sentinels(value)
        return value.strip() if value and value.strip() else None

    @field_validator("redis_min_replicas")
    @classmethod
    def _replica_count(cls, value: str) -> str:
        value = value.strip().lower()
        if value != "auto" and not (value.isdigit() and int(value) <= 16):
            raise ValueError("must be auto or a number of replicas from 0 to 16")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        upper = level.strip().upper()
        if upper not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return upper

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, url: str) -> str:
        scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", url.strip())
        if not url.strip() or (scheme and scheme.group(1).lower() not in ("file", "s3")):
            raise ValueError("must be a folder, file:///absolute/path or s3://bucket/prefix")
        return url

    @model_validator(mode="after")
    def _poll_bounds(self) -> Settings:
        if self.poll_min_interval_s > self.poll_max_interval_s:
            raise ValueError(
                f"GENBATCH_POLL_MIN_INTERVAL_S ({self.poll_min_interval_s:g}) is above "
                f"GENBATCH_POLL_MAX_INTERVAL_S ({self.poll_max_interval_s:g})")
        return self

    def provider_value(self, provider: str, setting: str) -> Any:
        """GENBATCH_<PROVIDER>_<SETTING>: the field where Settings declares one, else the
        raw text from `provider_env`; None when unset."""
        name = f"{provider}_{setting}"
        if name in type(self).model_fields:
            return getattr(self, name)
        value = self.provider_env.get(name)
        return None if value is None else value.get_secret_value()

    def input_root_paths(self) -> tuple[Path, ...]:
        """The folders of GENBATCH_INPUT_ROOTS (empty parts ignored)."""
        return tuple(Path(part) for part in self._input_root_parts()
                     if not part.lower().startswith("s3://"))

    def input_object_roots(self) -> tuple[str, ...]:
        """The bucket prefixes (`s3://bucket/prefix`) of GENBATCH_INPUT_ROOTS."""
        return tuple(part for part in self._input_root_parts()
                     if part.lower().startswith("s3://"))

    def _input_root_parts(self) -> list[str]:
        # `s3://` holds the separator itself: a ':' followed by '//' does not separate.
        pattern = r":(?!//)" if os.pathsep == ":" else re.escape(os.pathsep)
        return [part.strip() for part in re.split(pattern, self.input_roots) if part.strip()]

    def configure_logging(self) -> None:
        """Log lines of the long-running commands (scheduler, worker supervisor, webhooks)."""
        import logging

        logging.basicConfig(level=self.log_level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def redis_target(self) -> RedisTarget:
        """Where the job store and the broker are: GENBATCH_REDIS_URL's server, or the
        primary GENBATCH_REDIS_SENTINELS name."""
        if not self.redis_sentinels:
            return RedisTarget(url=self.require_redis_url())
        parts = urlsplit(self.redis_url or "redis://")
        password = (self.redis_password.get_secret_value() if self.redis_password
                    else parts.password)
        sentinel = self.redis_sentinel_password
        return RedisTarget(
            url=None, sentinels=parse_sentinels(self.redis_sentinels),
            master_name=self.redis_master_name, password=password or None,
            sentinel_password=sentinel.get_secret_value() if sentinel else None,
            db=int(parts.path.strip("/") or 0), username=parts.username or None)

    def min_replicas(self) -> int | None:
        """GENBATCH_REDIS_MIN_REPLICAS as a number; None for auto."""
        return None if self.redis_min_replicas == "auto" else int(self.redis_min_replicas)

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise ConfigError(
                "GENBATCH_REDIS_URL is not set (genbatch demo starts its own Redis; "
                "other commands need yours)"
            )
        return self.redis_url


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the job store and the broker are: one server (`url`), or the primary the
    `sentinels` name as `master_name` (with the password and database of its servers)."""

    url: str | None
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = ""
    password: str | None = None
    sentinel_password: str | None = None
    db: int = 0
    username: str | None = None

    def describe(self) -> str:
        """For messages and logs: the URL without its password, or the Sentinels."""
        if self.url:
            return redact_url(self.url)
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"the primary Sentinels {hosts} name {self.master_name!r}"


def parse_sentinels(value: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` as pairs; ValueError naming the part that is not one."""
    found: list[tuple[str, int]] = []
    for part in (p.strip() for p in value.split(",")):
        host, _, port = part.rpartition(":")
        if not part or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{part!r} is not host:port (a Sentinel's address)")
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


class _ProviderEnv(PydanticBaseSettingsSource):
    """GENBATCH_* variables (environment, then `.env`) that no field declares: a plugin
    provider's settings, kept as secrets in `provider_env` for its plugin to read."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        declared = {f"GENBATCH_{name.upper()}" for name in self.settings_cls.model_fields}
        env_file = self.config.get("env_file")
        dotenv = dotenv_values(env_file) if isinstance(env_file, str) and \
            Path(env_file).is_file() else {}
        found: dict[str, str] = {}
        for source in (dotenv, os.environ):  # the environment wins over .env
            for key, value in source.items():
                upper = key.upper()
                if upper.startswith("GENBATCH_") and upper not in declared and value:
                    found[upper.removeprefix("GENBATCH_").lower()] = value
        return {"provider_env": found} if found else {}


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment and `.env`, with explicit overrides on top.
    A bad value is a ConfigError naming the variable: one line per bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError("; ".join(_setting_problem(e) for e in exc.errors())) from None


def _setting_problem(error: Mapping[str, Any]) -> str:
    """`GENBATCH_X=value: what is wrong` (never the value of a secret)."""
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not error.get("loc"):  # a rule between settings: its message names them
        return message
    field = str(error["loc"][0])
    name = f"GENBATCH_{field.upper()}"
    secret = "key" in field or "secret" in field or "password" in field
    value = error.get("input")
    if secret or not isinstance(value, str | int | float):
        return f"{name}: {message}"
    shown = redact_url(str(value)) if "url" in field else str(value)
    return f"{name}={shown[:80]}: {message}"


def _check_redis_address(url: str) -> None:
    """A port that is a number in range, a database that is a number (redis-py would raise
    a bare ValueError, or silently use database 0)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - parsing is the check
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"the database after the last / must be a number (got {database!r})")


def redact_url(url: str) -> str:
    """The URL without a password (`redis://:***@host`), for messages and logs; works on a
    URL whose port or database is not valid too."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))
