"""The steps every provider route shares: authenticate, count, limit, inject failures, and
answer (or fail to answer) a submit. Each provider supplies a `Dialect`: its error envelope
and which status and code each kind of refusal gets.

A step refuses by raising `Refusal(response)`; `endpoint` turns that into the response.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from genbatch.simulator.profile import Behaviour, Operation
from genbatch.simulator.rules import Problem
from genbatch.simulator.state import Simulator
from genbatch.simulator.stats import request_fingerprint

MALFORMED_BODY = b'{"code": 200, "message": "succ'  # a 200 whose body is cut short


class ErrorKind(Enum):
    MISSING_KEY = auto()
    BAD_KEY = auto()
    INVALID = auto()
    MISSING_PARAM = auto()
    UNKNOWN_MODEL = auto()
    RATE_LIMITED = auto()
    SERVER = auto()  # on a submit
    SERVER_READ = auto()  # on a poll or cancel
    NOT_FOUND = auto()
    NOT_CANCELLABLE = auto()  # BytePlus only
    NO_BALANCE = auto()  # the account is out of money (`out_of_balance`)


Envelope = Callable[[int, str, str, str], dict[str, Any]]  # (status, code, message, param)
# How a provider's request names its key (Kling: a signed JWT, Veo: x-goog-api-key): the
# key, or a Refusal raised in the dialect's envelope.
KeyReader = Callable[[Request, Simulator, "Dialect"], str]


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one provider spells its refusals (and, where not `Authorization: Bearer <key>`,
    how its requests carry the key)."""

    provider: str
    codes: Mapping[ErrorKind, tuple[int, str]]
    envelope: Envelope
    read_key: KeyReader | None = None

    def refuse(
        self, kind: ErrorKind, message: str, param: str = "", code: str = "", status: int = 0
    ) -> Refusal:
        """The refusal of `kind` in this provider's envelope; `code` and `status` override."""
        default_status, default_code = self.codes[kind]
        status = status or default_status
        body = self.envelope(status, code or default_code, message, param)
        return Refusal(JSONResponse(body, status))


class Refusal(Exception):
    """Raised by a step that answers the request itself (an error, usually)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class ConnectionDropped(Exception):
    """Raised after sending response headers, so the server closes the connection and the
    client sees a submit that may or may not have worked."""


Handler = Callable[[Request], Awaitable[Response]]


def endpoint(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Refusal as refusal:
            return refusal.response

    return run


def origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def authenticate(request: Request, sim: Simulator, dialect: Dialect, *,
                 scheme: str = "Bearer") -> tuple[str, Behaviour]:
    """The caller's API key (from `Authorization: <scheme> <key>`; fal's scheme is `Key`;
    or the dialect's own way: Kling's JWT, Veo's header) and its behaviour."""
    if dialect.read_key is not None:
        key = dialect.read_key(request, sim, dialect)
        return key, sim.behaviour(key)
    header = request.headers.get("authorization", "")
    if not header.strip():
        raise dialect.refuse(ErrorKind.MISSING_KEY,
                             f"missing API key: send Authorization: {scheme}")
    given, _, token = header.partition(" ")
    token = token.strip()
    if given.lower() != scheme.lower() or not sim.profile.accepts(token):
        raise dialect.refuse(ErrorKind.BAD_KEY, "invalid API key")
    return token, sim.behaviour(token)


