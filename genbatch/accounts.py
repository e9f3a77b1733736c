"""Provider accounts: one per API key, each with its own limits, health and metrics.

A provider's accounts come from one of two places:

- the environment: `GENBATCH_<PROVIDER>_API_KEY` (with `_BASE_URL`, `_MAX_IN_FLIGHT`,
  `_SUBMIT_RPM`, `_POLL_RPM`) is one account named after the provider (`wavespeed`);
- an accounts file (`GENBATCH_ACCOUNTS_FILE`, TOML): any number of named accounts. A
  provider the file names gets exactly the file's accounts (list the environment's key as
  one of them with `api_key_env = "GENBATCH_WAVESPEED_API_KEY"` to keep it); a provider
  the file does not name keeps its environment account.

    [ws-a]                       # the account's name: a-z 0-9 _ -, at most 40 characters
    provider = "wavespeed"
    api_key_env = "WS_KEY_A"     # or api_key = "..." (then keep the file private)
    tier = "silver"              # WaveSpeed level: concurrency and videos/min from it
    concurrency = 300            # generation slots (default GENBATCH_<P>_MAX_IN_FLIGHT)
    submit_rpm = 500             # default GENBATCH_<P>_SUBMIT_RPM
    poll_rpm = 1200              # default GENBATCH_<P>_POLL_RPM
    queue_ahead_max = 20         # default GENBATCH_QUEUE_AHEAD_MAX (0 = never queue ahead)
    base_url = "https://..."     # default GENBATCH_<P>_BASE_URL
    drain = false                # true: no new work; its submitted tasks are still polled

    [bp-1.models."seedance-1-5-pro-251215"]   # per-model limits, on top of the account's
    concurrency = 3
    submit_rpm = 180

Every process reads the file again when it changes (checked at most every
RECHECK_S), so an account added starts taking work and a drained one stops without a
restart. Remove an account in two steps: `drain = true` until its tasks are finished, then
delete it (a worker that no longer knows an account cannot poll its tasks). Names, never
keys, appear in logs, status, metrics and results.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr

from genbatch.errors import ConfigError

log = logging.getLogger(__name__)
N = TypeVar("N", int, float)

RECHECK_S = 2.0  # how often a process looks at the accounts file's modification time
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
# Providers whose over-concurrency tasks wait at the provider (WaveSpeed documents it;
# BytePlus has a `queued` state): the in-flight cap may run ahead of the concurrency.
QUEUEING_PROVIDERS = frozenset({"wavespeed", "byteplus"})
# WaveSpeed account levels (docs/wire/wavespeed.md §4.4): concurrency and videos per minute.
WAVESPEED_TIERS: dict[str, tuple[int, float]] = {
    "bronze": (2, 2.0), "silver": (300, 500.0), "gold": (3000, 3000.0),
    "ultra": (10000, 5000.0),
}
ACCOUNT_FIELDS = frozenset({"provider", "api_key", "api_key_env", "tier", "concurrency",
                            "submit_rpm", "poll_rpm", "queue_ahead_max", "base_url", "drain",
                            "models"})
MODEL_FIELDS = frozenset({"concurrency", "submit_rpm"})


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """Limits one account has for one model, on top of the account's own."""

    max_in_flight: int | None = None
    submit_rpm: float | None = None


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """One account as the accounts file states it (limits left None take the provider's
    environment defaults)."""

    name: str
    provider: str
    api_key: SecretStr | None
    key_source: str  # where the key comes from, for messages: a variable or the file
    base_url: str | None = None
    max_in_flight: int | None = None
    submit_rpm: float | None = None
    poll_rpm: float | None = None
    queue_ahead_max: int | None = None
    drain: bool = False
    models: tuple[tuple[str, ModelLimits], ...] = ()


