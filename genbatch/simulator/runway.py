"""Runway's API (https://docs.dev.runwayml.com), mounted at `/runway`.

    POST   /v1/image_to_video  {model, promptImage, promptText?, ratio, duration?, seed?,
                                contentModeration?}            -> {"id"}
    GET    /v1/tasks/{id}      -> {id, status, createdAt, estimatedCost | cost, progress?,
                                   output?, failure?, failureCode?} (the shapes of Runway's
                                   own SDK, runwayml 5.x: tests/contract)
    DELETE /v1/tasks/{id}      -> 204: cancels a task not finished, deletes a finished one
    GET    /v1/organization    -> the key's tier limits and today's use, per model

Every request needs `Authorization: Bearer <key>` and `X-Runway-Version: 2024-11-06` (400
without it). Limits as Runway keeps them (usage/tiers): the key's `concurrency` (also per
model, `model_limits`) is how many tasks run; beyond it a task is accepted and waits
`THROTTLED`, then `PENDING`, in submit order; there is no requests-per-minute limit (an
`rpm` in the profile still answers 429); `daily_cap` tasks per model per simulated 24 h,
beyond which task creation answers 429. Statuses PENDING, THROTTLED, RUNNING, SUCCEEDED,
FAILED (with `failure` and `failureCode`), CANCELLED. Polling only: no webhooks.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from genbatch.simulator import gate
from genbatch.simulator.gate import Dialect, ErrorKind
from genbatch.simulator.rules import Bad, Rule, check_body, image, integer, obj, one_of
from genbatch.simulator.rules import string as text
from genbatch.simulator.state import Simulator, simulator_of
from genbatch.simulator.tasks import Phase, Task, pick_seed

API_VERSION = "2024-11-06"
DAY_S = 24 * 3600
URL_TTL_S = 24 * 3600  # "expire within 24-48 hours"
DATA_URI_MAX_CHARS = 5 * 1024 * 1024
CREDITS_PER_S = 5  # gen4_turbo
TASK_FAILURES = (
    ("SAFETY.INPUT.IMAGE", "The input image did not pass content moderation."),
    ("INTERNAL.BAD_OUTPUT.CODE01", "An unexpected error occurred while generating."),
)
STATUS = {
    Phase.RUNNING: "RUNNING",
    Phase.SUCCEEDED: "SUCCEEDED",
    Phase.FAILED: "FAILED",
    Phase.CANCELLED: "CANCELLED",
    Phase.EXPIRED: "FAILED",
}
RATIOS = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")


def _envelope(status: int, code: str, message: str, param: str) -> dict[str, Any]:
    out: dict[str, Any] = {"error": message}
    if status == 400 and param:
        out["issues"] = [{"path": [param], "message": message}]
    return out


DIALECT = Dialect(
    "runway",
    {
        ErrorKind.MISSING_KEY: (401, ""),
        ErrorKind.BAD_KEY: (401, ""),
        ErrorKind.INVALID: (400, ""),
        ErrorKind.MISSING_PARAM: (400, ""),
        ErrorKind.UNKNOWN_MODEL: (400, ""),
        ErrorKind.RATE_LIMITED: (429, ""),
        ErrorKind.SERVER: (500, ""),
        ErrorKind.SERVER_READ: (500, ""),
        ErrorKind.NOT_FOUND: (404, ""),
        ErrorKind.NO_BALANCE: (400, ""),
    },
    _envelope,
)


def _prompt_image(value: Any) -> None:
    if isinstance(value, str) and value.startswith("data:") and len(value) > DATA_URI_MAX_CHARS:
        raise Bad("data URIs must be at most 5 MB")
    image()(value)


RULES: dict[str, Rule] = {
    "model": Rule(one_of(("gen4_turbo",)), required=True),
    "promptImage": Rule(_prompt_image, required=True),
    "promptText": Rule(text(max_len=1000)),
    "ratio": Rule(one_of(RATIOS), required=True),
    "duration": Rule(integer(2, 10)),
    "seed": Rule(integer(0, 4294967295)),
    "contentModeration": Rule(obj()),
}


def routes() -> list[Route]:
    """Runway's routes, to be mounted at `/runway`."""

    @gate.endpoint
    async def create(request: Request) -> Response:
        sim, api_key, behaviour = _caller(request)
        body = await gate.read_json(request, DIALECT)
        model = str(body.get("model") or "")
        fingerprint = gate.count_attempt(sim, DIALECT.provider, model, body)
        if behaviour.out_of_balance:
            raise DIALECT.refuse(ErrorKind.NO_BALANCE,
                                 "You do not have enough credits to run this task.")
        gate.admit_submit(sim, api_key, behaviour, DIALECT)
        problems = check_body(body, RULES)
        if problems:
            raise gate.refuse_problems(DIALECT, problems)
        if behaviour.daily_cap is not None and _today(sim, api_key, model) >= behaviour.daily_cap:
            raise gate.rate_limited(DIALECT, behaviour, f"You have exceeded the daily "
                                    f"generation limit of {behaviour.daily_cap} for {model}.")
        gate.refuse_over_limits(sim, api_key, model, behaviour, DIALECT, queues=True)
        task = sim.create_task(
            task_id=sim.unique_id(_task_id), provider=DIALECT.provider, model=model,
            api_key=api_key, fingerprint=fingerprint,
            params={"seed": pick_seed(sim.rng, body.get("seed")),
                    "ratio": body["ratio"], "duration": body.get("duration", 10)},
            queue_for_slot=True, expires_after_s=None, failures=TASK_FAILURES,
            url_ttl_s=URL_TTL_S,
        )
        ready = task.created + behaviour.queue_delay_s / task.time_factor
        # Waiting for a slot beyond the queue delay: THROTTLED until its turn is near.
        task.params["throttled_until"] = task.start - (ready - task.created) \
            if task.start > ready + 1e-9 else task.created
        return await gate.answer_submit(request, sim, behaviour, {"id": task.id})

    @gate.endpoint
    async def task_get(request: Request) -> Response:
        sim, task, behaviour = _find(request, "poll")
        sim.stats.polls += 1
        return gate.answer(sim, behaviour, "poll", _task_json(sim, task, gate.origin(request)))

    return [
        Route("/v1/image_to_video", create, methods=["POST"]),
        Route("/v1/tasks/{task_id}", task_get, methods=["GET"]),
        Route("/v1/tasks/{task_id}", task_delete, methods=["DELETE"]),
        Route("/v1/organization", organization, methods=["GET"]),
    ]


