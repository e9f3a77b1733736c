"""The webhook receiver (`genbatch webhooks --port 8900`):

    POST /hooks/{provider}/{item id}/{token}   a WaveSpeed or Novita callback
    GET  /healthz                              liveness

A callback is accepted only when all of these hold, else it changes nothing:

* the token is the item's HMAC under GENBATCH_WEBHOOK_SECRET (else 404, as for any unknown
  path: a wrong token and an unknown item look the same);
* the item exists and belongs to that provider (else 404);
* the body names the item's own remote task id (else 401: a forged or stale callback, e.g.
  one from a task an earlier attempt created).

The body is parsed by the provider adapter's own parser (WaveSpeed: the bare prediction
`data`; Novita: ASSUMED to be a task-result body, see genbatch.providers.novita) and the item
is moved by `steps.apply_poll`, the very code a poll uses, so a callback and a poll can race
harmlessly: the first compare-and-set wins, the other finds the item past `submitted`. A
callback that arrives while the worker is still recording its submit waits briefly for it.
Redis errors answer 503 so the provider retries; the slow safety poll covers lost callbacks.

Neither the secret nor a token is ever logged (uvicorn's access log is off: paths hold
tokens).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from genbatch.config import Settings
from genbatch.errors import NotFoundError
from genbatch.models import ItemState, PollResult
from genbatch.providers import novita, wavespeed
from genbatch.records import Item
from genbatch.webhooks import HOOK_PATH, WEBHOOK_PROVIDERS, check_settings, token_ok
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)

Parser = Callable[[dict[str, Any]], tuple[str | None, PollResult]]
PARSERS: dict[str, Parser] = {"novita": novita.parse_callback,
                              "wavespeed": wavespeed.parse_callback}
MAX_BODY_BYTES = 1 << 20
SUBMIT_WAIT_S = 5.0  # how long a callback waits for the worker to record its own submit
NOT_YET_SUBMITTED = (ItemState.DISPATCHED, ItemState.SUBMITTING)


class Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Receiver:
    """Checks one callback and applies it; plain and synchronous, so tests can call it."""

    def __init__(self, rt: Runtime, submit_wait_s: float = SUBMIT_WAIT_S) -> None:
        self.rt = rt
        self.submit_wait_s = submit_wait_s

    def handle(self, provider: str, iid: str, token: str, raw: bytes) -> str:
        """The outcome of `steps.apply_poll` ("downloading", "failed", "running", ...) or
        "skipped" for a duplicate; raises Rejected."""
        from genbatch.worker.steps import apply_poll  # imports the worker's dependencies

        settings = self.rt.settings
        if provider not in WEBHOOK_PROVIDERS or not token_ok(settings, provider, iid, token):
            raise Rejected(404, "not found")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Rejected(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise Rejected(400, "the body is not a JSON object")
        task_id, result = PARSERS[provider](body)
        item = self._item(iid)
        if item.provider != provider:
            raise Rejected(404, "not found")
        if not task_id or task_id != item.remote_id:
            log.warning("callback for item %s rejected: task id %r is not the item's task",
                        iid, (task_id or "")[:80])
            raise Rejected(401, "the task id is not this item's task")
        if item.state is not ItemState.SUBMITTED:
            return "skipped"  # already moved on by a poll or an earlier callback
        return apply_poll(self.rt, item, iid, result, item.polls + 1, pushed=True)

    def _item(self, iid: str) -> Item:
        """The item, waiting up to `submit_wait_s` while its submit is being recorded."""
        deadline = time.monotonic() + self.submit_wait_s
        while True:
            try:
                item = self.rt.store.get_item(iid)
            except NotFoundError:
                raise Rejected(404, "not found") from None
            if item.state not in NOT_YET_SUBMITTED or time.monotonic() >= deadline:
                return item
            time.sleep(0.05)


def create_app(settings: Settings, runtime: Runtime | None = None,
               submit_wait_s: float = SUBMIT_WAIT_S) -> Starlette:
    """The receiver app. `runtime` defaults to one whose enqueue sends Celery tasks."""
    check_settings(settings)
    if runtime is None:
        from genbatch.worker.runtime import configure

        runtime = configure(settings)
    receiver = Receiver(runtime, submit_wait_s)

    async def callback(request: Request) -> Response:
        provider = request.path_params["provider"]
        iid = unquote(request.path_params["item"])
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return JSONResponse({"error": "body too large"}, status_code=413)
            chunks.append(chunk)
        try:
            outcome = await run_in_threadpool(receiver.handle, provider, iid,
                                              request.path_params["token"], b"".join(chunks))
        except Rejected as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except redis.RedisError as exc:
            log.warning("callback for item %s not applied, Redis error: %s", iid, exc)
            return JSONResponse({"error": "job store unavailable, retry"}, status_code=503)
        log.info("callback from %s for item %s: %s", provider, iid, outcome)
        return JSONResponse({"ok": True, "outcome": outcome})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(routes=[
        Route(HOOK_PATH + "/{provider}/{item}/{token}", callback, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ])


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    settings.configure_logging()
    # access_log off: request paths carry the callback tokens.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                access_log=False)
