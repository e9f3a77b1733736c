"""The simulator's own fal webhook signing key, and the key set it publishes.

fal signs each webhook with ED25519 over
`"{request id}\\n{user id}\\n{timestamp}\\n{hex sha256 of the body}"` and publishes the public
keys as a JWKS (https://rest.fal.ai/.well-known/jwks.json). The simulator does the same with
a key derived from its secret, published at `/fal/.well-known/jwks.json` (point
GENBATCH_FAL_JWKS_URL there). Written apart from genbatch/providers/fal_hooks.py on purpose
(the simulator imports nothing else of genbatch); tests/contract checks the two agree.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from genbatch.simulator.state import Simulator
from genbatch.simulator.tasks import Task

KEY_ID = "sim-fal-1"


def private_key(sim: Simulator) -> Ed25519PrivateKey:
    """The simulator's signing key (stable for the life of the app)."""
    seed = hashlib.sha256(sim.secret + b"fal-webhook-key").digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def jwks(sim: Simulator) -> dict[str, Any]:
    raw = private_key(sim).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                      "kid": KEY_ID, "x": x}]}


def user_id(api_key: str) -> str:
    """The account id fal sends as X-Fal-Webhook-User-Id (derived from the key here)."""
    return "user_" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def message(request_id: str, user: str, timestamp: str, body: bytes) -> bytes:
    return f"{request_id}\n{user}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def sign(sim: Simulator, task: Task, webhook_id: str, stamp: str,
         body: bytes) -> dict[str, str]:
    """The four X-Fal-Webhook-* headers of one delivery attempt, signed now (`stamp`;
    fal names the delivery by its request id, not `webhook_id`)."""
    user = user_id(task.api_key)
    signature = private_key(sim).sign(message(task.id, user, stamp, body)).hex()
    return {"x-fal-webhook-request-id": task.id, "x-fal-webhook-user-id": user,
            "x-fal-webhook-timestamp": stamp, "x-fal-webhook-signature": signature}
