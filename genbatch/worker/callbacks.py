"""The callback URL each submitted item gives its provider (webhooks in).

With `GENBATCH_WEBHOOK_BASE_URL` and `GENBATCH_WEBHOOK_SECRET` set, every submit carries
`{base}/hooks/{provider}/{item id}/{attempt}/{token}`, where the token is an HMAC-SHA256 of
the provider, item id and attempt number under the secret: nobody without the secret can
make a URL the receiver (`genbatch.webhooks.receiver`) accepts, one item's URL says nothing
about another's, and each submit attempt has a URL of its own, so a callback on it says
which attempt created its task (that settles an ambiguous submit: worker/hints.py). The
token is a credential: never log it.

Kept free of web-framework imports: the worker builds URLs, only the receiver
(`genbatch.webhooks.receiver`) serves them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from urllib.parse import quote

from genbatch import providers
from genbatch.config import Settings
from genbatch.errors import ConfigError

HOOK_PATH = "/hooks"
MIN_SECRET_CHARS = 16
_TOKEN = re.compile(r"[0-9a-f]{64}")


class RedactTokens(logging.Filter):
    """Masks callback tokens in log lines that mention a hook URL: httpx logs every request
    URL at INFO, and a WaveSpeed submit URL carries `?webhook=…/hooks/…/<token>`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "hooks" in message and _TOKEN.search(message):
            record.msg, record.args = _TOKEN.sub("<token>", message), ()
        return True


def redact_tokens_in(logger: logging.Logger) -> None:
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())


redact_tokens_in(logging.getLogger("httpx"))


def enabled(settings: Settings) -> bool:
    """Webhooks are on when both the receiver's public URL and the secret are set."""
    secret = settings.webhook_secret
    return bool(settings.webhook_base_url and secret and secret.get_secret_value())


def token(settings: Settings, provider: str, iid: str, attempt: int) -> str:
    """The unguessable path segment for one attempt's callbacks (hex HMAC-SHA256)."""
    secret = settings.webhook_secret
    if secret is None or not secret.get_secret_value():
        raise ConfigError("GENBATCH_WEBHOOK_SECRET is not set")
    message = f"genbatch-webhook\n{provider}\n{iid}\n{attempt}".encode()
    return hmac.new(secret.get_secret_value().encode(), message, hashlib.sha256).hexdigest()


def token_ok(settings: Settings, provider: str, iid: str, attempt: int, given: str) -> bool:
    """True when `given` is this attempt's token (compared in constant time)."""
    return hmac.compare_digest(token(settings, provider, iid, attempt).encode(),
                               given.encode("utf-8", "replace"))


def callback_url(settings: Settings, provider: str, iid: str, attempt: int) -> str | None:
    """The callback URL to send with the item's submit `attempt`; None when webhooks are
    off or the provider has none (the item is then polled as usual)."""
    if not takes_callbacks(provider) or not enabled(settings):
        return None
    base = str(settings.webhook_base_url).rstrip("/")
    return (f"{base}{HOOK_PATH}/{provider}/{quote(iid, safe='')}/{attempt}/"
            f"{token(settings, provider, iid, attempt)}")


def list_polled(settings: Settings, provider: str) -> bool:
    """Whether `provider`'s tasks are seen by listing its accounts instead of each polled
    (worker/list_poll.py): it lists them (Capability.LIST_POLL), GENBATCH_LIST_POLL_S is not
    0, and its tasks do not call back (with webhooks on, a callback tells sooner)."""
    return settings.list_poll_s > 0 and providers.can_list_poll(provider) and not (
        enabled(settings) and takes_callbacks(provider))


def takes_callbacks(provider: str) -> bool:
    """The provider calls back a URL given with the submit (its plugin declares callbacks)."""
    return provider in providers.names() and \
        providers.plugin(provider).has(providers.Capability.CALLBACKS)


def check_settings(settings: Settings) -> None:
    """Raise ConfigError unless the receiver can run: both settings, a long enough secret."""
    if not settings.webhook_base_url:
        raise ConfigError("set GENBATCH_WEBHOOK_BASE_URL to the receiver's public URL "
                          "(e.g. https://hooks.example.com); workers send it to the providers")
    secret = settings.webhook_secret
    if secret is None or len(secret.get_secret_value()) < MIN_SECRET_CHARS:
        raise ConfigError(f"set GENBATCH_WEBHOOK_SECRET to a random string of at least "
                          f"{MIN_SECRET_CHARS} characters (e.g. `openssl rand -hex 32`)")
