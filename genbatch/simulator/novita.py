"""Novita's `/v3/async` protocol, also spoken by HighwayAPI (docs/wire/novita.md, highwayapi.md).

The two share paths, so the un-prefixed routes pick the rules, first match wins: the API
key's profile (`provider: ...`), a host name containing `highwayapi`; else Novita's. The
`/novita` and `/highwayapi` mounts fix them: point HighwayAPI's base URL at
`{simulator}/highwayapi`. Nothing in a client's request is there for the simulator alone.
The rules differ in two places: HighwayAPI's 1.5-pro accepts 1080p (its English page; the
Chinese page disagrees, docs/wire/notes.md §8.1), and HighwayAPI refuses bare base64 images (data
URIs and URLs only).
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from genbatch.simulator import gate, webhooks
from genbatch.simulator.gate import Dialect, ErrorKind
from genbatch.simulator.rules import (
    Rule,
    boolean,
    check_body,
    given,
    image,
    integer,
    integer_in,
    obj,
    one_of,
    string,
)
from genbatch.simulator.state import Simulator, simulator_of
from genbatch.simulator.tasks import Phase, Task, pick_seed

RATIOS = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
URL_TTL_S = 3600  # JK-TR; NOV-TR's sample URL says X-Amz-Expires=3600
TASK_FAILURES = (
    ("TASK_FAILED", "video generation failed: the inference service returned an error"),
    ("ILLEGAL_IMAGE_CONTENT", "the input image did not pass content moderation"),
)
STATUS = {
    Phase.QUEUED: "TASK_STATUS_QUEUED",
    Phase.RUNNING: "TASK_STATUS_PROCESSING",
    Phase.SUCCEEDED: "TASK_STATUS_SUCCEED",
    Phase.FAILED: "TASK_STATUS_FAILED",
    Phase.EXPIRED: "TASK_STATUS_FAILED",  # the enum has no EXPIRED (docs/wire/notes.md §8.2)
    Phase.CANCELLED: "TASK_STATUS_FAILED",
}


def _envelope(status: int, code: str, message: str, param: str) -> dict[str, Any]:
    return {"code": status, "reason": code, "message": message, "metadata": {}}


_CODES = {
    ErrorKind.MISSING_KEY: (400, "MISSING_API_KEY"),
    ErrorKind.BAD_KEY: (403, "INVALID_API_KEY"),
    ErrorKind.INVALID: (400, "INVALID_REQUEST_BODY"),
    ErrorKind.MISSING_PARAM: (400, "INVALID_REQUEST_BODY"),
    ErrorKind.UNKNOWN_MODEL: (404, "API_NOT_FOUND"),
    ErrorKind.RATE_LIMITED: (429, "RATE_LIMIT_EXCEEDED"),
    ErrorKind.SERVER: (500, "CREATE_TASK_FAILED"),
    ErrorKind.SERVER_READ: (500, "GET_RESULT_FAILED"),
    ErrorKind.NOT_FOUND: (404, "TASK_NOT_FOUND"),
    ErrorKind.NO_BALANCE: (400, "BILLING_BALANCE_NOT_ENOUGH"),
}
DIALECTS = {name: Dialect(name, _CODES, _envelope) for name in ("novita", "highwayapi")}


def _rules_v15(provider: str) -> dict[str, Rule]:
    picture = image(bare_base64=provider == "novita")
    resolutions = ("480p", "720p", "1080p") if provider == "highwayapi" else ("480p", "720p")
    return {
        "image": Rule(picture, required=True),
        "prompt": Rule(string(non_empty=True), required=True),
        "last_image": Rule(picture),
        "ratio": Rule(one_of((*RATIOS, "adaptive"))),
        "resolution": Rule(one_of(resolutions)),
        "duration": Rule(integer(4, 12)),
        "fps": Rule(integer_in({24})),
        "seed": Rule(integer(-1, 4294967295)),
        "camera_fixed": Rule(boolean()),
        "watermark": Rule(boolean()),
        "generate_audio": Rule(boolean()),
        "service_tier": Rule(one_of(("default", "flex"))),
        "execution_expires_after": Rule(integer(3600, 259200)),
        "extra": Rule(obj()),  # `extra.webhook.url` (NOV-SKILL): called when the task ends
    }


def _rules_v1(provider: str) -> dict[str, Rule]:
    """V1 pro (SEED-NOV1P) and V1 lite (SEED-NOV1L, which gives no seed bound: pro's)."""
    picture = image(bare_base64=provider == "novita")
    return {
        "image": Rule(picture, required=True),
        "prompt": Rule(string(max_len=2000)),
        "last_image": Rule(picture),
        "resolution": Rule(one_of(("480p", "720p", "1080p")), required=True),
        "aspect_ratio": Rule(one_of(RATIOS)),  # NOV-LIVE adds 9:21; the seed does not (§8.4)
        "camera_fixed": Rule(boolean()),
        "seed": Rule(integer(-1, 2147483647)),
        "duration": Rule(integer_in({5, 10})),
        "extra": Rule(obj()),
    }


RULES = {
    provider: {
        "seedance-v1.5-pro-i2v": _rules_v15(provider),
        "seedance-v1-pro-i2v": _rules_v1(provider),
        "seedance-v1-lite-i2v": _rules_v1(provider),
    }
    for provider in DIALECTS
}


def routes(fixed: str | None = None) -> list[Route]:
    """The Novita-family routes; `fixed` pins the provider, else the key's profile picks."""

    def provider_for(sim: Simulator, api_key: str, request: Request) -> str:
        host = request.url.hostname or ""
        chosen = (fixed or sim.behaviour(api_key).provider
                  or ("highwayapi" if "highwayapi" in host else ""))
        return "highwayapi" if chosen == "highwayapi" else "novita"

    @gate.endpoint
    async def submit(request: Request) -> Response:
        sim = simulator_of(request)
        api_key, behaviour = gate.authenticate(request, sim, DIALECTS["novita"])
        dialect = DIALECTS[provider_for(sim, api_key, request)]
        model = request.path_params["model"]
        if model not in RULES[dialect.provider]:
            raise dialect.refuse(ErrorKind.UNKNOWN_MODEL, f"no such API: /v3/async/{model}")
        body = await gate.read_json(request, dialect)
        fingerprint = gate.count_attempt(sim, dialect.provider, model, body)
        gate.admit_submit(sim, api_key, behaviour, dialect)
        problems = check_body(body, RULES[dialect.provider][model])
        if problems:
            raise gate.refuse_problems(dialect, problems, code=problems[0].reason)
        gate.refuse_over_limits(sim, api_key, model, behaviour, dialect, queues=False)
        params = _params(sim.rng, model, body)
        task = sim.create_task(
            task_id=sim.unique_id(_task_id), provider=dialect.provider, model=model,
            api_key=api_key, fingerprint=fingerprint, params=params, queue_for_slot=False,
            expires_after_s=params.get("execution_expires_after"), failures=TASK_FAILURES,
            url_ttl_s=URL_TTL_S,
        )
        if hook := _webhook_url(body):
            origin = gate.origin(request)
            webhooks.schedule(sim, task, hook, lambda: {
                "event_type": "ASYNC_TASK_RESULT", "payload": _result(sim, task, origin)},
                webhooks.NOVITA)
        return await gate.answer_submit(request, sim, behaviour, {"task_id": task.id})

    @gate.endpoint
    async def task_result(request: Request) -> Response:
        sim = simulator_of(request)
        api_key, behaviour = gate.authenticate(request, sim, DIALECTS["novita"])
        dialect = DIALECTS[provider_for(sim, api_key, request)]
        sim.stats.polls += 1
        gate.inject(sim, behaviour, "poll", dialect)
        task_id = request.query_params.get("task_id", "")
        task = sim.find(dialect.provider, api_key, task_id)
        if task is None:
            raise dialect.refuse(ErrorKind.NOT_FOUND, f"task {task_id!r} not found")
        return gate.answer(sim, behaviour, "poll", _result(sim, task, gate.origin(request)))

    return [
        Route("/v3/async/task-result", task_result, methods=["GET"]),
        Route("/v3/async/{model}", submit, methods=["POST"]),
    ]


def _webhook_url(body: dict[str, Any]) -> str | None:
    """`extra.webhook.url`; called back with the task result in Novita's envelope."""
    extra = body.get("extra")
    hook = extra.get("webhook") if isinstance(extra, dict) else None
    url = hook.get("url") if isinstance(hook, dict) else None
    return url if isinstance(url, str) and url else None


def _task_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _params(rng: random.Random, model: str, body: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "seed": pick_seed(rng, body.get("seed")),
        "resolution": given(body, "resolution", "720p"),
        "duration": given(body, "duration", 5),
    }
    if model == "seedance-v1.5-pro-i2v":
        params["ratio"] = given(body, "ratio", "adaptive")
        params["execution_expires_after"] = given(body, "execution_expires_after", 172800)
    else:
        params["aspect_ratio"] = given(body, "aspect_ratio", "16:9")
    return params


def _result(sim: Simulator, task: Task, origin: str) -> dict[str, Any]:
    now = sim.clock()
    phase = task.phase(now)
    done = phase not in (Phase.QUEUED, Phase.RUNNING)
    reason = task.error_message
    if phase is Phase.EXPIRED:
        expires = task.params["execution_expires_after"]
        reason = f"task expired: not finished within execution_expires_after ({expires} s)"
    videos = []
    if phase is Phase.SUCCEEDED:
        url = sim.media.video_url(origin, task.id, task.url_expires(sim.clock()))
        videos.append({"video_url": url, "video_url_ttl": f"{task.url_ttl_s:.0f}",
                       "video_type": "mp4"})
    return {
        "extra": {
            "seed": str(task.params["seed"]),
            "enable_nsfw_detection": False,
            "debug_info": {
                "request_info": "",
                "submit_time_ms": _ms(task.created),
                "execute_time_ms": _ms(task.start) if now >= task.start else "",
                "complete_time_ms": _ms(task.end) if done else "",
            },
        },
        "task": {
            "task_id": task.id,
            "status": STATUS[phase],
            "reason": reason,
            "task_type": task.model,  # the real value for Seedance is unknown (§8.3)
            "eta": 0 if done else round(task.simulated(task.end - now)),
            "progress_percent": round(100 * task.progress(now)),
        },
        "images": [],
        "videos": videos,
        "audios": [],
    }


def _ms(wall_s: float) -> str:
    return str(int(wall_s * 1000))
