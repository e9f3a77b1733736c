"""The webhook receiver (`genbatch webhooks --port 8900`):

    POST /hooks/{provider}/{item id}/{token}   a callback from a provider that calls back
    GET  /healthz                              liveness

A callback is accepted only when all of these hold, else it changes nothing:

* the token is the item's HMAC under GENBATCH_WEBHOOK_SECRET (else 404, as for any unknown
  path: a wrong token and an unknown item look the same);
* WaveSpeed, when GENBATCH_WAVESPEED_WEBHOOK_SECRET is set: the `webhook-signature` is
  good and under 5 minutes old (else 401) and its `webhook-id` was not applied before
  (else 409; see signing.py);
* fal: always, its `X-Fal-Webhook-Signature` (ED25519) verifies under fal's published key
  set (GENBATCH_FAL_JWKS_URL) and is under 5 minutes old (else 401), not replayed (409);
* the item exists and belongs to that provider (else 404);
* the body names the item's own remote task id (else 401: a forged or stale callback, e.g.
  one from a task an earlier attempt created) — except that a *verified* callback (fal's,
  always signed) for an `ambiguous` item naming a task no earlier attempt had settles that
  submit: the task is adopted (`worker/reconcile.adopt_from_callback`) and applied.

Bodies, each read by the provider adapter's own parser: Novita and HighwayAPI
`{"event_type": "ASYNC_TASK_RESULT", "payload": <task-result body>}` (another event type is
answered 200 and ignored); WaveSpeed the bare prediction `data`; BytePlus the task object
GET returns (a wrapper tolerated). The item is moved by `steps.apply_poll`, the very code a
poll uses, so a callback and a poll can race harmlessly: the first compare-and-set wins.

Every answer comes at once (Novita gives up after 5 s): a callback that arrives before the
worker has recorded its submit is answered 503 with Retry-After, so the provider sends it
again; Redis errors answer 503 too; the slow safety poll covers callbacks lost for good.

Neither a secret nor a token is ever logged (uvicorn's access log is off: paths hold
tokens).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import redis
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from genbatch import providers
from genbatch.config import Settings
from genbatch.errors import BadSignature, NotFoundError
from genbatch.models import ItemState, PollResult
from genbatch.records import Item
from genbatch.worker.callbacks import HOOK_PATH, check_settings, takes_callbacks, token_ok
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
RETRY_AFTER_S = 5
NOT_YET_SUBMITTED = (ItemState.DISPATCHED, ItemState.SUBMITTING)
# A signed delivery's id is remembered this long (a verify refuses older signatures).
REPLAY_WINDOW_S = 600


def parse_callback(provider: str, body: dict[str, Any]) -> tuple[str | None, PollResult] | None:
    """(task id, result) of a delivery, by the provider plugin's parser; None for one to
    acknowledge and ignore (another event type)."""
    callbacks = providers.plugin(provider).callbacks
    if callbacks is None:
        raise Rejected(404, "not found")
    return callbacks.parse(body)


def _seen_kind(provider: str) -> str:
    return f"{provider}-webhook"


class Rejected(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class Receiver:
    """Checks one callback and applies it; plain and synchronous, so tests can call it."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def handle(self, provider: str, iid: str, token: str, raw: bytes,
               headers: Mapping[str, str] | None = None) -> str:
        """The outcome of `steps.apply_poll` ("downloading", "failed", "running", ...),
        "skipped" for a duplicate or "ignored" for another event type; raises Rejected."""
        if not takes_callbacks(provider) or not token_ok(self.rt.settings, provider, iid,
                                                             token):
            raise Rejected(404, "not found")
        delivery = self._signed_delivery(provider, raw, headers or {})
        try:
            return self._apply(provider, iid, raw, signed=delivery is not None)
        except BaseException:
            if delivery:  # not applied: the provider's retry of it must get through
                self._forget(provider, delivery)
            raise

    def _apply(self, provider: str, iid: str, raw: bytes, *, signed: bool) -> str:
        from genbatch.worker.reconcile import adopt_from_callback  # the worker's dependencies
        from genbatch.worker.steps import apply_poll

        parsed = parse_callback(provider, _json_object(raw))
        if parsed is None:
            return "ignored"
        task_id, result = parsed
        item = self._item(iid)
        # A verified callback on this item's URL settles its ambiguous submit.
        if signed and task_id and item.state is ItemState.AMBIGUOUS \
                and item.provider == provider \
                and adopt_from_callback(self.rt, item, task_id, self.rt.now()).outcome \
                == "adopted":
            item = self._item(iid)
        if item.provider != provider:
            raise Rejected(404, "not found")
        if item.state in NOT_YET_SUBMITTED:
            raise Rejected(503, "the submit is not recorded yet; send it again",
                           retry_after=RETRY_AFTER_S)
        if not task_id or task_id != item.remote_id:
            log.warning("callback for item %s rejected: task id %r is not the item's task",
                        iid, (task_id or "")[:80])
            raise Rejected(401, "the task id is not this item's task")
        if item.state is not ItemState.SUBMITTED:
            return "skipped"  # already moved on by a poll or an earlier callback
        return apply_poll(self.rt, item, iid, result, item.polls + 1, pushed=True)

    def _signed_delivery(self, provider: str, raw: bytes,
                         headers: Mapping[str, str]) -> str | None:
        """A provider that signs its callbacks, with its signing secret set: the verified,
        first-seen delivery id (WaveSpeed's `webhook-id`)."""
        callbacks = providers.plugin(provider).callbacks
        if callbacks is None or callbacks.verify is None:
            return None
        secret = self.rt.settings.provider_value(provider, callbacks.secret_setting)
        text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret or ""
        if not text and not callbacks.verify_unset:
            return None
        try:
            delivery = callbacks.verify(text, headers, raw, self.rt.now())
        except BadSignature as exc:
            raise Rejected(401, str(exc)) from None
        if not self.rt.store.memo.first_sight(_seen_kind(provider), delivery, REPLAY_WINDOW_S):
            raise Rejected(409, "this webhook-id was already applied (a replay)")
        return delivery

    def _forget(self, provider: str, delivery: str) -> None:
        # On a Redis error it expires on its own; a retry after that is verified as new.
        with contextlib.suppress(redis.RedisError):
            self.rt.store.memo.forget(_seen_kind(provider), delivery)

    def _item(self, iid: str) -> Item:
        try:
            return self.rt.store.get_item(iid)
        except NotFoundError:
            raise Rejected(404, "not found") from None


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Rejected(400, "the body is not a JSON object")
    return body


def create_app(settings: Settings, runtime: Runtime | None = None) -> Starlette:
    """The receiver app. `runtime` defaults to one whose enqueue sends Celery tasks."""
    check_settings(settings)
    if runtime is None:
        from genbatch.worker.runtime import configure

        runtime = configure(settings)
    receiver = Receiver(runtime)

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
                                              request.path_params["token"], b"".join(chunks),
                                              request.headers)
        except Rejected as exc:
            extra = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
            return JSONResponse({"error": exc.message}, status_code=exc.status, headers=extra)
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
