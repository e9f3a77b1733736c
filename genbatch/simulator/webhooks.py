"""Webhook callbacks: when a task that was given a webhook URL finishes (succeeded, failed,
expired or cancelled), POST its final status there, as the real providers do.

WaveSpeed (`?webhook=` on the submit URL, WS-HOOK) posts the bare prediction `data`; Novita
(`extra.webhook.url`, NOV-SKILL) is assumed to post its task-result body. The simulator's
task timelines are fixed at creation, so the callback is timed with the event loop for the
moment the task ends (by the injected clock at scheduling time) and sent fire-and-forget
from a background task: a slow or failing receiver never holds up the simulated API.
Each attempt is counted in `/_sim/stats` (`webhooks_sent`, `webhooks_delivered`,
`webhooks_dropped`, `webhook_statuses`). One attempt per task, no retries.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

import httpx

from genbatch.simulator.state import Simulator
from genbatch.simulator.tasks import Phase, Task

TIMEOUT_S = 10.0
Payload = Callable[[], dict[str, Any]]
_running: set[asyncio.Task[None]] = set()  # strong references until each send is done
# One client per event loop, so callbacks reuse connections instead of building a client
# (and its TLS context) each time; closed by `close_client` when the app shuts down.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary())


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _clients[loop] = httpx.AsyncClient(timeout=TIMEOUT_S)
    return client


async def close_client() -> None:
    """Close this event loop's callback client (the app's shutdown)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


def schedule(sim: Simulator, task: Task, url: str, payload: Payload) -> None:
    """Arrange one callback to `url` when `task` ends; `payload` builds its body then."""
    if not url.startswith(("http://", "https://")):
        return
    loop = asyncio.get_running_loop()
    delay = max(0.0, task.end - sim.clock()) + 0.005

    def fire() -> None:
        job = loop.create_task(_deliver(sim, task, url, payload))
        _running.add(job)
        job.add_done_callback(_running.discard)

    loop.call_later(delay, fire)


async def _deliver(sim: Simulator, task: Task, url: str, payload: Payload) -> None:
    if task.phase(sim.clock()) in (Phase.QUEUED, Phase.RUNNING):
        return  # time was moved by hand (tests): nothing finished
    if sim.roll(sim.behaviour(task.api_key).p_webhook_drop):
        sim.stats.webhooks_dropped += 1
        return
    sim.stats.webhooks_sent += 1
    try:
        response = await _client().post(url, json=payload())
    except httpx.HTTPError:
        sim.stats.webhook_statuses["error"] += 1
        return
    sim.stats.webhook_statuses[str(response.status_code)] += 1
    if response.is_success:
        sim.stats.webhooks_delivered += 1
