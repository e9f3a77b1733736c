"""Veo on the Gemini API (genbatch/providers/veo.py has the sources).

The key travels in `x-goog-api-key` (no key: 403 PERMISSION_DENIED; an unknown one: 400
INVALID_ARGUMENT, reason API_KEY_INVALID). `POST /v1beta/models/{model}:predictLongRunning`
creates a long-running operation `models/{model}/operations/{id}`; `GET /v1beta/{name}`
reads it (`done` once the task ends, with `response.generateVideoResponse.generatedSamples`
or an `error`). The video URI `/v1beta/files/{id}:download?alt=media` needs the same key
and redirects to the signed video URL. Limits: the key's `rpm` and `concurrency` are
answered 429 RESOURCE_EXHAUSTED naming a per-minute quota, its `daily_cap` (operations per
model per simulated day) one naming a per-day quota (QuotaFailure `quotaId`), and
`out_of_balance` a 429 "Your prepayment credits are depleted" (nothing queues). Errors use
Google's envelope `{"error": {"code", "message", "status", "details"?}}`. No callbacks.
Unsupported: text-to-video, reference images, extension, 4k.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from genbatch.simulator import gate
from genbatch.simulator.gate import Dialect, ErrorKind
from genbatch.simulator.state import Simulator, simulator_of
from genbatch.simulator.tasks import Phase, Task

MODELS = frozenset({"veo-3.1-generate-preview", "veo-3.1-fast-generate-preview"})
URL_TTL_S = 2 * 24 * 3600.0
DAY_S = 24 * 3600.0
TASK_FAILURES = (("FAILED_PRECONDITION", "The video could not be generated (safety filter)."),
                 ("INTERNAL", "Internal error encountered."))


PREPAY = "RESOURCE_EXHAUSTED/prepay"  # the dialect's code for NO_BALANCE (see _envelope)
PER_DAY = "per_day"  # `param` of a refusal over the daily cap
QUOTA_IDS = {"": "GenerateRequestsPerMinutePerProjectPerModel",
             PER_DAY: "GenerateRequestsPerDayPerProjectPerModel"}
DEPLETED = ("Your prepayment credits are depleted. Please go to AI Studio at "
            "https://ai.studio/projects to manage your project and billing.")
QUOTA = ("You exceeded your current quota, please check your plan and billing details. For "
         "more information on this error, head to: https://ai.google.dev/gemini-api/docs/"
         "rate-limits.")


def _envelope(status: int, code: str, message: str, param: str) -> dict[str, Any]:
    """Google's error: a 429 names the exceeded quota (QuotaFailure, per minute or per day)
    and a retry delay; depleted prepaid credits are a bare 429 with their message."""
    if code == PREPAY:
        return {"error": {"code": 429, "message": DEPLETED, "status": "RESOURCE_EXHAUSTED"}}
    error: dict[str, Any] = {"code": status, "message": message, "status": code}
    if param == "key":
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]
    if status == 429:
        error["message"] = f"{QUOTA} {message}"
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaMetric": "generativelanguage.googleapis.com/"
                             "generate_requests_per_model", "quotaId": QUOTA_IDS[param]}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo",
             "retryDelay": "86400s" if param == PER_DAY else "30s"}]
    return {"error": error}


def read_key(request: Request, sim: Simulator, dialect: Dialect) -> str:
    key = request.headers.get("x-goog-api-key", "").strip()
    if not key:
        raise dialect.refuse(ErrorKind.MISSING_KEY, "Method doesn't allow unregistered "
                             "callers. Please use an API key.")
    if not sim.profile.accepts(key):
        raise dialect.refuse(ErrorKind.BAD_KEY, "API key not valid. Please pass a valid API "
                             "key.", param="key")
    return key


DIALECT = Dialect(
    "veo",
    {
        ErrorKind.MISSING_KEY: (403, "PERMISSION_DENIED"),
        ErrorKind.BAD_KEY: (400, "INVALID_ARGUMENT"),
        ErrorKind.INVALID: (400, "INVALID_ARGUMENT"),
        ErrorKind.MISSING_PARAM: (400, "INVALID_ARGUMENT"),
        ErrorKind.UNKNOWN_MODEL: (404, "NOT_FOUND"),
        ErrorKind.RATE_LIMITED: (429, "RESOURCE_EXHAUSTED"),
        ErrorKind.SERVER: (500, "INTERNAL"),
        ErrorKind.SERVER_READ: (503, "UNAVAILABLE"),
        ErrorKind.NOT_FOUND: (404, "NOT_FOUND"),
        ErrorKind.NOT_CANCELLABLE: (400, "FAILED_PRECONDITION"),
        ErrorKind.NO_BALANCE: (429, PREPAY),
    },
    _envelope,
    read_key=read_key,
)


def problems(body: dict[str, Any]) -> str:
    """What the Gemini API would refuse in a Veo image-to-video body ("" when fine)."""
    instances = body.get("instances")
    instance = instances[0] if isinstance(instances, list) and instances else {}
    image = instance.get("image") if isinstance(instance, dict) else None
    found = body.get("parameters")
    params: dict[str, Any] = found if isinstance(found, dict) else {}
    duration, resolution = params.get("durationSeconds", 8), params.get("resolution", "720p")
    checks = (
        (not isinstance(image, dict) or not image.get("bytesBase64Encoded")
         or not image.get("mimeType"), "instances[0].image needs bytesBase64Encoded and "
         "mimeType"),
        (str(duration) not in ("4", "6", "8"), "durationSeconds must be 4, 6 or 8"),
        (resolution not in ("720p", "1080p"), "resolution must be 720p or 1080p"),
        (resolution == "1080p" and str(duration) != "8", "1080p needs durationSeconds 8"),
        (params.get("aspectRatio", "16:9") not in ("16:9", "9:16"),
         "aspectRatio must be 16:9 or 9:16"),
        (params.get("personGeneration", "allow_adult") != "allow_adult",
         "personGeneration must be allow_adult for image-to-video"),
    )
    return "; ".join(why for bad, why in checks if bad)


def routes() -> list[Route]:
    @gate.endpoint
    async def create(request: Request) -> Response:
        sim = simulator_of(request)
        key, behaviour = gate.authenticate(request, sim, DIALECT)
        model, _, action = request.path_params["target"].partition(":")
        body = await gate.read_json(request, DIALECT)
        fingerprint = gate.count_attempt(sim, DIALECT.provider, model, body)
        gate.admit_submit(sim, key, behaviour, DIALECT)
        if action != "predictLongRunning" or model not in MODELS:
            raise DIALECT.refuse(ErrorKind.UNKNOWN_MODEL, f"models/{model} is not found or "
                                 f"does not support {action or 'this method'}")
        if why := problems(body):
            raise DIALECT.refuse(ErrorKind.INVALID, why)
        if behaviour.daily_cap is not None and _today(sim, key, model) >= behaviour.daily_cap:
            raise DIALECT.refuse(ErrorKind.RATE_LIMITED, f"{behaviour.daily_cap} requests per "
                                 f"day for {model}", param=PER_DAY)
        gate.refuse_over_limits(sim, key, model, behaviour, DIALECT, queues=False)
        task = sim.create_task(
            task_id=sim.unique_id(lambda rng: f"{rng.getrandbits(48):012x}"),
            provider=DIALECT.provider, model=model, api_key=key, fingerprint=fingerprint,
            params={}, queue_for_slot=False, expires_after_s=None, failures=TASK_FAILURES,
            url_ttl_s=URL_TTL_S)
        return await gate.answer_submit(request, sim, behaviour, {"name": _name(task)})

    @gate.endpoint
    async def operation(request: Request) -> Response:
        sim = simulator_of(request)
        key, behaviour = gate.authenticate(request, sim, DIALECT)
        sim.stats.polls += 1
        gate.inject(sim, behaviour, "poll", DIALECT)
        task = _find(sim, key, request.path_params["op"])
        return gate.answer(sim, behaviour, "poll", _operation(sim, task, gate.origin(request),
                                                              request.url.path))

    @gate.endpoint
    async def download(request: Request) -> Response:
        sim = simulator_of(request)
        key, _ = gate.authenticate(request, sim, DIALECT)
        task = _find(sim, key, request.path_params["file"].removesuffix(":download"))
        if task.phase(sim.clock()) is not Phase.SUCCEEDED:
            raise DIALECT.refuse(ErrorKind.NOT_FOUND, "file not found")
        url = sim.media.video_url(gate.origin(request), task.id, task.url_expires(sim.clock()))
        return RedirectResponse(url, status_code=302)

    return [Route("/v1beta/models/{target}", create, methods=["POST"]),
            Route("/v1beta/models/{model}/operations/{op}", operation, methods=["GET"]),
            Route("/v1beta/files/{file}", download, methods=["GET"])]


def _today(sim: Simulator, api_key: str, model: str) -> int:
    """Operations of `model` the key created in the last simulated 24 hours (the daily cap
    resets at midnight Pacific time; a sliding day is close enough here)."""
    since = sim.clock() - DAY_S / sim.behaviour(api_key).time_factor
    return sum(1 for t in sim.tasks.values() if t.provider == DIALECT.provider
               and t.api_key == api_key and t.model == model and t.created >= since)


def _name(task: Task) -> str:
    return f"models/{task.model}/operations/{task.id}"


def _find(sim: Simulator, key: str, op: str) -> Task:
    task = sim.find(DIALECT.provider, key, op)
    if task is None:
        raise DIALECT.refuse(ErrorKind.NOT_FOUND, f"operation {op} not found")
    return task


def _operation(sim: Simulator, task: Task, origin: str, path: str) -> dict[str, Any]:
    phase = task.phase(sim.clock())
    out: dict[str, Any] = {"name": _name(task)}
    if phase in (Phase.QUEUED, Phase.RUNNING):
        return out
    out["done"] = True
    if phase is Phase.SUCCEEDED:
        prefix = path.split("/v1beta/")[0]  # the mount (/veo), so the URI stays on it
        uri = f"{origin}{prefix}/v1beta/files/{task.id}:download?alt=media"
        out["response"] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta."
                     "PredictLongRunningResponse",
            "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]}}
    else:
        out["error"] = {"code": 13 if task.error_code == "INTERNAL" else 9,
                        "message": task.error_message or f"task {phase.value}",
                        "status": task.error_code or "FAILED_PRECONDITION"}
    return out
