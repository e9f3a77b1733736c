"""What a provider's failure says about the account rather than about one request.

Two readers: account health (`genbatch/store/health.py`: back off, degrade, pause an account)
and failover (`genbatch/worker/failover.py`: which failures may move to the `--fallback`).
The codes are the providers' own (their error envelopes, see `http.py`), compared without
case; a failure without an envelope code carries its bare HTTP status (`HTTP_401`) or
WaveSpeed's numeric code.
"""

from __future__ import annotations

from enum import StrEnum

from genbatch.errors import ProviderError, RateLimited, SlotFull
from genbatch.providers import registry
from genbatch.providers.plugin import AccountCodes

# Submit refused because the key cannot be used: missing, wrong, or without permission.
AUTH_CODES = frozenset({
    "INVALID_API_KEY", "MISSING_API_KEY", "FAILED_TO_AUTH", "ACCESS_DENY",
    "FEATURE_NOT_ALLOWED", "API_NOT_ALLOWED", "NEED_REAL_NAME_VERIFY",
    "AuthenticationError", "AccessDenied", "HTTP_401", "HTTP_403", "401", "403",
})
# Submit refused because the account has no money (or no quota) left.
BALANCE_CODES = frozenset({
    "BILLING_BALANCE_NOT_ENOUGH", "NOT_ENOUGH_BALANCE", "BILLING_AUTH_FAILED",
    "ANONYMOUS_ACCESS_QUOTA_EXCEEDS", "AccountOverdueError", "HTTP_402", "402",
})
# Submit refused (a 4xx: nothing was created) because of the account, not the request.
ACCOUNT_CODES = AUTH_CODES | BALANCE_CODES
_AUTH = frozenset(c.casefold() for c in AUTH_CODES)
_BALANCE = frozenset(c.casefold() for c in BALANCE_CODES)


class FailureClass(StrEnum):
    """Kinds of failure that say something about the account's health."""

    CONNECT = "connect"  # nothing answered: network, DNS, a dead base URL, a timeout
    AUTH = "auth"  # the key is missing, wrong or not allowed
    BALANCE = "balance"  # no money or quota left
    SERVER = "5xx"  # the provider failed on its side
    RATE = "429"  # too many requests

    @property
    def pauses(self) -> bool:
        """Nothing will succeed until a person acts (a key, a top-up)."""
        return self in (FailureClass.AUTH, FailureClass.BALANCE)


def failure_class(exc: ProviderError) -> FailureClass | None:
    """The account-level kind of `exc`; None for a failure of the request itself."""
    if isinstance(exc, SlotFull):
        return None  # the account is busy, not unwell
    if isinstance(exc, RateLimited):
        return FailureClass.RATE
    folded = (exc.code or "").strip().casefold()
    codes = _plugin_codes(exc.provider)
    if folded in _AUTH or folded in codes.auth:
        return FailureClass.AUTH
    if folded in _BALANCE or folded in codes.balance or folded in codes.daily_cap:
        return FailureClass.BALANCE
    if exc.status_code is None:
        return None if folded in ("invalid_url", "unsupported_protocol") else FailureClass.CONNECT
    if exc.status_code >= 500:
        return FailureClass.SERVER
    return None


def _plugin_codes(provider: str) -> AccountCodes:
    """The provider's own account codes (its plugin's `account_codes`), case-folded."""
    plugin = registry.plugins().get(provider)
    if plugin is None:
        return AccountCodes()
    codes = plugin.account_codes
    return AccountCodes(*(frozenset(c.casefold() for c in group)
                          for group in (codes.auth, codes.balance, codes.daily_cap)))
