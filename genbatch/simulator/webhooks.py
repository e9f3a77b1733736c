"""Webhook callbacks: when a task that was given a webhook URL finishes (succeeded, failed,
expired or cancelled), POST its final status there in its provider's documented shape
(docs/wire/notes.md §9), and retry a failed delivery as the provider does:

    Novita, HighwayAPI  `{"event_type": "ASYNC_TASK_RESULT", "payload": <task result>}`;
                        up to 5 retries, 5 s timeout (documented)
    WaveSpeed           the bare prediction `data`, signed (`webhook-id`, `-timestamp`,
                        `-signature: v3,<hex>`) with the key's secret from
                        `GET /api/v3/webhook/secret`; retries assumed as below
    BytePlus            the task object GET returns (no official payload published);
                        retries assumed as below
    Kling               the task object (its "Callback Schema"), unsigned; retries assumed

A retry waits `RETRY_DELAYS_S` (simulated seconds, so divided by the time factor) and keeps
the body and the `webhook-id`. The simulator's task timelines are fixed at creation, so the
first attempt is timed with the event loop for the moment the task ends, and sent
fire-and-forget from a background task: a slow or failing receiver never holds up the
simulated API. Counted in `/_sim/stats`: `webhooks_sent` (attempts), `webhooks_delivered`
(answered 2xx), `webhooks_retried`, `webhooks_dropped` (not sent, `p_webhook_drop`) and
`webhook_statuses`.

The signing scheme is duplicated from genbatch/webhooks/signing.py on purpose (the simulator
imports nothing else of genbatch); tests/contract checks that the two agree.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from genbatch.simulator.state import Simulator
from genbatch.simulator.tasks import Phase, Task

Payload = Callable[[], dict[str, Any]]
# (simulator, task, webhook id, timestamp, body) -> headers that sign one delivery attempt:
# a provider's own scheme (fal's ED25519 in fal_keys.py, a simulator plugin's).
Sign = Callable[[Simulator, Task, str, str, bytes], Mapping[str, str]]
RETRY_DELAYS_S = (5.0, 10.0, 30.0, 60.0, 120.0)
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one provider delivers: the per-attempt timeout, the retries, whether it signs
    (`signed`: WaveSpeed's scheme below; `sign`: any other provider's own, fal's or a
    plugin's))."""

    timeout_s: float = 10.0
    retries: int = 3
    signed: bool = False
    sign: Sign | None = None


NOVITA = Delivery(timeout_s=5.0, retries=5)  # documented (docs/wire/notes.md §9)
WAVESPEED = Delivery(signed=True)  # retries undocumented: assumed
BYTEPLUS = Delivery()  # nothing published: assumed
KLING = Delivery()  # the task object, unsigned; retries undocumented: assumed

_running: set[asyncio.Task[None]] = set()  # strong references until each send is done
# One client per event loop, so callbacks reuse connections instead of building a client
# (and its TLS context) each time; closed by `close_client` when the app shuts down.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary())


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _clients[loop] = httpx.AsyncClient()
    return client


async def close_client() -> None:
    """Close this event loop's callback client (the app's shutdown)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


def signing_secret(sim: Simulator, api_key: str) -> str:
    """The account's webhook secret as `GET /api/v3/webhook/secret` shows it (`whsec_...`)."""
    mac = hmac.new(sim.secret, f"webhook-secret\n{api_key}".encode(), hashlib.sha256)
    return SECRET_PREFIX + mac.hexdigest()[:32]


def signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """hex HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed with the secret sans `whsec_`."""
    key = secret.removeprefix(SECRET_PREFIX).encode()
    return hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body,
                    hashlib.sha256).hexdigest()


def schedule(sim: Simulator, task: Task, url: str, payload: Payload,
             delivery: Delivery) -> None:
    """Arrange the callback to `url` when `task` ends; `payload` builds its body then."""
    if not url.startswith(("http://", "https://")):
        return
    loop = asyncio.get_running_loop()
    delay = max(0.0, task.end - sim.clock()) + 0.005

    def fire() -> None:
        job = loop.create_task(_deliver(sim, task, url, payload, delivery))
        _running.add(job)
        job.add_done_callback(_running.discard)

    loop.call_later(delay, fire)


async def _deliver(sim: Simulator, task: Task, url: str, payload: Payload,
                   delivery: Delivery) -> None:
    if task.phase(sim.clock()) in (Phase.QUEUED, Phase.RUNNING):
        return  # time was moved by hand (tests): nothing finished
    if sim.roll(sim.behaviour(task.api_key).p_webhook_drop):
        sim.stats.webhooks_dropped += 1
        return
    body = json.dumps(payload(), separators=(",", ":")).encode()
    webhook_id = "msg_" + secrets.token_hex(12)
    for attempt in range(delivery.retries + 1):
        if attempt:
            sim.stats.webhooks_retried += 1
            wait = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S)) - 1]
            await asyncio.sleep(wait / task.time_factor)
        if await _attempt(sim, task, url, body, webhook_id, delivery):
            return


async def _attempt(sim: Simulator, task: Task, url: str, body: bytes, webhook_id: str,
                   delivery: Delivery) -> bool:
    headers = {"content-type": "application/json"}
    if delivery.signed:
        stamp = str(int(sim.clock()))
        mac = signature(signing_secret(sim, task.api_key), webhook_id, stamp, body)
        headers.update({"webhook-id": webhook_id, "webhook-timestamp": stamp,
                        "webhook-signature": f"v3,{mac}"})
    if delivery.sign is not None:
        headers.update(delivery.sign(sim, task, webhook_id, str(int(sim.clock())), body))
    sim.stats.webhooks_sent += 1
    try:
        response = await _client().post(url, content=body, headers=headers,
                                         timeout=delivery.timeout_s)
    except httpx.HTTPError:
        sim.stats.webhook_statuses["error"] += 1
        return False
    sim.stats.webhook_statuses[str(response.status_code)] += 1
    if response.is_success:
        sim.stats.webhooks_delivered += 1
    return response.is_success
