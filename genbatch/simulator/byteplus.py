"""BytePlus ModelArk's `contents/generations/tasks` protocol (providers.md §5).

Parameters are top-level fields; the prompt and the frames travel in `content[]`. At most
`queue_cap` (120) tasks per key may be `queued`; DELETE cancels a queued task, deletes a
finished task's record, and refuses a running one. Tasks not finished within
`execution_expires_after` (simulated seconds) end `expired`. Unsupported: the task list
endpoint and the legacy `--rs 720p`-style parameters inside the prompt text.
"""

from __future__ import annotations

import itertools
import random
import string
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from genbatch.simulator import gate
from genbatch.simulator.gate import Dialect, ErrorKind
from genbatch.simulator.rules import (
    Bad,
    Check,
    Problem,
    Rule,
    boolean,
    check_body,
    check_value,
    image,
    integer,
    one_of,
)
from genbatch.simulator.rules import string as text
from genbatch.simulator.state import Simulator, simulator_of
from genbatch.simulator.tasks import Phase, Task, pick_seed

RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9")
ROLES = ("first_frame", "last_frame", "reference_image")
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
    },
    _envelope,
)


@dataclass(frozen=True, slots=True)
class ModelRules:
    duration: Check
    audio: bool
    needs_image: bool
    default_resolution: str


def _unsupported(value: Any) -> None:
    raise Bad("is only supported by seedance-1-5-pro")


def _frames(value: Any) -> None:
    integer(29, 289)(value)
    if (value - 25) % 4:
        raise Bad(f"must be 25 + 4n, got {value}")


MODELS = {
    # Duration -1 ("smart", 3P-ACE) is unconfirmed for image-to-video: refused.
    "seedance-1-5-pro-251215": ModelRules(integer(4, 12), True, False, "720p"),
    "seedance-1-0-pro-250528": ModelRules(integer(2, 12), False, False, "1080p"),
    "seedance-1-0-pro-fast-251015": ModelRules(integer(2, 12), False, False, "1080p"),
    "seedance-1-0-lite-i2v-250428": ModelRules(integer(2, 12), False, True, "720p"),
}


def _rules(model: ModelRules) -> dict[str, Rule]:
    return {
        "model": Rule(text(), required=True),
        "content": Rule(lambda value: None, required=True),  # checked by _content_problems
        "resolution": Rule(one_of(("480p", "720p", "1080p"))),
        "ratio": Rule(one_of((*RATIOS, "adaptive"))),
        "duration": Rule(model.duration),
        "frames": Rule(_frames),
        "seed": Rule(integer(-1, 4294967295)),
        "camera_fixed": Rule(boolean()),
        "watermark": Rule(boolean()),
        "generate_audio": Rule(boolean() if model.audio else _unsupported),
        "return_last_frame": Rule(boolean()),
        "service_tier": Rule(one_of(("default", "flex"))),
        "execution_expires_after": Rule(integer(3600, 259200)),
        "callback_url": Rule(text()),
        "draft": Rule(boolean()),
        "safety_identifier": Rule(text(max_len=64)),
        "priority": Rule(integer(0, 10)),
    }


RULES = {name: _rules(model) for name, model in MODELS.items()}
_IMAGE = image(data_uri=True, bare_base64=False)


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
        problems = _problems(body)
        if problems:
            raise gate.refuse_problems(DIALECT, problems)
        gate.refuse_over_concurrency(sim, api_key, behaviour, DIALECT)
        if sim.queued(DIALECT.provider, api_key) >= behaviour.queue_cap:
            raise gate.rate_limited(
                DIALECT, behaviour, f"too many queued tasks: at most {behaviour.queue_cap}"
            )
        params = _params(sim.rng, body)
        task = sim.create_task(
            task_id=sim.unique_id(lambda rng: _task_id(rng, sim.clock())),
            provider=DIALECT.provider, model=str(model), api_key=api_key,
            fingerprint=fingerprint, params=params, queue_for_slot=False,
            expires_after_s=params["execution_expires_after"], failures=TASK_FAILURES,
            url_ttl_s=URL_TTL_S,
        )
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

    path = "/api/v3/contents/generations/tasks"
    return [
        Route(path, create, methods=["POST"]),
        Route(path + "/{task_id}", get, methods=["GET"]),
        Route(path + "/{task_id}", delete, methods=["DELETE"]),
    ]


