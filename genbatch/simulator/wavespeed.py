"""WaveSpeed's `/api/v3` protocol (docs/wire/wavespeed.md, §4).

Over-concurrency submits (the key's `concurrency`, or a model's in `model_limits`) are
accepted and wait in `created` until a slot frees (WS-LVL); over-RPM submits (the key's or
the model's) get 429. Failed tasks answer HTTP 200 with `data.status: "failed"`, a numeric
`data.code` and a `data.error` string. Results are served at both documented paths. Input
images must be URLs (base64 acceptance is undocumented): the media upload (uploads.py) makes
one of a file; `/_sim/assets/` serves some. `GET /api/v3/webhook/secret` answers the key's
webhook signing secret (`data.secret`, `whsec_...`); callbacks are signed with it.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from genbatch.simulator import gate, uploads, webhooks
from genbatch.simulator.gate import Dialect, ErrorKind
from genbatch.simulator.rules import (
    Rule,
    boolean,
    check_body,
    given,
    image,
    integer,
    integer_in,
    one_of,
)
from genbatch.simulator.rules import string as text
from genbatch.simulator.state import Simulator, simulator_of
from genbatch.simulator.tasks import Phase, Task, pick_seed

RATIOS = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16")
MODEL_V15 = "bytedance/seedance-v1.5-pro/image-to-video"
URL_TTL_S = 7 * 24 * 3600  # outputs are deleted after 7 days (WS-PRED)
TASK_FAILURES = (
    ("1403", "task execution failed"),
    ("1200", "content moderation: the output was flagged as sensitive"),
    ("5000", "internal error during inference"),
)
STATUS = {
    Phase.QUEUED: "created",
    Phase.RUNNING: "processing",
    Phase.SUCCEEDED: "completed",
    Phase.FAILED: "failed",
    Phase.EXPIRED: "timeout",
    Phase.CANCELLED: "cancelled",
}


def _envelope(status: int, code: str, message: str, param: str) -> dict[str, Any]:
    return {"code": status, "message": message}


DIALECT = Dialect(
    "wavespeed",
    {
        ErrorKind.MISSING_KEY: (401, ""),
        ErrorKind.BAD_KEY: (401, ""),
        ErrorKind.INVALID: (400, ""),
        ErrorKind.MISSING_PARAM: (400, ""),
        ErrorKind.UNKNOWN_MODEL: (404, ""),
        ErrorKind.RATE_LIMITED: (429, ""),
        ErrorKind.SERVER: (500, ""),
        ErrorKind.SERVER_READ: (500, ""),
        ErrorKind.NOT_FOUND: (404, ""),
        ErrorKind.NO_BALANCE: (402, ""),  # not documented: the HTTP status says it
    },
    _envelope,
)

_PICTURE = image(data_uri=False)
_COMMON = {
    "image": Rule(_PICTURE, required=True),
    "last_image": Rule(_PICTURE),
    "aspect_ratio": Rule(one_of(RATIOS)),
    "camera_fixed": Rule(boolean()),
    "seed": Rule(integer(-1, 2147483647)),
}
RULES: dict[str, dict[str, Rule]] = {
    MODEL_V15: {
        **_COMMON,
        "prompt": Rule(text(non_empty=True), required=True),
        "duration": Rule(integer(4, 12)),
        "resolution": Rule(one_of(("480p", "720p"))),
        "generate_audio": Rule(boolean()),
    },
}
for _tier in ("pro", "lite"):  # V1: one endpoint per resolution (WS-V1)
    for _resolution in ("480p", "720p", "1080p"):
        RULES[f"bytedance/seedance-v1-{_tier}-i2v-{_resolution}"] = {
            **_COMMON,
            "prompt": Rule(text()),
            "duration": Rule(integer_in({5, 10})),
        }


def routes(prefix: str = "") -> list[Route]:
    """WaveSpeed's routes; `prefix` is where they are mounted (for `urls.get`)."""

    @gate.endpoint
    async def submit(request: Request) -> Response:
        sim = simulator_of(request)
        api_key, behaviour = gate.authenticate(request, sim, DIALECT)
        model = "bytedance/" + request.path_params["model"]
        if model not in RULES:
            raise DIALECT.refuse(ErrorKind.UNKNOWN_MODEL, f"model not found: {model}")
        body = await gate.read_json(request, DIALECT)
        fingerprint = gate.count_attempt(sim, DIALECT.provider, model, body)
        gate.admit_submit(sim, api_key, behaviour, DIALECT)
        problems = check_body(body, RULES[model])
        if problems:
            raise gate.refuse_problems(DIALECT, problems)
        gate.refuse_over_limits(sim, api_key, model, behaviour, DIALECT, queues=True)
        task = sim.create_task(
            task_id=sim.unique_id(_task_id), provider=DIALECT.provider, model=model,
            api_key=api_key, fingerprint=fingerprint, params=_params(sim.rng, model, body),
            queue_for_slot=True, expires_after_s=None, failures=TASK_FAILURES,
            url_ttl_s=URL_TTL_S,
        )
        origin = gate.origin(request)
        if hook := request.query_params.get("webhook"):  # WS-HOOK: POST `data` when done
            webhooks.schedule(sim, task, hook, lambda: _data(sim, task, origin, prefix),
                              webhooks.WAVESPEED)
        # A new prediction is always announced as `created` (SEED-WS15, WS-PRED).
        data = _data(sim, task, origin, prefix, Phase.QUEUED)
        return await gate.answer_submit(request, sim, behaviour, _envelope_ok(data))

    @gate.endpoint
    async def result(request: Request) -> Response:
        sim = simulator_of(request)
        api_key, behaviour = gate.authenticate(request, sim, DIALECT)
        sim.stats.polls += 1
        gate.inject(sim, behaviour, "poll", DIALECT)
        task_id = request.path_params["task_id"]
        task = sim.find(DIALECT.provider, api_key, task_id)
        if task is None:
            raise DIALECT.refuse(ErrorKind.NOT_FOUND, f"prediction not found: {task_id}")
        content = _envelope_ok(_data(sim, task, gate.origin(request), prefix))
        return gate.answer(sim, behaviour, "poll", content)

    @gate.endpoint
    async def history(request: Request) -> Response:
        """The account's predictions, newest first (§9): `{page, page_size}` required,
        page_size at most 100; `model`, `status`, `created_after`, `created_before`
        (ISO 8601) filter."""
        sim = simulator_of(request)
        api_key, behaviour = gate.authenticate(request, sim, DIALECT)
        sim.stats.lists += 1
        gate.inject(sim, behaviour, "poll", DIALECT)
        body = await gate.read_json(request, DIALECT)
        page, size = body.get("page"), body.get("page_size")
        if not isinstance(page, int) or not isinstance(size, int) or page < 1 \
                or not 1 <= size <= 100:
            raise DIALECT.refuse(ErrorKind.INVALID, "page and page_size (1-100) are required")
        origin = gate.origin(request)
        found = [t for t in reversed(sim.tasks.values())
                 if t.provider == DIALECT.provider and t.api_key == api_key
                 and _in_history(sim, t, body)]
        items = [_data(sim, t, origin, prefix) for t in found[(page - 1) * size:page * size]]
        return gate.answer(sim, behaviour, "poll", _envelope_ok({"page": page, "items": items}))

    @gate.endpoint
    async def webhook_secret(request: Request) -> Response:
        sim = simulator_of(request)
        api_key, _ = gate.authenticate(request, sim, DIALECT)
        return JSONResponse(_envelope_ok({"secret": webhooks.signing_secret(sim, api_key)}))

    return [
        *uploads.routes(DIALECT),
        Route("/api/v3/webhook/secret", webhook_secret, methods=["GET"]),
        Route("/api/v3/bytedance/{model:path}", submit, methods=["POST"]),
        Route("/api/v3/predictions", history, methods=["POST"]),
        Route("/api/v3/predictions/{task_id}/result", result, methods=["GET"]),
        Route("/api/v3/predictions/{task_id}", result, methods=["GET"]),
    ]