@gate.endpoint
async def task_delete(request: Request) -> Response:
    sim, task, _ = _find(request, "cancel")
    if task.phase(sim.clock()) in (Phase.QUEUED, Phase.RUNNING):
        sim.cancel(task)
    else:
        sim.delete(task)
    return Response(status_code=204)


@gate.endpoint
async def organization(request: Request) -> Response:
    sim, api_key, behaviour = _caller(request)
    model = "gen4_turbo"
    limits = {"maxConcurrentGenerations": behaviour.concurrency,
              "maxDailyGenerations": behaviour.daily_cap}
    return JSONResponse({"tier": {"models": {model: limits}},
                         "usage": {"models": {model: {
                             "dailyGenerations": _today(sim, api_key, model)}}}})


def _caller(request: Request) -> tuple[Simulator, str, Any]:
    sim = simulator_of(request)
    api_key, behaviour = gate.authenticate(request, sim, DIALECT)
    if request.headers.get("x-runway-version") != API_VERSION:
        raise DIALECT.refuse(ErrorKind.INVALID, f"Invalid or missing X-Runway-Version "
                             f"header; use {API_VERSION}", "X-Runway-Version")
    return sim, api_key, behaviour


def _find(request: Request, op: Any) -> tuple[Simulator, Task, Any]:
    sim, api_key, behaviour = _caller(request)
    gate.inject(sim, behaviour, op, DIALECT)
    task = sim.find(DIALECT.provider, api_key, request.path_params["task_id"])
    if task is None:
        raise DIALECT.refuse(ErrorKind.NOT_FOUND, "Task not found")
    return sim, task, behaviour


def _today(sim: Simulator, api_key: str, model: str) -> int:
    """Tasks of `model` the key created in the last simulated 24 hours."""
    factor = sim.behaviour(api_key).time_factor
    since = sim.clock() - DAY_S / factor
    return sum(1 for t in sim.tasks.values() if t.provider == DIALECT.provider
               and t.api_key == api_key and t.model == model and t.created >= since)


def _task_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _task_json(sim: Simulator, task: Task, origin: str) -> dict[str, Any]:
    now = sim.clock()
    phase = task.phase(now)
    if phase is Phase.QUEUED:
        status = "THROTTLED" if now < task.params["throttled_until"] else "PENDING"
    else:
        status = STATUS[phase]
    out: dict[str, Any] = {
        "id": task.id, "status": status,
        "createdAt": datetime.fromtimestamp(task.created, UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z"),
    }
    credits = CREDITS_PER_S * int(task.params["duration"])
    if phase in (Phase.QUEUED, Phase.RUNNING):
        out["estimatedCost"] = {"credits": credits}
    else:  # only a succeeded task is charged
        out["cost"] = {"credits": credits if phase is Phase.SUCCEEDED else 0}
    if phase is Phase.RUNNING:
        out["progress"] = round(task.progress(now), 3)
    elif phase is Phase.SUCCEEDED:
        out["output"] = [sim.media.video_url(origin, task.id, task.url_expires(now))]
    elif phase is Phase.FAILED:
        out["failure"], out["failureCode"] = task.error_message, task.error_code
    return out
