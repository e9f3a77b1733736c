"""fal's queue protocol (https://docs.fal.ai/model-endpoints/queue), mounted at `/fal`.

    POST /{model id}[?fal_webhook=url]         -> {request_id, gateway_request_id,
                                                   status_url, response_url, cancel_url}
    GET  /{owner}/{app}/requests/{id}/status   -> 202 IN_QUEUE (queue_position) /
                                                  IN_PROGRESS, 200 COMPLETED (metrics;
                                                  `error` + `error_type` when it failed)
    GET  /{owner}/{app}/requests/{id}          -> the output `{"video": {"url", …}, "seed"}`
                                                  (400 while unfinished, the error when
                                                  failed: 422 `{"detail": […]}` or 500)
    PUT  /{owner}/{app}/requests/{id}/cancel   -> 202 CANCELLATION_REQUESTED (queued) or
                                                  400 ALREADY_COMPLETED
    GET  /.well-known/jwks.json                -> the simulator's webhook key (fal_keys.py)
    POST /storage/upload/initiate?storage_type=fal-cdn-v3  {content_type, file_name}
                                               -> {upload_url, file_url}: PUT the bytes to
                                                  upload_url (no key), then file_url serves
                                                  them (fal's REST storage API, as fal-js
                                                  `storage.ts` calls it; uploads.py)

Auth `Authorization: Key <key>`. Limits as fal keeps them: the key's `concurrency` counts
running requests only; over it a request waits IN_QUEUE, never refused (fal: "requests are
never rejected due to concurrency limits"); an `rpm` still answers 429 if a profile sets
one. `X-Fal-Request-Timeout: <s>`: a request not started by then ends with
`error_type: request_timeout` (its result a 504 with `X-Fal-Request-Timeout-Type: user`).
`X-Fal-Queue-Priority` is accepted (normal | low) and recorded, not reordered. Failures are
injected through `gate` (429, 5xx, malformed bodies, submit timeouts); a finished request
with `fal_webhook` is POSTed there, signed (ED25519), retried (fal: 10 times over 2 hours).
"""

from __future__ import annotations

import random
import uuid
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from genbatch.simulator import fal_keys, gate, uploads, webhooks
from genbatch.simulator.gate import Dialect, ErrorKind
from genbatch.simulator.rules import Rule, boolean, check_body, image, integer, one_of
from genbatch.simulator.rules import string as text
from genbatch.simulator.state import Simulator, simulator_of
from genbatch.simulator.tasks import Phase, Task, pick_seed

URL_TTL_S = 7 * 24 * 3600
TASK_FAILURES = (
    ("content_policy_violation", "the output was flagged by the content checker"),
    ("internal_error", "internal error during inference"),
)
FAL = webhooks.Delivery(timeout_s=15.0, retries=10, sign=fal_keys.sign)
_START_TIMEOUT = ("request_timeout", "the request did not start before its start timeout")
_CANCELLED = ("request_cancelled", "the request was cancelled")


def _envelope(status: int, code: str, message: str, param: str) -> dict[str, Any]:
    """fal's FastAPI-style errors: a 422 lists fields, the rest carry a sentence."""
    if status == 422:
        return {"detail": [{"loc": ["body", param], "msg": message, "type": code}]}
    return {"detail": message}


DIALECT = Dialect(
    "fal",
    {
        ErrorKind.MISSING_KEY: (401, ""),
        ErrorKind.BAD_KEY: (401, ""),
        ErrorKind.INVALID: (422, "value_error"),
        ErrorKind.MISSING_PARAM: (422, "value_error.missing"),
        ErrorKind.UNKNOWN_MODEL: (404, ""),
        ErrorKind.RATE_LIMITED: (429, ""),
        ErrorKind.SERVER: (500, ""),
        ErrorKind.SERVER_READ: (500, ""),
        ErrorKind.NOT_FOUND: (404, ""),
        ErrorKind.NO_BALANCE: (403, ""),
    },
    _envelope,
)