def _find(sim: Simulator, api_key: str, task_id: str) -> Task:
    task = sim.find(DIALECT.provider, api_key, task_id)
    if task is None:
        raise DIALECT.refuse(ErrorKind.NOT_FOUND, f"the task {task_id} is not found", "id")
    return task


def _task_id(rng: random.Random, now: float) -> str:
    suffix = "".join(rng.choices(string.ascii_lowercase + string.digits, k=5))
    return f"cgt-{time.strftime('%Y%m%d%H%M%S', time.gmtime(now))}-{suffix}"


def _problems(body: dict[str, Any]) -> list[Problem]:
    name = body.get("model")
    if name is None or name == "":
        return [Problem("model", "is required", missing=True)]
    if not isinstance(name, str):
        return [Problem("model", "must be a string")]
    model = MODELS[name]  # unknown names were answered with 404 already
    problems = check_body(body, RULES[name])
    problems += _content_problems(body.get("content"), model.needs_image)
    if body.get("duration") is not None and body.get("frames") is not None:
        problems.append(Problem("frames", "frames and duration are mutually exclusive"))
    return problems


def _content_problems(content: Any, needs_image: bool) -> list[Problem]:
    if content is None:
        return []  # already reported as missing
    if not isinstance(content, list) or not content:
        return [Problem("content", "must be a non-empty array")]
    problems: list[Problem] = []
    roles: list[str] = []
    texts = 0
    for i, item in enumerate(content):
        where = f"content[{i}]"
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            texts += 1
            found = check_value(f"{where}.text", item.get("text"), text())
        elif kind == "image_url":
            url = item["image_url"].get("url") if isinstance(item.get("image_url"), dict) else None
            found = check_value(f"{where}.image_url.url", url, _IMAGE)
            found = found or check_value(f"{where}.role", item.get("role", ROLES[0]), one_of(ROLES))
            roles.append(item.get("role", "first_frame"))
        else:
            found = Problem(f"{where}.type", f"unsupported content type {kind!r}")
        if found is not None:
            problems.append(found)
    if texts > 1:
        problems.append(Problem("content", "at most one text item"))
    if roles.count("first_frame") > 1 or roles.count("last_frame") > 1:
        problems.append(Problem("content", "at most one first_frame and one last_frame image"))
    if "last_frame" in roles and "first_frame" not in roles:
        problems.append(Problem("content", "a last_frame image needs a first_frame image"))
    if needs_image and not roles:
        problems.append(Problem("content", "this model needs an image_url item", missing=True))
    return problems


def _params(rng: random.Random, body: dict[str, Any]) -> dict[str, Any]:
    model = MODELS[body["model"]]
    params: dict[str, Any] = {
        "seed": pick_seed(rng, body.get("seed")),
        "resolution": body.get("resolution", model.default_resolution),
        "ratio": body.get("ratio", "adaptive"),
        "service_tier": body.get("service_tier", "default"),
        "execution_expires_after": body.get("execution_expires_after", 172800),
        "return_last_frame": body.get("return_last_frame", False),
    }
    if body.get("frames") is not None:
        params["frames"] = body["frames"]
    else:
        params["duration"] = body.get("duration", 5)
    if model.audio:
        params["generate_audio"] = body.get("generate_audio", True)
    return params


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
        out["content"] = {"video_url": sim.media.video_url(origin, task.id, task.url_expires)}
        if params["return_last_frame"]:
            out["content"]["last_frame_url"] = f"{origin}/_sim/assets/landscape.png"
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
