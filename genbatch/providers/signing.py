"""WaveSpeed's callback signatures (docs/wire/notes.md §9, https://wavespeed.ai/docs/docs-api/
verifying_webhook), the Standard Webhooks scheme:

    webhook-id: <delivery id>            the same on every retry of one delivery
    webhook-timestamp: <unix seconds>
    webhook-signature: v3,<hex HMAC-SHA256(secret, "{id}.{timestamp}.{raw body}")>

The secret is the account's (`GET /api/v3/webhook/secret`) without its `whsec_` prefix. A
delivery older (or newer) than `MAX_AGE_S` is refused; signatures are compared in constant
time. Replays inside the window are the receiver's to refuse (it remembers ids it applied).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from genbatch.errors import BadSignature

MAX_AGE_S = 300
SCHEME = "v3"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


def signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 WaveSpeed sends after `v3,`."""
    key = secret.removeprefix(SECRET_PREFIX).encode()
    message = f"{webhook_id}.{timestamp}.".encode() + body
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The delivery's `webhook-id` when its signature is good and fresh; else BadSignature."""
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    given = headers.get("webhook-signature", "")
    if not webhook_id or not timestamp or not given:
        raise BadSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        age = abs(now - int(timestamp))
    except ValueError:
        raise BadSignature("webhook-timestamp is not a Unix time") from None
    if age > MAX_AGE_S:
        raise BadSignature(f"webhook-timestamp is {age:.0f} s away, over {MAX_AGE_S} s")
    expected = signature(secret, webhook_id, timestamp, body).encode()
    for candidate in given.split():  # several signatures may be sent while keys rotate
        scheme, _, value = candidate.partition(",")
        if scheme == SCHEME and hmac.compare_digest(expected, value.encode()):
            return webhook_id
    raise BadSignature("webhook-signature does not match")
