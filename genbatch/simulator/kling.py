"""Kling's image2video protocol (genbatch/providers/kling_wire.py has the sources).

Every request carries `Authorization: Bearer <JWT>`: HS256, `iss` = the access key (the
simulator's API key: its behaviour, tasks and limits), signed with that key's `secret_key`
(profile; default `sim-kling-secret`), `exp` and `nbf` checked against the wall clock (a
token carries real time even when the simulator's time runs faster). Refusals use Kling's
envelope `{"code": <int>, "message", "request_id"}` and its codes: 1001 no token, 1002 bad
token or signature, 1003 not yet valid, 1004 expired, 1102 no resource pack left, 1201 bad
parameter, 1203 no such task, 1302 rate, 1303 over the key's `concurrency` (a slot is held
from submit until the task ends; nothing queues), 5000 server. A `callback_url` gets the
task object POSTed when the task ends, unsigned (Kling documents no signature). The query
GET takes the task id or the `external_task_id` the submit gave; the list GET (Query Task
(List): `pageNum` 1-1000, `pageSize` 1-500, default 30) answers the account's task objects,
newest first, counted in the simulator's `lists`.
Unsupported: text2video, multi-image, extend, camera/motion controls.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from genbatch.simulator import gate, webhooks
from genbatch.simulator.gate import Dialect, ErrorKind
from genbatch.simulator.state import Simulator, simulator_of
from genbatch.simulator.tasks import Phase, Task

MODELS = frozenset({"kling-v2-1"})
URL_TTL_S = 30 * 24 * 3600.0
PROMPT_MAX = 2500
STATUS = {Phase.QUEUED: "submitted", Phase.RUNNING: "processing", Phase.SUCCEEDED: "succeed",
          Phase.FAILED: "failed", Phase.EXPIRED: "failed", Phase.CANCELLED: "failed"}
TASK_FAILURES = (("1301", "Failure to pass the risk control system"),
                 ("5000", "Internal error while generating the video"))
_ids = itertools.count(1)


def _envelope(status: int, code: str, message: str, param: str) -> dict[str, Any]:
    return {"code": int(code), "message": message, "request_id": f"sim-{next(_ids):08d}"}


def read_jwt(request: Request, sim: Simulator, dialect: Dialect) -> str:
    """The access key of a validly signed, current JWT (Kling's auth)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise dialect.refuse(ErrorKind.MISSING_KEY, "Authorization is empty", code="1001")
    try:
        header, claims, signature = token.strip().split(".")
        head, body = (json.loads(_unb64(part)) for part in (header, claims))
        access = body["iss"]
        exp, nbf = float(body["exp"]), float(body.get("nbf", 0))
    except (ValueError, KeyError, TypeError):
        raise dialect.refuse(ErrorKind.BAD_KEY, "Authorization is invalid", code="1002") from None
    if head.get("alg") != "HS256" or not isinstance(access, str) or \
            not sim.profile.accepts(access):
        raise dialect.refuse(ErrorKind.BAD_KEY, "Authorization is invalid", code="1002")
    secret = sim.behaviour(access).secret_key.encode()
    expected = hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _unb64(signature)):
        raise dialect.refuse(ErrorKind.BAD_KEY, "Authorization is invalid: signature",
                             code="1002")
    now = time.time()
    if now < nbf:
        raise dialect.refuse(ErrorKind.BAD_KEY, "Authorization is not yet valid", code="1003")
    if now >= exp:
        raise dialect.refuse(ErrorKind.BAD_KEY, "Authorization has expired", code="1004")
    return access


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


DIALECT = Dialect(
    "kling",
    {
        ErrorKind.MISSING_KEY: (401, "1001"),
        ErrorKind.BAD_KEY: (401, "1002"),
        ErrorKind.INVALID: (400, "1201"),
        ErrorKind.MISSING_PARAM: (400, "1201"),
        ErrorKind.UNKNOWN_MODEL: (400, "1201"),
        ErrorKind.RATE_LIMITED: (429, "1302"),
        ErrorKind.SERVER: (500, "5000"),
        ErrorKind.SERVER_READ: (500, "5000"),
        ErrorKind.NOT_FOUND: (404, "1203"),
        ErrorKind.NOT_CANCELLABLE: (400, "1201"),
        ErrorKind.NO_BALANCE: (429, "1102"),
    },
    _envelope,
    read_key=read_jwt,
)


def problems(body: dict[str, Any]) -> str:
    """What Kling would refuse in an image2video body ("" when fine)."""
    mode, duration = body.get("mode", "std"), str(body.get("duration", "5"))
    checks = (
        (body.get("model_name") not in MODELS, f"model_name must be one of {sorted(MODELS)}"),
        (not isinstance(body.get("image"), str) or not body["image"], "image is required"),
        (mode not in ("std", "pro"), "mode must be std or pro"),
        (duration not in ("5", "10"), "duration must be 5 or 10"),
        (bool(body.get("image_tail")) and mode != "pro", "image_tail needs mode pro"),
        (len(str(body.get("prompt", ""))) > PROMPT_MAX, f"prompt over {PROMPT_MAX} chars"),
        (str(body.get("image", "")).startswith("data:"), "image: Base64 without a prefix"),
    )
    return "; ".join(why for bad, why in checks if bad)