def parse_accounts(text: str, source: str, providers: tuple[str, ...],
                   environ: Mapping[str, str]) -> tuple[AccountSpec, ...]:
    """The accounts of a file's text; ConfigError naming the file, account and field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    specs = [_account(source, name, table, providers, environ) for name, table in data.items()]
    return tuple(specs)


def _account(source: str, name: str, table: Any, providers: tuple[str, ...],
             environ: Mapping[str, str]) -> AccountSpec:
    where = f"{source}: [{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table of settings")
    if not NAME.fullmatch(name):
        raise ConfigError(f"{where}: an account name is a-z, 0-9, _ and - (at most 40)")
    unknown = sorted(set(table) - ACCOUNT_FIELDS)
    if unknown:
        raise ConfigError(f"{where} {unknown[0]}: unknown setting; known: "
                          f"{', '.join(sorted(ACCOUNT_FIELDS))}")
    provider = table.get("provider")
    if provider not in providers:
        raise ConfigError(f"{where} provider: must be one of {', '.join(providers)}")
    if name in providers and name != provider:
        raise ConfigError(f"{where}: the name of another provider cannot name an account")
    key, key_source = _key(where, table, environ)
    concurrency, rpm = _tier(where, provider, table.get("tier"))
    return AccountSpec(
        name=name, provider=provider, api_key=key, key_source=key_source,
        base_url=_text(where, table, "base_url"),
        max_in_flight=_number(where, table, "concurrency", int) or concurrency,
        submit_rpm=_number(where, table, "submit_rpm", float) or rpm,
        poll_rpm=_number(where, table, "poll_rpm", float),
        queue_ahead_max=_number(where, table, "queue_ahead_max", int, minimum=0),
        drain=_flag(where, table, "drain"),
        models=_models(where, table.get("models", {})),
    )


def _key(where: str, table: dict[str, Any], environ: Mapping[str, str]
         ) -> tuple[SecretStr | None, str]:
    if ("api_key" in table) == ("api_key_env" in table):
        raise ConfigError(f"{where}: give exactly one of api_key and api_key_env")
    if "api_key" in table:
        value = table["api_key"]
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} api_key: must be a non-empty string")
        return SecretStr(value), f"api_key in {where.split(':')[0]}"
    variable = _text(where, table, "api_key_env") or ""
    found = environ.get(variable)
    return (SecretStr(found) if found else None), variable


def _tier(where: str, provider: str, tier: Any) -> tuple[int | None, float | None]:
    if tier is None:
        return None, None
    if provider != "wavespeed":
        raise ConfigError(f"{where} tier: only WaveSpeed accounts have a tier")
    if tier not in WAVESPEED_TIERS:
        raise ConfigError(f"{where} tier: must be one of {', '.join(WAVESPEED_TIERS)}")
    return WAVESPEED_TIERS[tier]


def _text(where: str, table: Mapping[str, Any], field: str) -> str | None:
    value = table.get(field)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{where} {field}: must be a non-empty string")
    return value


def _flag(where: str, table: Mapping[str, Any], field: str) -> bool:
    value = table.get(field, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where} {field}: must be true or false")
    return value


def _number(where: str, table: Mapping[str, Any], field: str, kind: type[N],
            minimum: float = 1) -> N | None:
    value = table.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum \
            or (kind is int and not isinstance(value, int)):
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{where} {field}: must be {what} of at least {minimum:g}")
    return kind(value)


def _models(where: str, models: Any) -> tuple[tuple[str, ModelLimits], ...]:
    if not isinstance(models, dict):
        raise ConfigError(f"{where} models: must be a table of model ids")
    out = []
    for model, table in models.items():
        at = f"{where} models.{model!r}"
        if not isinstance(table, dict):
            raise ConfigError(f"{at}: must be a table of limits")
        unknown = sorted(set(table) - MODEL_FIELDS)
        if unknown:
            raise ConfigError(f"{at} {unknown[0]}: unknown setting; known: "
                              f"{', '.join(sorted(MODEL_FIELDS))}")
        out.append((model, ModelLimits(max_in_flight=_number(at, table, "concurrency", int),
                                       submit_rpm=_number(at, table, "submit_rpm", float))))
    return tuple(out)


class AccountsFile:
    """An accounts file, read again when it changes. A bad file at the first read is a
    ConfigError; a bad edit later is logged and the accounts read before stay."""

    def __init__(self, path: str, providers: tuple[str, ...]) -> None:
        self.path = Path(path)
        self.providers = providers
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = -1e18
        self._specs: tuple[AccountSpec, ...] | None = None

    def specs(self, *, fresh: bool = False) -> tuple[AccountSpec, ...]:
        """The accounts, read again when the file changed (looked at every RECHECK_S, or
        now with `fresh`)."""
        with self._lock:
            recent = time.monotonic() - self._checked < RECHECK_S
            if self._specs is not None and recent and not fresh:
                return self._specs
            self._checked = time.monotonic()
            try:
                st = self.path.stat()
                stamp = (st.st_mtime_ns, st.st_size)
                if stamp != self._stamp or self._specs is None:
                    text = self.path.read_text(encoding="utf-8")
                    self._specs = parse_accounts(text, str(self.path), self.providers,
                                                 os.environ)
                    self._stamp = stamp
            except (OSError, ConfigError) as exc:
                message = exc if isinstance(exc, ConfigError) else ConfigError(
                    f"GENBATCH_ACCOUNTS_FILE: cannot read {self.path}: {exc.strerror}")
                if self._specs is None:
                    raise message from None
                log.warning("%s (keeping the accounts read before)", message)
            return self._specs


_FILES: dict[tuple[str, tuple[str, ...]], AccountsFile] = {}
_FILES_LOCK = threading.Lock()


def accounts_file(path: str, providers: tuple[str, ...]) -> AccountsFile:
    """The process's one reader of `path` (shared by every Settings naming it)."""
    with _FILES_LOCK:
        found = _FILES.get((path, providers))
        if found is None:
            found = _FILES[path, providers] = AccountsFile(path, providers)
        return found
