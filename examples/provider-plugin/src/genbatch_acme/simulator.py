"""Acme's protocol on genbatch's simulator (entry point `genbatch.simulators`): served
under `/acme` by `genbatch simulate`, the conformance kit and the integration tests.

Built on `genbatch.simulator.gate`, so every API key's profile applies as it does to the
built-in providers: authentication, submit rate, failure injection (429, 5xx, a submit
whose answer is lost), task failures, no balance. Acme refuses a submit over the account's
concurrency with 409 `slot_full` (it does not queue). Callbacks are signed (`signing.py`)
with the key's webhook secret, which `GET /v1/account/webhook-secret` hands out.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from genbatch.simulator import SimulatorPlugin, gate, webhooks
from genbatch.simulator.gate import Dialect, ErrorKind
from genbatch.simulator.rules import (
    Rule,
    check_body,
    given,
    image,
    integer,
    integer_in,
    one_of,
    string,
)
from genbatch.simulator.state import Simulator, simulator_of
from genbatch.simulator.tasks import Phase, Task, pick_seed
from genbatch_acme import signing

PROVIDER = "acme"
URL_TTL_S = 3600
FAILURES = (("render_failed", "the renderer gave up on this image"),
            ("content_rejected", "the image did not pass moderation"))
STATES = {Phase.QUEUED: "waiting", Phase.RUNNING: "rendering", Phase.SUCCEEDED: "done",
          Phase.FAILED: "error", Phase.EXPIRED: "error", Phase.CANCELLED: "cancelled"}
RULES = {
    "motion-1": {
        "model": Rule(string(non_empty=True), required=True),
        "prompt": Rule(string(non_empty=True, max_len=2000), required=True),
        "image_url": Rule(image(), required=True),
        "duration": Rule(integer_in({5, 10}), required=True),
        "resolution": Rule(one_of(("480p", "720p")), required=True),
        "aspect_ratio": Rule(one_of(("16:9", "9:16", "1:1"))),
        "seed": Rule(integer(-1, 2147483647)),
        "callback_url": Rule(string(non_empty=True)),
    },
}


def _envelope(status: int, code: str, message: str, param: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


DIALECT = Dialect(PROVIDER, {
    ErrorKind.MISSING_KEY: (401, "unauthorized"),
    ErrorKind.BAD_KEY: (401, "unauthorized"),
    ErrorKind.INVALID: (400, "invalid_request"),
    ErrorKind.MISSING_PARAM: (400, "invalid_request"),
    ErrorKind.UNKNOWN_MODEL: (404, "unknown_model"),
    ErrorKind.RATE_LIMITED: (429, "rate_limited"),
    ErrorKind.SERVER: (500, "internal_error"),
    ErrorKind.SERVER_READ: (500, "internal_error"),
    ErrorKind.NOT_FOUND: (404, "not_found"),
    ErrorKind.NOT_CANCELLABLE: (409, "not_cancellable"),
    ErrorKind.NO_BALANCE: (402, "insufficient_credit"),
}, _envelope)


def webhook_secret(sim: Simulator, api_key: str) -> str:
    """The key's webhook signing secret: stable for one simulator run."""
    mac = hmac.new(sim.secret, f"acme-webhook\n{api_key}".encode(), hashlib.sha256)
    return "acme_ws_" + mac.hexdigest()[:32]


def _sign(sim: Simulator, task: Task, delivery: str, timestamp: str,
          body: bytes) -> dict[str, str]:
    return signing.sign(webhook_secret(sim, task.api_key), timestamp, delivery, body)


DELIVERY = webhooks.Delivery(timeout_s=5.0, retries=3, sign=_sign)


def routes(prefix: str) -> list[BaseRoute]:
    return [
        Route("/v1/videos", submit, methods=["POST"]),
        Route("/v1/videos/{job_id}", get, methods=["GET"]),
        Route("/v1/videos/{job_id}/cancel", cancel, methods=["POST"]),
        Route("/v1/account/webhook-secret", secret, methods=["GET"]),
    ]


