"""Each provider's accounts, from the settings and the provider plugin's defaults.

A provider's accounts are those the accounts file names for it (`genbatch/accounts.py`), else
its environment account: GENBATCH_<PROVIDER>_API_KEY with _BASE_URL, _MAX_IN_FLIGHT,
_SUBMIT_RPM, _POLL_RPM (and the plugin's own settings), named after the provider. A limit
left unset is the plugin's (`ProviderPlugin.limits`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TypeVar

from pydantic import SecretStr

from genbatch.accounts import AccountSpec, accounts_file
from genbatch.config import NOT_VARIABLES, ProviderSettings, Settings
from genbatch.errors import ConfigError
from genbatch.providers import registry

N = TypeVar("N", int, float)
# The settings every provider's environment account reads (GENBATCH_<PROVIDER>_<SETTING>),
# besides its key.
PROVIDER_SETTINGS = ("base_url", "max_in_flight", "submit_rpm", "poll_rpm", "video_hosts")


def provider_variables(provider: str) -> tuple[str, ...]:
    """Every GENBATCH_<PROVIDER>_* variable the provider's environment account reads: its
    key (`key_setting`), the settings every provider reads and its plugin's own
    (`ProviderPlugin.settings`, e.g. Kling's secret key): a plugin's need no Settings field."""
    plugin = registry.get(provider)
    return tuple(f"GENBATCH_{provider.upper()}_{name.upper()}"
                 for name in (plugin.key_setting, *PROVIDER_SETTINGS, *plugin.settings))


def env_account(settings: Settings, provider: str) -> ProviderSettings:
    """The account of GENBATCH_<PROVIDER>_* (the defaults of the provider's other accounts);
    ConfigError for an unknown provider or a bad value, naming the variable."""
    plugin = registry.get(provider)
    limits = plugin.limits
    key = settings.provider_value(provider, plugin.key_setting)
    return ProviderSettings(
        name=provider,
        base_url=str(settings.provider_value(provider, "base_url") or limits.base_url)
        .rstrip("/"),
        api_key=key if isinstance(key, SecretStr) or key is None else SecretStr(key),
        max_in_flight=_number(settings, provider, "max_in_flight", int, 1)
        or limits.max_in_flight,
        submit_rpm=_number(settings, provider, "submit_rpm", float, 0) or limits.submit_rpm,
        poll_rpm=_number(settings, provider, "poll_rpm", float, 0) or limits.poll_rpm,
        account=provider,
        key_source=f"GENBATCH_{provider.upper()}_{plugin.key_setting.upper()}",
        queue_ahead_max=settings.queue_ahead_max if limits.queues else 0,
        options=tuple((name, SecretStr(str(value))) for name in plugin.settings
                      if (value := settings.provider_value(provider, name))),
    )


def accounts(settings: Settings, provider: str | None = None, *,
             fresh: bool = False) -> tuple[ProviderSettings, ...]:
    """Every account (of `provider`, or of every installed provider in their order): the
    accounts file's for a provider it names, else the provider's environment account.
    `fresh`: look at the file now rather than within its re-read interval."""
    names = registry.names()
    specs = accounts_file(settings.accounts_file, names, _tiers()).specs(fresh=fresh) \
        if settings.accounts_file else ()
    out: list[ProviderSettings] = []
    for name in (provider,) if provider else names:
        base = env_account(settings, name)
        mine = [_from_spec(base, spec) for spec in specs if spec.provider == name]
        out.extend(mine or [base])
    return tuple(out)


def account(settings: Settings, name: str) -> ProviderSettings:
    """The account named `name` (ConfigError naming the known ones otherwise)."""
    found = find_account(settings, name)
    if found is None:
        known = ", ".join(a.label for a in accounts(settings))
        raise ConfigError(f"no account {name!r} here; known: {known}")
    return found


def find_account(settings: Settings, name: str) -> ProviderSettings | None:
    """The account named `name`; when unknown, the accounts file is looked at again at once
    (another process may have dispatched to an account just added to it)."""
    found = next((a for a in accounts(settings) if a.label == name), None)
    if found is None and settings.accounts_file:
        found = next((a for a in accounts(settings, fresh=True) if a.label == name), None)
    return found


def keys_held(settings: Settings) -> tuple[str, ...]:
    """Accounts whose API key these settings hold (names only, never the values)."""
    return tuple(a.label for a in accounts(settings) if _has_key(a))


def providers_held(settings: Settings) -> tuple[str, ...]:
    """Providers with at least one account whose key these settings hold."""
    return tuple(dict.fromkeys(a.name for a in accounts(settings) if _has_key(a)))


def key_hint(account: str) -> str:
    """Where an account's key is set: GENBATCH_<PROVIDER>_API_KEY (or the provider's own key
    setting) for the account named after its provider, else the accounts file."""
    plugin = registry.plugins().get(account)
    if plugin is not None:
        return f"GENBATCH_{account.upper()}_{plugin.key_setting.upper()}"
    return f"the key of {account} in the accounts file (api_key or api_key_env)"


def setting_warnings(settings: Settings) -> list[str]:
    """What is probably a mistake but not an error, one line each: a GENBATCH_ variable that
    is no setting (naming the closest one), an account whose api_key_env is unset here."""
    return [*_unknown_variables(settings), *_unset_key_variables(settings)]


def known_variables() -> list[str]:
    """Every GENBATCH_ variable: Settings' fields and each installed provider's settings."""
    names = [f"GENBATCH_{name.upper()}" for name in Settings.model_fields
             if name not in NOT_VARIABLES]
    for plugin in registry.plugins().values():
        for setting in (plugin.key_setting, *PROVIDER_SETTINGS, *plugin.settings):
            names.append(f"GENBATCH_{plugin.name.upper()}_{setting.upper()}")
    return list(dict.fromkeys(names))


def _unknown_variables(settings: Settings) -> list[str]:
    known = known_variables()
    out = []
    for name in sorted(settings.provider_env):
        variable = f"GENBATCH_{name.upper()}"
        if variable in known:
            continue
        close = difflib.get_close_matches(variable, known, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        out.append(f"{variable} is not a genbatch setting and is ignored{hint}")
    return out


def _unset_key_variables(settings: Settings) -> list[str]:
    if not settings.accounts_file:
        return []
    return [f"account {a.label}: {a.key_source} is not set here, so this process cannot use it"
            for a in accounts(settings) if not _has_key(a) and a.key_source.isupper()
            and a.account != a.name]


def base_url_hint(account: str) -> str:
    """Where an account's base URL is set: GENBATCH_<PROVIDER>_BASE_URL for the account named
    after its provider, else the accounts file (its base_url, or the provider's variable)."""
    if account in registry.plugins():
        return f"GENBATCH_{account.upper()}_BASE_URL"
    return f"the base_url of {account} in the accounts file (or its provider's _BASE_URL)"


def _has_key(account: ProviderSettings) -> bool:
    return account.api_key is not None and bool(account.api_key.get_secret_value())


def _tiers() -> dict[str, dict[str, tuple[int, float]]]:
    return {name: dict(p.limits.tiers) for name, p in registry.plugins().items()
            if p.limits.tiers}


def _number(settings: Settings, provider: str, setting: str, kind: Callable[[str], N],
            above: float) -> N | None:
    """A numeric provider setting (declared fields come validated; a plugin's are text)."""
    value = settings.provider_value(provider, setting)
    if value is None or isinstance(value, int | float):
        return None if value is None else kind(str(value))
    variable = f"GENBATCH_{provider.upper()}_{setting.upper()}"
    try:
        number = kind(str(value).strip())
    except ValueError:
        number = None
    if number is None or number < above or (number == above and kind is float):
        sign = ">=" if kind is int else ">"
        raise ConfigError(f"{variable}={str(value)[:40]}: must be a number {sign} {above:g}")
    return number


def _from_spec(base: ProviderSettings, spec: AccountSpec) -> ProviderSettings:
    """A file's account, its unset limits taken from the provider's environment ones."""
    queue_ahead = spec.queue_ahead_max if spec.queue_ahead_max is not None \
        else base.queue_ahead_max
    return ProviderSettings(
        name=base.name, base_url=(spec.base_url or base.base_url).rstrip("/"),
        api_key=spec.api_key, max_in_flight=spec.max_in_flight or base.max_in_flight,
        submit_rpm=spec.submit_rpm or base.submit_rpm, poll_rpm=spec.poll_rpm or base.poll_rpm,
        account=spec.name, drain=spec.drain, models=spec.models, key_source=spec.key_source,
        queue_ahead_max=queue_ahead if registry.get(base.name).limits.queues else 0,
        options=base.options,
    )