def routes() -> list[Route]:
    @gate.endpoint
    async def create(request: Request) -> Response:
        sim = simulator_of(request)
        key, behaviour = gate.authenticate(request, sim, DIALECT)
        body = await gate.read_json(request, DIALECT)
        model = str(body.get("model_name"))
        fingerprint = gate.count_attempt(sim, DIALECT.provider, model, body)
        gate.admit_submit(sim, key, behaviour, DIALECT)
        if why := problems(body):
            raise DIALECT.refuse(ErrorKind.INVALID, why)
        external = body.get("external_task_id")
        if external and _lookup(sim, key, str(external)) is not None:
            raise DIALECT.refuse(ErrorKind.INVALID, "external_task_id already exists")
        if (cap := behaviour.concurrency) is not None and \
                sim.in_flight(DIALECT.provider, key) >= cap:
            raise DIALECT.refuse(ErrorKind.RATE_LIMITED, "parallel task over resource pack "
                                 f"limit ({cap})", code="1303")
        task = sim.create_task(
            task_id=sim.unique_id(lambda rng: str(rng.randrange(10**17, 10**18))),
            provider=DIALECT.provider, model=model, api_key=key, fingerprint=fingerprint,
            params={"external_task_id": external or "", "duration": str(body.get(
                "duration", "5"))}, queue_for_slot=False, expires_after_s=None,
            failures=TASK_FAILURES, url_ttl_s=URL_TTL_S)
        origin = gate.origin(request)
        if isinstance(hook := body.get("callback_url"), str) and hook:
            webhooks.schedule(sim, task, hook, lambda: _task_json(sim, task, origin),
                              webhooks.KLING)
        return await gate.answer_submit(request, sim, behaviour, _ok(_task_json(
            sim, task, origin)))

    @gate.endpoint
    async def get(request: Request) -> Response:
        sim = simulator_of(request)
        key, behaviour = gate.authenticate(request, sim, DIALECT)
        sim.stats.polls += 1
        gate.inject(sim, behaviour, "poll", DIALECT)
        task = _find(sim, key, request.path_params["task_id"])
        return gate.answer(sim, behaviour, "poll", _ok(_task_json(sim, task,
                                                                  gate.origin(request))))

    @gate.endpoint
    async def listing(request: Request) -> Response:
        """Query Task (List): the account's tasks newest first, `pageSize` (1-500) a page."""
        sim = simulator_of(request)
        key, behaviour = gate.authenticate(request, sim, DIALECT)
        sim.stats.lists += 1
        gate.inject(sim, behaviour, "poll", DIALECT)
        page_num, page_size = _page(request, "pageNum", 1, 1000), _page(request, "pageSize",
                                                                         30, 500)
        tasks = [t for t in reversed(sim.tasks.values())
                 if t.provider == DIALECT.provider and t.api_key == key]
        origin = gate.origin(request)
        page = tasks[(page_num - 1) * page_size: page_num * page_size]
        return gate.answer(sim, behaviour, "poll", _ok([_task_json(sim, t, origin)
                                                         for t in page]))

    path = "/v1/videos/image2video"
    return [Route(path, create, methods=["POST"]), Route(path, listing, methods=["GET"]),
            Route(path + "/{task_id}", get, methods=["GET"])]


def _page(request: Request, name: str, default: int, most: int) -> int:
    """A page parameter within Kling's range, or a 400 in Kling's envelope."""
    raw = request.query_params.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= most:
        raise DIALECT.refuse(ErrorKind.INVALID, f"{name} must be within [1, {most}]")
    return value


def _ok(data: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    return {"code": 0, "message": "SUCCEED", "request_id": f"sim-{next(_ids):08d}",
            "data": data}


def _lookup(sim: Simulator, key: str, task_id: str) -> Task | None:
    """The key's task by id or by external_task_id."""
    return sim.find(DIALECT.provider, key, task_id) or next(
        (t for t in sim.tasks.values() if t.provider == DIALECT.provider and t.api_key == key
         and t.params.get("external_task_id") == task_id), None)


def _find(sim: Simulator, key: str, task_id: str) -> Task:
    task = _lookup(sim, key, task_id)
    if task is None:
        raise DIALECT.refuse(ErrorKind.NOT_FOUND, f"task {task_id} does not exist")
    return task


def _task_json(sim: Simulator, task: Task, origin: str) -> dict[str, Any]:
    now = sim.clock()
    phase = task.phase(now)
    out: dict[str, Any] = {
        "task_id": task.id, "task_status": STATUS[phase],
        "task_status_msg": task.error_message if phase is Phase.FAILED else "",
        "task_info": {"external_task_id": task.params["external_task_id"]},
        "created_at": int(task.created * 1000), "updated_at": int(task.updated_at(now) * 1000),
    }
    if phase is Phase.SUCCEEDED:
        url = sim.media.video_url(origin, task.id, task.url_expires(now))
        out["task_result"] = {"videos": [{"id": f"v-{task.id}", "url": url,
                                          "duration": task.params["duration"]}]}
    return out