@gate.endpoint
async def submit(request: Request) -> Response:
    sim = simulator_of(request)
    api_key, behaviour = gate.authenticate(request, sim, DIALECT)
    body = await gate.read_json(request, DIALECT)
    model = str(body.get("model"))
    fingerprint = gate.count_attempt(sim, PROVIDER, model, body)
    gate.admit_submit(sim, api_key, behaviour, DIALECT)
    if model not in RULES:
        raise DIALECT.refuse(ErrorKind.UNKNOWN_MODEL, f"no model {model!r}")
    if problems := check_body(body, RULES[model]):
        raise gate.refuse_problems(DIALECT, problems)
    cap = behaviour.concurrency
    if cap is not None and sim.in_flight(PROVIDER, api_key) >= cap:
        raise DIALECT.refuse(ErrorKind.RATE_LIMITED, f"all {cap} slots are busy",
                             code="slot_full", status=409)
    gate.refuse_over_limits(sim, api_key, model, behaviour, DIALECT, queues=True)
    task = sim.create_task(
        task_id=sim.unique_id(lambda rng: f"vid_{rng.getrandbits(96):024x}"),
        provider=PROVIDER, model=model, api_key=api_key, fingerprint=fingerprint,
        params={"seed": pick_seed(sim.rng, body.get("seed")),
                "duration": given(body, "duration", 5)},
        queue_for_slot=False, expires_after_s=None, failures=FAILURES, url_ttl_s=URL_TTL_S,
    )
    if isinstance(hook := body.get("callback_url"), str):
        origin = gate.origin(request)
        webhooks.schedule(sim, task, hook, lambda: _job(sim, task, origin), DELIVERY)
    return await gate.answer_submit(request, sim, behaviour, {"id": task.id, "state": "waiting"})


@gate.endpoint
async def get(request: Request) -> Response:
    sim = simulator_of(request)
    api_key, behaviour = gate.authenticate(request, sim, DIALECT)
    sim.stats.polls += 1
    gate.inject(sim, behaviour, "poll", DIALECT)
    task = _find(sim, api_key, request.path_params["job_id"])
    return gate.answer(sim, behaviour, "poll", _job(sim, task, gate.origin(request)))


@gate.endpoint
async def cancel(request: Request) -> Response:
    sim = simulator_of(request)
    api_key, behaviour = gate.authenticate(request, sim, DIALECT)
    gate.inject(sim, behaviour, "cancel", DIALECT)
    task = _find(sim, api_key, request.path_params["job_id"])
    if task.phase(sim.clock()) is not Phase.QUEUED:
        raise DIALECT.refuse(ErrorKind.NOT_CANCELLABLE, "only a waiting job can be cancelled")
    sim.cancel(task)
    return JSONResponse(_job(sim, task, gate.origin(request)))


@gate.endpoint
async def secret(request: Request) -> Response:
    sim = simulator_of(request)
    api_key, _ = gate.authenticate(request, sim, DIALECT)
    return JSONResponse({"secret": webhook_secret(sim, api_key)})


def _find(sim: Simulator, api_key: str, job_id: str) -> Task:
    task = sim.find(PROVIDER, api_key, job_id)
    if task is None:
        raise DIALECT.refuse(ErrorKind.NOT_FOUND, f"no job {job_id!r}")
    return task


def _job(sim: Simulator, task: Task, origin: str) -> dict[str, Any]:
    now = sim.clock()
    phase = task.phase(now)
    job: dict[str, Any] = {"id": task.id, "model": task.model, "state": STATES[phase],
                           "progress": round(100 * task.progress(now)),
                           "seed": task.params["seed"], "video": None, "error": None}
    if phase is Phase.SUCCEEDED:
        job["video"] = {"url": sim.media.video_url(origin, task.id, task.url_expires(now)),
                        "expires_in": round(task.url_ttl_s)}
    elif phase in (Phase.FAILED, Phase.EXPIRED):
        job["error"] = {"code": task.error_code or "expired",
                        "message": task.error_message or "the job ran out of time"}
    return job


SIMULATOR = SimulatorPlugin(name=PROVIDER, routes=routes,
                            summary="Acme Video's /v1/videos protocol")