_IMAGE = image()
_KLING = {
    "prompt": Rule(text(non_empty=True, max_len=2500), required=True),
    "image_url": Rule(_IMAGE, required=True),
    "duration": Rule(one_of(("5", "10"))),
    "negative_prompt": Rule(text(max_len=2500)),
    "cfg_scale": Rule(lambda v: None),
}
RULES: dict[str, dict[str, Rule]] = {
    "fal-ai/kling-video/v2.1/standard/image-to-video": _KLING,
    "fal-ai/kling-video/v2.5-turbo/pro/image-to-video": {
        **_KLING, "tail_image_url": Rule(_IMAGE)},
    "fal-ai/bytedance/seedance/v1/pro/image-to-video": {
        "prompt": Rule(text(non_empty=True), required=True),
        "image_url": Rule(_IMAGE, required=True),
        "end_image_url": Rule(_IMAGE),
        "aspect_ratio": Rule(one_of(("21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "auto"))),
        "resolution": Rule(one_of(("480p", "720p", "1080p"))),
        "duration": Rule(one_of(tuple(str(d) for d in range(2, 13)))),
        "camera_fixed": Rule(boolean()),
        "seed": Rule(integer(-1, 2147483647)),
        "enable_safety_checker": Rule(boolean()),
    },
}


def app_of(model: str) -> str:
    return "/".join(model.split("/")[:2])


def routes() -> list[Route]:
    """fal's routes, to be mounted at `/fal` (the URLs it answers name that prefix)."""

    @gate.endpoint
    async def submit(request: Request) -> Response:
        sim = simulator_of(request)
        api_key, behaviour = gate.authenticate(request, sim, DIALECT, scheme="Key")
        model = request.path_params["model"].strip("/")
        if model not in RULES:
            raise DIALECT.refuse(ErrorKind.UNKNOWN_MODEL, f"Application '{model}' not found")
        body = await gate.read_json(request, DIALECT)
        fingerprint = gate.count_attempt(sim, DIALECT.provider, model, body)
        if behaviour.out_of_balance:  # fal locks the user
            raise DIALECT.refuse(ErrorKind.NO_BALANCE, "User is locked. Reason: Exhausted "
                                 "balance. Top up your balance at fal.ai/dashboard/billing.")
        gate.admit_submit(sim, api_key, behaviour, DIALECT)
        problems = check_body(body, RULES[model])
        if problems:
            raise gate.refuse_problems(DIALECT, problems)
        gate.refuse_over_limits(sim, api_key, model, behaviour, DIALECT, queues=True)
        task = sim.create_task(
            task_id=sim.unique_id(_request_id), provider=DIALECT.provider, model=model,
            api_key=api_key, fingerprint=fingerprint, params=_params(sim.rng, request, body),
            queue_for_slot=True, expires_after_s=None, failures=TASK_FAILURES,
            url_ttl_s=URL_TTL_S, start_by_s=_start_timeout(request),
        )
        origin = gate.origin(request)
        if hook := request.query_params.get("fal_webhook"):
            webhooks.schedule(sim, task, hook, lambda: _webhook(sim, task, origin), FAL)
        urls = _urls(origin, task)
        content = {"request_id": task.id, "gateway_request_id": task.id,
                   "status": "IN_QUEUE", "queue_position": _position(sim, task), **urls}
        return await gate.answer_submit(request, sim, behaviour, content)

    @gate.endpoint
    async def status(request: Request) -> Response:
        sim, task, behaviour = _task(request, "poll")
        content = _status(sim, task, gate.origin(request))
        response = gate.answer(sim, behaviour, "poll", content)
        if content["status"] != "COMPLETED" and isinstance(response, JSONResponse):
            response.status_code = 202
        return response

    @gate.endpoint
    async def initiate(request: Request) -> Response:
        sim = simulator_of(request)
        api_key, _ = gate.authenticate(request, sim, DIALECT, scheme="Key")
        body = await gate.read_json(request, DIALECT)
        name, content_type = body.get("file_name"), body.get("content_type")
        if not isinstance(name, str) or not name.strip():
            raise DIALECT.refuse(ErrorKind.MISSING_PARAM, "field required", param="file_name")
        if not isinstance(content_type, str) or not content_type.strip():
            raise DIALECT.refuse(ErrorKind.MISSING_PARAM, "field required",
                                 param="content_type")
        url = uploads.reserve(request, name, content_type, api_key)
        return JSONResponse({"upload_url": url, "file_url": url})

    base = "/{owner}/{app}/requests/{request_id}"
    return [
        Route("/.well-known/jwks.json", keys, methods=["GET"]),
        Route("/storage/upload/initiate", initiate, methods=["POST"]),
        Route(base + "/status", status, methods=["GET"]),
        Route(base + "/cancel", cancel, methods=["PUT"]),
        Route(base, result, methods=["GET"]),
        Route("/{model:path}", submit, methods=["POST"]),
    ]


@gate.endpoint
async def result(request: Request) -> Response:
    sim, task, behaviour = _task(request, "poll")
    phase = task.phase(sim.clock())
    if phase in (Phase.QUEUED, Phase.RUNNING):
        return JSONResponse({"detail": "Request is still in progress"}, 400)
    if phase is Phase.EXPIRED:
        return JSONResponse({"detail": _START_TIMEOUT[1]}, 504,
                            headers={"X-Fal-Request-Timeout-Type": "user"})
    if phase is not Phase.SUCCEEDED:
        code, message = _error_of(task, phase)
        status_code = 422 if code == "content_policy_violation" else 500
        return JSONResponse({"detail": message, "error_type": code}, status_code)
    return gate.answer(sim, behaviour, "poll", _output(sim, task, gate.origin(request)))


@gate.endpoint
async def cancel(request: Request) -> Response:
    sim, task, _ = _task(request, "cancel")
    if task.phase(sim.clock()) is not Phase.QUEUED:
        return JSONResponse({"status": "ALREADY_COMPLETED"}, 400)
    sim.cancel(task)
    return JSONResponse({"status": "CANCELLATION_REQUESTED"}, 202)


async def keys(request: Request) -> Response:
    return JSONResponse(fal_keys.jwks(simulator_of(request)))


def _task(request: Request, op: Any) -> tuple[Simulator, Task, Any]:
    sim = simulator_of(request)
    api_key, behaviour = gate.authenticate(request, sim, DIALECT, scheme="Key")
    if op == "poll":
        sim.stats.polls += 1
    gate.inject(sim, behaviour, op, DIALECT)
    task = sim.find(DIALECT.provider, api_key, request.path_params["request_id"])
    app = f"{request.path_params['owner']}/{request.path_params['app']}"
    if task is None or app_of(task.model) != app:
        raise DIALECT.refuse(ErrorKind.NOT_FOUND, "Request not found")
    return sim, task, behaviour


def _request_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _start_timeout(request: Request) -> float | None:
    value = request.headers.get("x-fal-request-timeout")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise DIALECT.refuse(ErrorKind.INVALID, "X-Fal-Request-Timeout must be a "
                             "number of seconds", "X-Fal-Request-Timeout") from None
    if seconds <= 0:
        raise DIALECT.refuse(ErrorKind.INVALID, "X-Fal-Request-Timeout must be > 0",
                             "X-Fal-Request-Timeout")
    return seconds


def _params(rng: random.Random, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    priority = request.headers.get("x-fal-queue-priority", "normal")
    if priority not in ("normal", "low"):
        raise DIALECT.refuse(ErrorKind.INVALID, "X-Fal-Queue-Priority must be normal or low",
                             "X-Fal-Queue-Priority")
    return {"seed": pick_seed(rng, body.get("seed")), "priority": priority,
            "duration": int(body.get("duration") or 5)}


def _urls(origin: str, task: Task) -> dict[str, str]:
    base = f"{origin}/fal/{app_of(task.model)}/requests/{quote(task.id)}"
    return {"status_url": base + "/status", "response_url": base,
            "cancel_url": base + "/cancel"}


def _position(sim: Simulator, task: Task) -> int:
    """How many of the key's queued requests were submitted before this one."""
    now = sim.clock()
    return sum(1 for t in sim.tasks.values()
               if t.provider == task.provider and t.api_key == task.api_key
               and t.created < task.created and t.phase(now) is Phase.QUEUED)


def _error_of(task: Task, phase: Phase) -> tuple[str, str]:
    if phase is Phase.EXPIRED:
        return _START_TIMEOUT
    if phase is Phase.CANCELLED:
        return _CANCELLED
    return task.error_code, task.error_message


def _status(sim: Simulator, task: Task, origin: str) -> dict[str, Any]:
    phase = task.phase(sim.clock())
    out: dict[str, Any] = {"request_id": task.id, "response_url": _urls(origin, task)[
        "response_url"]}
    if phase is Phase.QUEUED:
        return {**out, "status": "IN_QUEUE", "queue_position": _position(sim, task)}
    if phase is Phase.RUNNING:
        return {**out, "status": "IN_PROGRESS", "logs": []}
    out.update(status="COMPLETED", logs=[],
               metrics={"inference_time": round(task.simulated(task.end - task.start), 3)})
    if phase is not Phase.SUCCEEDED:
        out["error_type"], out["error"] = _error_of(task, phase)
    return out


def _output(sim: Simulator, task: Task, origin: str) -> dict[str, Any]:
    url = sim.media.video_url(origin, task.id, task.url_expires(sim.clock()))
    return {"video": {"url": url, "content_type": "video/mp4", "file_name": "output.mp4"},
            "seed": task.params["seed"]}


def _webhook(sim: Simulator, task: Task, origin: str) -> dict[str, Any]:
    """The body fal POSTs to `fal_webhook` when the request is done."""
    out: dict[str, Any] = {"request_id": task.id, "gateway_request_id": task.id}
    phase = task.phase(sim.clock())
    if phase is Phase.SUCCEEDED:
        return {**out, "status": "OK", "payload": _output(sim, task, origin)}
    code, message = _error_of(task, phase)
    return {**out, "status": "ERROR", "error": message,
            "payload": {"detail": message, "error_type": code}}
