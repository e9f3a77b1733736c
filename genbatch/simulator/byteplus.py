"""BytePlus ModelArk's `contents/generations/tasks` protocol (docs/wire/byteplus.md, §5).

Parameters are top-level fields; the prompt and the frames travel in `content[]`. A submit
over the key's `concurrency` (or a model's, `model_limits`: BytePlus states its limits per
account and model) is accepted and stays `queued` until a slot frees, as ModelArk's `queued`
status suggests; over a model's rpm it is answered 429 EndpointRPMExceeded. At most
`queue_cap` (120) tasks per key may be `queued`, beyond that a submit is answered 429.
DELETE cancels a queued task (its slot is given back), deletes a finished task's record, and
refuses a running one. Tasks not finished within `execution_expires_after` (simulated
seconds) end `expired`. The list endpoint answers `{"items": [task objects], "total"}`,
newest first, filtered as the Ark SDK's `tasks.list` asks. A `callback_url` gets the task
object POSTed when the task ends (webhooks.py).
Unsupported: the legacy `--rs 720p`-style parameters inside the prompt text.
"""

from __future__ import annotations

import itertools
import random
import string
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from genbatch.simulator import gate, shots, webhooks
from genbatch.simulator.byteplus_request import MODELS, RATIOS, request_problems, task_params
from genbatch.simulator.gate import Dialect, ErrorKind
from genbatch.simulator.state import Simulator, simulator_of
from genbatch.simulator.tasks import Phase, Task

URL_TTL_S = 24 * 3600  # the shorter of the two documented lifetimes (§5.3)
TASK_FAILURES = (
    ("OutputVideoSensitiveContentDetected", "The output video may contain sensitive content."),
    ("InternalServiceError", "The service encountered an unexpected internal error."),
)
_ERROR_TYPES = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 429: "TooManyRequests"}
_request_ids = itertools.count(1)


def _envelope(status: int, code: str, message: str, param: str) -> dict[str, Any]:
    error_type = _ERROR_TYPES.get(status, "InternalServiceError")
    message = f"{message.rstrip('.')}. Request id: sim-{next(_request_ids):08d}"
    return {"error": {"code": code, "message": message, "param": param, "type": error_type}}


DIALECT = Dialect(
    "byteplus",
    {
        ErrorKind.MISSING_KEY: (401, "AuthenticationError"),
        ErrorKind.BAD_KEY: (401, "AuthenticationError"),
        ErrorKind.INVALID: (400, "InvalidParameter"),
        ErrorKind.MISSING_PARAM: (400, "MissingParameter"),
        ErrorKind.UNKNOWN_MODEL: (404, "InvalidEndpoint.NotFound"),
        ErrorKind.RATE_LIMITED: (429, "RateLimitExceeded.EndpointRPMExceeded"),
        ErrorKind.SERVER: (500, "InternalServiceError"),
        ErrorKind.SERVER_READ: (500, "InternalServiceError"),
        ErrorKind.NOT_FOUND: (404, "ResourceNotFound"),
        ErrorKind.NOT_CANCELLABLE: (400, "InvalidParameter"),
        ErrorKind.NO_BALANCE: (403, "AccountOverdueError"),
    },
    _envelope,
)


def routes() -> list[Route]:
    @gate.endpoint
    async def create(request: Request) -> Response:
        sim = simulator_of(request)
        api_key, behaviour = gate.authenticate(request, sim, DIALECT)
        body = await gate.read_json(request, DIALECT)
        model = body.get("model")
        fingerprint = gate.count_attempt(sim, DIALECT.provider, str(model), body)
        gate.admit_submit(sim, api_key, behaviour, DIALECT)
        if isinstance(model, str) and model and model not in MODELS:
            raise DIALECT.refuse(ErrorKind.UNKNOWN_MODEL, f"model {model} does not exist", "model")
        problems = request_problems(body)
        if problems:
            raise gate.refuse_problems(DIALECT, problems)
        gate.refuse_over_limits(sim, api_key, str(model), behaviour, DIALECT, queues=True)
        if sim.queued(DIALECT.provider, api_key) >= behaviour.queue_cap:
            raise gate.rate_limited(
                DIALECT, behaviour, f"too many queued tasks: at most {behaviour.queue_cap}"
            )
        params = task_params(sim.rng, body)
        task = sim.create_task(
            task_id=sim.unique_id(lambda rng: _task_id(rng, sim.clock())),
            provider=DIALECT.provider, model=str(model), api_key=api_key,
            fingerprint=fingerprint, params=params, queue_for_slot=True,
            expires_after_s=params["execution_expires_after"], failures=TASK_FAILURES,
            url_ttl_s=URL_TTL_S,
        )
        if isinstance(hook := body.get("callback_url"), str) and hook:
            origin = gate.origin(request)
            webhooks.schedule(sim, task, hook, lambda: _task_json(sim, task, origin),
                              webhooks.BYTEPLUS)
        return await gate.answer_submit(request, sim, behaviour, {"id": task.id})

    @gate.endpoint
    async def get(request: Request) -> Response:
        sim = simulator_of(request)
        api_key, behaviour = gate.authenticate(request, sim, DIALECT)
        sim.stats.polls += 1
        gate.inject(sim, behaviour, "poll", DIALECT)
        task = _find(sim, api_key, request.path_params["task_id"])
        return gate.answer(sim, behaviour, "poll", _task_json(sim, task, gate.origin(request)))

    @gate.endpoint
    async def delete(request: Request) -> Response:
        sim = simulator_of(request)
        api_key, behaviour = gate.authenticate(request, sim, DIALECT)
        gate.inject(sim, behaviour, "cancel", DIALECT)
        task = _find(sim, api_key, request.path_params["task_id"])
        phase = task.phase(sim.clock())
        if phase is Phase.QUEUED:
            sim.cancel(task)
        elif phase is Phase.RUNNING:
            raise DIALECT.refuse(
                ErrorKind.NOT_CANCELLABLE,
                "the task is running; only queued tasks can be cancelled", "id",
            )
        else:
            sim.delete(task)
        return JSONResponse({})

    @gate.endpoint
    async def listing(request: Request) -> Response:
        sim = simulator_of(request)
        api_key, behaviour = gate.authenticate(request, sim, DIALECT)
        sim.stats.lists += 1
        gate.inject(sim, behaviour, "poll", DIALECT)
        query = request.query_params
        page_num, page_size = _page(query.get("page_num"), 1), _page(query.get("page_size"), 10)
        tasks = [t for t in reversed(sim.tasks.values())
                 if t.provider == DIALECT.provider and t.api_key == api_key
                 and _listed(sim, t, query.getlist("filter.task_ids"),
                             query.get("filter.status"), query.get("filter.model"),
                             query.get("filter.service_tier"))]
        page = tasks[(page_num - 1) * page_size: page_num * page_size]
        origin = gate.origin(request)
        return gate.answer(sim, behaviour, "poll", {
            "items": [_task_json(sim, t, origin) for t in page], "total": len(tasks)})

    path = "/api/v3/contents/generations/tasks"
    return [
        Route(path, create, methods=["POST"]),
        Route(path, listing, methods=["GET"]),
        Route(path + "/{task_id}", get, methods=["GET"]),
        Route(path + "/{task_id}", delete, methods=["DELETE"]),
    ]


def _page(value: str | None, default: int) -> int:
    """page_num / page_size: 1-500 (ARK-SDK, BP-MIRROR)."""
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= 500:
        raise DIALECT.refuse(ErrorKind.INVALID, f"page_num and page_size must be 1-500, "
                             f"got {value!r}", "page_size")
    return int(value)


def _listed(sim: Simulator, task: Task, ids: list[str], status: str | None,
            model: str | None, tier: str | None) -> bool:
    return ((not ids or task.id in ids)
            and (not status or task.phase(sim.clock()).value == status)
            and (not model or task.model == model)
            and (not tier or task.params.get("service_tier") == tier))


def _find(sim: Simulator, api_key: str, task_id: str) -> Task:
    task = sim.find(DIALECT.provider, api_key, task_id)
    if task is None:
        raise DIALECT.refuse(ErrorKind.NOT_FOUND, f"the task {task_id} is not found", "id")
    return task


def _task_id(rng: random.Random, now: float) -> str:
    suffix = "".join(rng.choices(string.ascii_lowercase + string.digits, k=5))
    return f"cgt-{time.strftime('%Y%m%d%H%M%S', time.gmtime(now))}-{suffix}"


def _pixels(resolution: str, ratio: str) -> tuple[int, int]:
    """Width and height; `adaptive` is taken as 16:9."""
    short = int(resolution.removesuffix("p"))
    w, h = (int(n) for n in (ratio if ratio in RATIOS else "16:9").split(":"))
    long = round(short * max(w, h) / min(w, h) / 2) * 2
    return (long, short) if w >= h else (short, long)


def _task_json(sim: Simulator, task: Task, origin: str) -> dict[str, Any]:
    now = sim.clock()
    phase = task.phase(now)
    params = task.params
    ratio = params["ratio"] if params["ratio"] in RATIOS else "16:9"
    out: dict[str, Any] = {
        "id": task.id,
        "model": task.model,
        "status": phase.value,
        "error": None,
        "created_at": int(task.created),
        "updated_at": int(task.updated_at(now)),
        "seed": params["seed"],
        "resolution": params["resolution"],
        "ratio": ratio,
        **{k: params[k] for k in ("duration", "frames", "generate_audio") if k in params},
        "framespersecond": 24,
        "service_tier": params["service_tier"],
        "execution_expires_after": params["execution_expires_after"],
        "draft": False,
    }
    if phase is Phase.SUCCEEDED:
        expires = task.url_expires(sim.clock())
        out["content"] = {"video_url": sim.media.video_url(origin, task.id, expires)}
        if params["return_last_frame"]:
            out["content"]["last_frame_url"] = (
                f"{origin}{shots.FRAME_PATH}{task.id}.png" if sim.media.distinct
                else f"{origin}/_sim/assets/landscape.png")
        width, height = _pixels(params["resolution"], ratio)
        frames = params.get("frames") or 24 * params["duration"]
        tokens = width * height * frames // 1024
        out["usage"] = {"completion_tokens": tokens, "total_tokens": tokens}
    elif phase is Phase.FAILED:
        out["error"] = {"code": task.error_code, "message": task.error_message}
    elif phase is Phase.EXPIRED:
        out["error"] = {
            "code": "TaskExpired",
            "message": "The task was not finished within execution_expires_after.",
        }
    return out