async def read_json(request: Request, dialect: Dialect) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise dialect.refuse(ErrorKind.INVALID, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise dialect.refuse(ErrorKind.INVALID, "request body must be a JSON object")
    return body


def count_attempt(sim: Simulator, provider: str, model: str, body: Any) -> str:
    """Count one submit request; returns its fingerprint."""
    fingerprint = request_fingerprint(provider, model, body)
    sim.stats.submit_attempts += 1
    sim.stats.attempts_by_fingerprint[fingerprint] += 1
    return fingerprint


def rate_limited(dialect: Dialect, behaviour: Behaviour, message: str) -> Refusal:
    refusal = dialect.refuse(ErrorKind.RATE_LIMITED, message)
    if behaviour.retry_after_s is not None:
        refusal.response.headers["Retry-After"] = str(math.ceil(behaviour.retry_after_s))
    return refusal


def inject(sim: Simulator, behaviour: Behaviour, op: Operation, dialect: Dialect) -> None:
    """Maybe refuse with an injected 429 or 5xx, per the behaviour's probabilities."""
    if op not in behaviour.inject_on:
        return
    if sim.roll(behaviour.p_429):
        raise rate_limited(dialect, behaviour, "rate limit exceeded (injected)")
    if sim.roll(behaviour.p_5xx):
        kind = ErrorKind.SERVER if op == "submit" else ErrorKind.SERVER_READ
        status = sim.rng.choice((500, 502, 503))
        raise dialect.refuse(kind, "internal server error (injected)", status=status)


def admit_submit(sim: Simulator, api_key: str, behaviour: Behaviour, dialect: Dialect) -> None:
    """An account out of money, the account's submit rate limit, then injected 429/5xx."""
    if behaviour.out_of_balance:
        raise dialect.refuse(ErrorKind.NO_BALANCE, "insufficient balance: top up the account")
    if sim.rpm_exceeded(dialect.provider, api_key, behaviour):
        raise rate_limited(dialect, behaviour, f"rate limit exceeded: {behaviour.rpm} RPM")
    inject(sim, behaviour, "submit", dialect)


def refuse_over_limits(
    sim: Simulator, api_key: str, model: str, behaviour: Behaviour, dialect: Dialect,
    *, queues: bool,
) -> None:
    """The model's own submit rate at the account (`model_limits`), then the account's and
    the model's concurrency, each answered with the provider's 429. A provider that `queues`
    accepts submits over concurrency (the task waits for a slot, see `create_task`)."""
    provider = dialect.provider
    limit = behaviour.model_limits.get(model)
    if limit is not None and sim.rpm_exceeded(provider, api_key, behaviour, model):
        raise rate_limited(
            dialect, behaviour, f"rate limit exceeded: {limit.rpm} RPM for model {model}"
        )
    if queues:
        return
    if (cap := behaviour.concurrency) is not None and sim.in_flight(provider, api_key) >= cap:
        raise rate_limited(dialect, behaviour, f"concurrency limit exceeded: {cap} tasks")
    if (limit is not None and (cap := limit.concurrency) is not None
            and sim.in_flight(provider, api_key, model) >= cap):
        raise rate_limited(
            dialect, behaviour, f"concurrency limit exceeded: {cap} tasks of model {model}"
        )


def refuse_problems(dialect: Dialect, problems: list[Problem], code: str = "") -> Refusal:
    kind = ErrorKind.MISSING_PARAM if problems[0].missing else ErrorKind.INVALID
    message = "; ".join(map(str, problems))
    return dialect.refuse(kind, message, param=problems[0].field, code=code)


def answer(sim: Simulator, behaviour: Behaviour, op: Operation, content: Any) -> Response:
    """A 200 JSON answer, or (injected) a 200 whose body is not JSON."""
    if op in behaviour.inject_on and sim.roll(behaviour.p_malformed):
        sim.stats.malformed += 1
        return Response(MALFORMED_BODY, media_type="application/json")
    return JSONResponse(content)


async def answer_submit(
    request: Request, sim: Simulator, behaviour: Behaviour, content: Any
) -> Response:
    """Answer a submit whose task now exists, unless a submit timeout is injected: then drop
    the connection mid-response, or hang until the client gives up (or `submit_hang_s`)."""
    if sim.roll(behaviour.p_submit_timeout):
        sim.stats.submit_timeouts += 1
        if behaviour.submit_timeout_mode == "drop":
            return DroppedResponse()
        if behaviour.submit_timeout_mode == "error":  # created, then a 500
            return JSONResponse({"error": "internal server error"}, status_code=500)
        await _wait_for_disconnect(request, behaviour.submit_hang_s)
    return answer(sim, behaviour, "submit", content)


async def _wait_for_disconnect(request: Request, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            while (await request.receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        pass


class DroppedResponse(Response):
    """Sends a 200 status line and headers, then breaks off."""

    def __init__(self) -> None:
        super().__init__(status_code=200, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        raise ConnectionDropped("submit timeout injected: connection dropped")
