"""Acme's callback signature (the provider's documented scheme, README "Callbacks"):

    Acme-Delivery: dlv_<hex>                       the same on every retry of one delivery
    Acme-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "{t}.{delivery}.{body}")>

The secret is the account's webhook secret (`GET /v1/account/webhook-secret`). A delivery
more than `MAX_AGE_S` away from now is refused; signatures are compared in constant time.
The simulator signs with `sign`, genbatch's receiver checks with `verify`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from genbatch.errors import BadSignature

MAX_AGE_S = 300
DELIVERY = "acme-delivery"
SIGNATURE = "acme-signature"


def signature(secret: str, timestamp: str, delivery: str, body: bytes) -> str:
    message = f"{timestamp}.{delivery}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: str, delivery: str, body: bytes) -> dict[str, str]:
    """The headers that sign one delivery."""
    mac = signature(secret, timestamp, delivery, body)
    return {DELIVERY: delivery, SIGNATURE: f"t={timestamp},v1={mac}"}


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The delivery id when the signature is good and fresh; BadSignature otherwise."""
    lowered = {k.lower(): v for k, v in headers.items()}
    delivery = lowered.get(DELIVERY, "")
    parts = dict(p.partition("=")[::2] for p in lowered.get(SIGNATURE, "").split(","))
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    if not delivery or not timestamp or not given:
        raise BadSignature("missing Acme-Delivery or Acme-Signature (t=, v1=)")
    try:
        age = abs(now - int(timestamp))
    except ValueError:
        raise BadSignature("Acme-Signature t= is not a Unix time") from None
    if age > MAX_AGE_S:
        raise BadSignature(f"Acme-Signature is {age:.0f} s old, over {MAX_AGE_S} s")
    expected = signature(secret, timestamp, delivery, body)
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise BadSignature("Acme-Signature does not match")
    return delivery
