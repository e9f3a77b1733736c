"""The webhook receiver (`genbatch webhooks --port 8900`):

    POST /hooks/{provider}/{item id}/{attempt}/{token}   a provider's callback
    GET  /healthz                                        liveness

A callback is looked at only when all of these hold, else it changes nothing:

* the token is the attempt's HMAC under GENBATCH_WEBHOOK_SECRET (else 404, as for any
  unknown path: a wrong token and an unknown item look the same);
* a provider that signs its callbacks, when its signing secret is set (WaveSpeed:
  GENBATCH_WAVESPEED_WEBHOOK_SECRET), or always where it signs with a published key (fal:
  ED25519 under the key set at GENBATCH_FAL_JWKS_URL): the signature is good and under 5
  minutes old (else 401) and the delivery id was not applied before (else 409);
* the item exists and belongs to that provider (else 404);
* the body names the item's own remote task id (else 401, counted as a disagreement).

Then a signed delivery is applied as a poll's answer would be. Any other is a hint
(worker/hints.py): it wakes the item, whose poll (the provider's own answer) moves it; on an
`ambiguous` item a callback (signed or not) on the URL of the attempt that went ambiguous
has a worker ask the provider for the task it names, and adopt it when it exists. A
callback of an earlier attempt changes nothing (`stale`).

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

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from genbatch import providers
from genbatch.config import Settings
from genbatch.errors import BadSignature, NotFoundError, StoreError
from genbatch.models import ItemState, PollResult
from genbatch.records import Item
from genbatch.worker import hints, reconcile, steps
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

    def handle(self, provider: str, iid: str, attempt: int, token: str, raw: bytes,
               headers: Mapping[str, str] | None = None) -> str:
        """What the callback did: the outcome of `steps.apply_poll` for a signed delivery
        ("downloading", "failed", "running", ...), "woken" or "confirming" for a hint,
        "skipped" for one the item is past, "stale" for an earlier attempt's, "ignored" for
        another event type; raises Rejected."""
        if not takes_callbacks(provider) or not token_ok(self.rt.settings, provider, iid,
                                                             attempt, token):
            raise Rejected(404, "not found")
        delivery = self._signed_delivery(provider, raw, headers or {})
        try:
            return self._apply(provider, iid, attempt, raw, signed=delivery is not None)
        except BaseException:
            if delivery:  # not applied: the provider's retry of it must get through
                self._forget(provider, delivery)
            raise

    def _apply(self, provider: str, iid: str, attempt: int, raw: bytes, *,
               signed: bool) -> str:
        parsed = parse_callback(provider, _json_object(raw))
        if parsed is None:
            return "ignored"
        task_id, result = parsed
        item = self._item(iid)
        if item.provider != provider:
            raise Rejected(404, "not found")
        if item.state in NOT_YET_SUBMITTED:
            raise Rejected(503, "the submit is not recorded yet; send it again",
                           retry_after=RETRY_AFTER_S)
        if attempt != item.attempts:
            return "stale"  # an earlier attempt's task: this item has moved on from it
        if item.state is ItemState.AMBIGUOUS and task_id:
            if not signed:  # a worker confirms the task with the provider first
                return hints.hold_for_adoption(self.rt, item, attempt, task_id)
            # A verified callback on this attempt's own URL: its task is the submit's.
            verdict = reconcile.adopt(self.rt, item, task_id, self.rt.now(), note=f"adopted "
                                      f"task {task_id} from its attempt's signed callback")
            if verdict.outcome == "late":  # its window closed: recorded (worker/settling.py)
                return "late"
            item = self._item(iid)
        if not task_id or task_id != item.remote_id:
            hints.disagree(self.rt, item, f"the callback names task {(task_id or '')[:80]!r}, "
                                          "not the item's")
            raise Rejected(401, "the task id is not this item's task")
        if item.state is not ItemState.SUBMITTED:
            return "skipped"  # already moved on by a poll or an earlier callback
        if not signed:
            return hints.wake(self.rt, item, result)
        return steps.apply_poll(self.rt, item, iid, result, item.polls + 1, pushed=True)

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
        with contextlib.suppress(StoreError):
            self.rt.store.memo.forget(_seen_kind(provider), delivery)

    def _item(self, iid: str) -> Item:
        try:
            return self.rt.store.items.get(iid)
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
                                              request.path_params["attempt"],
                                              request.path_params["token"], b"".join(chunks),
                                              request.headers)
        except Rejected as exc:
            extra = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
            return JSONResponse({"error": exc.message}, status_code=exc.status, headers=extra)
        except StoreError as exc:
            log.warning("callback for item %s not applied, Redis error: %s", iid, exc)
            return JSONResponse({"error": "job store unavailable, retry"}, status_code=503)
        log.info("callback from %s for item %s: %s", provider, iid, outcome)
        return JSONResponse({"ok": True, "outcome": outcome})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(routes=[
        Route(HOOK_PATH + "/{provider}/{item}/{attempt:int}/{token}", callback,
              methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ])


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    settings.configure_logging()
    # access_log off: request paths carry the callback tokens.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                access_log=False)
