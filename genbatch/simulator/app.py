"""The Starlette app: every provider's routes at the root and under a per-provider prefix.

    /v3/async/...                       Novita family; the key's profile `provider`, else a
                                        `highwayapi` host picks Novita's or HighwayAPI's
                                        rules (default Novita)
    /novita/v3/async/...                Novita rules
    /highwayapi/v3/async/...            HighwayAPI rules
    /api/v3/bytedance/..., /api/v3/predictions/...          WaveSpeed (also under /wavespeed)
    /api/v3/contents/generations/tasks...                   BytePlus (also under /byteplus)
    /fal/...                            fal's queue (only there: `/fal/<model id>`)
    /runway/v1/...                      Runway (only there)
    /kling/v1/videos/image2video...     Kling (JWT auth; 1303 over concurrency)
    /veo/v1beta/models/...:predictLongRunning, /veo/v1beta/files/...   Veo (Gemini API)
    /<name>/...                         each simulator plugin (`genbatch.simulators`
                                        entry points, plugins.py)
    /_sim/...                           the simulator's own routes (see control.py)

So the first four providers of genbatch work at one base URL, `http://127.0.0.1:8700`, but
HighwayAPI, which shares Novita's paths: its base URL is `http://127.0.0.1:8700/highwayapi`
(any prefix `/<provider>` works for its own provider); fal's and Runway's are
`http://127.0.0.1:8700/fal` and `http://127.0.0.1:8700/runway`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genbatch.simulator import (
    byteplus,
    control,
    fal,
    kling,
    novita,
    plugins,
    runway,
    uploads,
    veo,
    wavespeed,
    webhooks,
)
from genbatch.simulator.gate import ConnectionDropped
from genbatch.simulator.media import ASSET_PATH, VIDEO_PATH
from genbatch.simulator.plugins import SimulatorPlugin
from genbatch.simulator.profile import SimProfile
from genbatch.simulator.shots import FRAME_PATH
from genbatch.simulator.state import Clock, Simulator


def create_app(profile: SimProfile | None = None, *, clock: Clock = time.time,
               simulators: Sequence[SimulatorPlugin] = ()) -> Starlette:
    """A simulator app with its own in-memory state. `clock` (wall-clock seconds) is
    injectable so tests can move time by hand. Every installed simulator plugin is mounted
    under `/<name>` (plugins.py), with `simulators` (for tests) besides."""
    sim = Simulator(profile or SimProfile(), clock)
    found = plugins.mounts(simulators)
    routes: list[BaseRoute] = [
        *control.routes(),
        *uploads.file_routes(),
        *novita.routes(),
        *wavespeed.routes(),
        *byteplus.routes(),
        Mount("/novita", routes=novita.routes("novita")),
        Mount("/highwayapi", routes=novita.routes("highwayapi")),
        Mount("/wavespeed", routes=wavespeed.routes("/wavespeed")),
        Mount("/byteplus", routes=byteplus.routes()),
        Mount("/fal", routes=fal.routes()),  # only there: its submit path is any model id
        Mount("/runway", routes=runway.routes()),
        Mount("/kling", routes=kling.routes()),
        Mount("/veo", routes=veo.routes()),
        *found.mounts,
    ]
    app = Starlette(routes=routes, middleware=[Middleware(RequestLog, sim=sim)],
                    lifespan=_lifespan)
    app.state.sim = sim
    app.state.simulators = found
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await webhooks.close_client()


class RequestLog:
    """Records every provider request and download (method, path, query, headers, the start
    of the body, status) in the bounded log, and counts 429 and 5xx answers."""

    def __init__(self, app: ASGIApp, sim: Simulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or (
            path.startswith("/_sim/") and not path.startswith((VIDEO_PATH, ASSET_PATH, FRAME_PATH))
        ):
            await self.app(scope, receive, send)
            return
        stats = self.sim.stats
        body_chars = self.sim.profile.request_log_body_chars
        entry: dict[str, Any] = {
            "method": scope["method"],
            "path": path,
            "query": scope["query_string"].decode("latin-1"),
            "headers": _headers(scope["headers"]),
            "body": "",
            "status": None,
        }
        stats.request_log.append(entry)

        async def logged_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(entry["body"]) < body_chars:
                chunk = message.get("body", b"").decode("utf-8", "replace")
                entry["body"] = (entry["body"] + chunk)[:body_chars]
            return message

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
                stats.count_response(message["status"])
            await send(message)

        try:
            await self.app(scope, logged_receive, counted_send)
        except ConnectionDropped:
            entry["status"] = "dropped"
            raise
        except Exception:
            if entry["status"] is None:  # a bug: the server's own 500 goes out after this
                entry["status"] = 500
                stats.count_response(500)
            raise


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers
