"""The simulator's own routes under `/_sim/`: output videos, sample images, stats and control.

    GET  /_sim/videos/{id}.mp4?expires=&sig=  a task's video (signed URL; 403 once expired)
    GET  /_sim/assets/{name}                  input images: landscape/portrait/square.png
    GET  /_sim/stats                          counters, fingerprints, video hashes, request log
    POST /_sim/reset                          forget all tasks and counters
    GET  /_sim/profile, PUT /_sim/profile     read or replace the profile at runtime
    GET  /_sim/health                         {"ok": true, "simulators": [...], "broken":
                                              [...]}: the plugins served and those left out

None of these needs an API key: downloads are authorised by their signature, like the
presigned object-store URLs the providers return.
"""

from __future__ import annotations

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from genbatch.simulator import shots
from genbatch.simulator.media import ASSET_PATH, VIDEO_PATH
from genbatch.simulator.profile import SimProfile
from genbatch.simulator.state import simulator_of
from genbatch.simulator.tasks import Phase


def _s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status, media_type="application/xml")


async def video(request: Request) -> Response:
    sim = simulator_of(request)
    name: str = request.path_params["name"]
    task_id = name.removesuffix(".mp4")
    stamp = request.query_params.get("expires", "")
    task = sim.tasks.get(task_id)
    now = sim.clock()
    if (
        task is None
        or not name.endswith(".mp4")
        or not sim.media.signature_ok(task_id, stamp, request.query_params.get("sig", ""))
        or task.phase(now) is not Phase.SUCCEEDED
    ):
        sim.stats.downloads_refused += 1
        return _s3_error(403, "AccessDenied", "Signature does not match")
    if now > float(stamp):
        sim.stats.downloads_refused += 1
        return _s3_error(403, "AccessDenied", "Request has expired")
    behaviour = sim.behaviour(task.api_key)
    if "download" in behaviour.inject_on:
        if sim.roll(behaviour.p_429):
            return _s3_error(429, "SlowDown", "Please reduce your request rate (injected)")
        if sim.roll(behaviour.p_5xx):
            return _s3_error(503, "ServiceUnavailable", "Service unavailable (injected)")
    task.downloads += 1
    sim.stats.downloads += 1
    return Response(sim.media.video_bytes(task_id), media_type="video/mp4")


async def asset(request: Request) -> Response:
    data = simulator_of(request).media.images.get(request.path_params["name"])
    if data is None:
        return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
    return Response(data, media_type="image/png")


async def frame(request: Request) -> Response:
    """A task's last frame (BytePlus `content.last_frame_url` with distinct videos)."""
    sim = simulator_of(request)
    task = sim.tasks.get(request.path_params["name"].removesuffix(".png"))
    if task is None or task.phase(sim.clock()) is not Phase.SUCCEEDED:
        return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
    return Response(shots.last_frame(task.id), media_type="image/png")


async def stats(request: Request) -> Response:
    return JSONResponse(simulator_of(request).stats_json())


async def reset(request: Request) -> Response:
    simulator_of(request).reset()
    return JSONResponse({"ok": True})


async def get_profile(request: Request) -> Response:
    return JSONResponse(simulator_of(request).profile.model_dump(mode="json"))


async def put_profile(request: Request) -> Response:
    try:
        profile = SimProfile.model_validate_json(await request.body())
    except ValidationError as exc:
        return JSONResponse({"error": str(exc)}, 400)
    simulator_of(request).replace_profile(profile)
    return JSONResponse(profile.model_dump(mode="json"))


async def health(request: Request) -> Response:
    """`{"ok": true, "simulators": [plugin names], "broken": [one line each]}`."""
    found = getattr(request.app.state, "simulators", None)
    return JSONResponse({
        "ok": True,
        "simulators": list(found.names) if found is not None else [],
        "broken": [bad.line() for bad in found.broken] if found is not None else [],
    })


def routes() -> list[Route]:
    return [
        Route(VIDEO_PATH + "{name}", video, methods=["GET"]),
        Route(ASSET_PATH + "{name}", asset, methods=["GET"]),
        Route(shots.FRAME_PATH + "{name}", frame, methods=["GET"]),
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/profile", get_profile, methods=["GET"]),
        Route("/_sim/profile", put_profile, methods=["PUT"]),
        Route("/_sim/health", health, methods=["GET"]),
    ]