def _in_history(sim: Simulator, task: Task, body: dict[str, Any]) -> bool:
    def when(name: str) -> float | None:
        value = body.get(name)
        if not isinstance(value, str):
            return None
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise DIALECT.refuse(ErrorKind.INVALID, f"{name} is not an ISO 8601 time") from None

    after, before = when("created_after"), when("created_before")
    return ((not body.get("model") or task.model == body["model"])
            and (not body.get("status") or STATUS[task.phase(sim.clock())] == body["status"])
            and (after is None or task.created >= after)
            and (before is None or task.created <= before))


def _task_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _params(rng: random.Random, model: str, body: dict[str, Any]) -> dict[str, Any]:
    resolution = (given(body, "resolution", "720p") if model == MODEL_V15
                  else model.rsplit("-", 1)[1])
    return {
        "seed": pick_seed(rng, body.get("seed")),
        "resolution": resolution,
        "duration": given(body, "duration", 5),
        "aspect_ratio": body.get("aspect_ratio"),
    }


def _envelope_ok(data: dict[str, Any]) -> dict[str, Any]:
    return {"code": 200, "message": "success", "data": data}


def _data(
    sim: Simulator, task: Task, origin: str, prefix: str, phase: Phase | None = None
) -> dict[str, Any]:
    """The prediction object, as of now (or in the given phase)."""
    phase = phase or task.phase(sim.clock())
    data: dict[str, Any] = {
        "id": task.id,
        "model": task.model,
        "outputs": [],
        "urls": {"get": f"{origin}{prefix}/api/v3/predictions/{task.id}/result"},
        "has_nsfw_contents": [],
        "status": STATUS[phase],
        "created_at": datetime.fromtimestamp(task.created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "error": "",
        "timings": {"inference": 0},
    }
    if phase is Phase.SUCCEEDED:
        expires = task.url_expires(sim.clock())
        data["outputs"] = [sim.media.video_url(origin, task.id, expires)]
        data["has_nsfw_contents"] = [False]
        data["timings"]["inference"] = round(task.simulated(task.end - task.start) * 1000)
    elif phase is Phase.FAILED:
        data["code"] = int(task.error_code)
        data["error"] = task.error_message
    return data
