"""The batch dashboard and the Prometheus endpoint, served by one process
(`genbatch dashboard --port 8800`, loopback unless `--host` says otherwise):

    /                     batches with progress by state, counts, spend, ETA, links
    /api/batches          the same as JSON (`?limit=N`, newest first)
    /metrics              Prometheus text format (see genbatch/metrics/)
    /results/{id}/{file}  an output manifest of a completed batch (a presigned S3 URL
                          redirect, or the file's bytes from a folder)
    /batches/{id}/…       one batch: its page, items, gallery, files (console/routes.py)

Everything is read from Redis (and storage) on each request, so any number of these
processes can run. It reads, but for the review page's POSTs (keep / reject, redo
rejected: console/review.py), each checked for origin and CSRF token (console/csrf.py).
With GENBATCH_DASHBOARD_BASIC_AUTH (`user:password`) every route asks for it, POSTs
included.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from genbatch import metrics, providers
from genbatch.config import Settings
from genbatch.console import files
from genbatch.console.batch_page import RESULT_FILES, batch_view
from genbatch.console.html import counts_bar, duration, esc, page
from genbatch.console.items_page import BadQuery
from genbatch.console.review import ReviewRoutes
from genbatch.console.routes import BatchRoutes
from genbatch.console.views import STATE_COLUMNS
from genbatch.errors import NotFoundError
from genbatch.providers import accounts as provider_accounts
from genbatch.records import Batch
from genbatch.storage import ObjectStorage, batch_key, open_storage
from genbatch.storage.folder import BatchFolder
from genbatch.storage.urls import ObjectUrls
from genbatch.store import JobStore

log = logging.getLogger(__name__)
REFRESH_S = 5
LOOPBACK = ("127.0.0.1", "::1", "localhost")
NUMERIC_COLUMNS = ", ".join(f"td.{s}" for s in STATE_COLUMNS) + " { text-align: right; }"


def configured_accounts(settings: Settings) -> list[str]:
    """Provider accounts with an API key; all of them when none has one (a dashboard run
    without the workers' keys)."""
    every = provider_accounts.accounts(settings)
    keyed = [a.label for a in every if a.api_key]
    return keyed or [a.label for a in every]


def accounts_by_provider(settings: Settings) -> dict[str, list[str]]:
    """Each provider's account names."""
    return {p: [a.label for a in provider_accounts.accounts(settings, p)]
            for p in providers.names()}


def create_app(settings: Settings, store: JobStore | None = None,
               storage: ObjectStorage | None = None) -> Starlette:
    js = store or JobStore.from_target(settings.redis_target())
    limits = {a.label: a.max_in_flight for a in provider_accounts.accounts(settings)}
    accounts = configured_accounts(settings)
    kinds = {a.label: a.name for a in provider_accounts.accounts(settings)}
    prom = metrics.registry(js, limits, {a: sorted(providers.model_specs(kinds[a]))
                                         for a in accounts})
    storages: list[ObjectStorage] = [storage] if storage is not None else []

    def get_storage() -> ObjectStorage:
        if not storages:
            storages.append(open_storage(settings.storage_url,
                                         endpoint_url=settings.s3_endpoint_url,
                                         region=settings.s3_region))
        return storages[0]

    def views(limit: int) -> list[dict[str, Any]]:
        batches = js.batches.recent(limit)
        spend = metrics.batch_spend(js, [b.id for b in batches])
        now = time.time()
        return [batch_view(b, spend[b.id], now) for b in batches]

    def api_batches(request: Request) -> Response:
        return JSONResponse(views(_limit(request)))

    def home(request: Request) -> Response:
        return HTMLResponse(render_page(views(_limit(request))))

    def metrics_text(request: Request) -> Response:
        return Response(generate_latest(prom), media_type=CONTENT_TYPE_LATEST)

    def result_file(request: Request) -> Response:
        bid, name = request.path_params["batch_id"], request.path_params["name"]
        if name not in RESULT_FILES:
            return files.not_found()
        js.batches.get(bid)
        return files.stored_object(get_storage(), batch_key(bid, name), confine_to=bid)

    batch_routes = BatchRoutes(js, get_storage, limits, accounts, settings.aimd_recover_s,
                               accounts_by_provider(settings))
    objects = ObjectUrls(endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)

    def batch_storage(batch: Batch) -> ObjectStorage:
        url = batch.get("output_url")
        return BatchFolder(objects.folder(url), batch.id) if url else get_storage()

    routes = [
        Route("/", home), Route("/api/batches", api_batches), Route("/metrics", metrics_text),
        Route("/results/{batch_id}/{name}", result_file), *batch_routes.routes(),
        *ReviewRoutes(js, batch_storage).routes(),
    ]
    middleware = []
    if settings.dashboard_basic_auth is not None:
        middleware.append(Middleware(BasicAuth,
                                     credentials=settings.dashboard_basic_auth.get_secret_value()))
    return Starlette(routes=routes, middleware=middleware, exception_handlers={
        NotFoundError: _not_found, BadQuery: _bad_query})


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(str(exc), status_code=404)


async def _bad_query(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(str(exc), status_code=400)


class BasicAuth(BaseHTTPMiddleware):
    """Every request needs `Authorization: Basic` with the configured `user:password`."""

    def __init__(self, app: Any, credentials: str) -> None:
        super().__init__(app)
        self.expected = credentials.encode()

    async def dispatch(self, request: Request,
                       call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            given = base64.b64decode(token, validate=True) if scheme.lower() == "basic" else b""
        except (binascii.Error, ValueError):
            given = b""
        if not hmac.compare_digest(given, self.expected):
            return PlainTextResponse("authentication required", status_code=401,
                                     headers={"WWW-Authenticate": 'Basic realm="genbatch"'})
        return await call_next(request)


def _limit(request: Request) -> int:
    try:
        return max(1, min(500, int(request.query_params.get("limit", "50"))))
    except ValueError:
        return 50


def render_page(batches: list[dict[str, Any]]) -> str:
    rows = "\n".join(_row(b) for b in batches) or (
        f'<tr><td colspan="{len(STATE_COLUMNS) + 6}">no batches yet</td></tr>')
    states = "".join(f'<th class="n">{s.replace("_", " ")}</th>' for s in STATE_COLUMNS)
    body = (f"<h1>genbatch batches</h1><p>Newest first; refreshes every {REFRESH_S} s. "
            '<a href="/api/batches">JSON</a> · <a href="/metrics">Prometheus metrics</a></p>'
            f"<style>{NUMERIC_COLUMNS}</style>"
            "<table><thead><tr><th>batch</th><th>status</th><th>progress</th>"
            f'<th class="n">total</th>{states}<th class="n">spend $<br>(est.)</th>'
            f"<th>ETA</th><th>results</th></tr></thead><tbody>{rows}</tbody></table>")
    return page("genbatch batches", body, refresh_s=REFRESH_S)


def _row(b: dict[str, Any]) -> str:
    bid = esc(b["id"])
    pct = float(b["progress"]) * 100
    counts = "".join(f'<td class="{s}">{int(b[s])}</td>' for s in STATE_COLUMNS)
    links = "<br>".join(f'<a href="{esc(url)}">{esc(name)}</a>'
                        for name, url in b["results"].items())
    return (f'<tr id="batch-{bid}"><td><a href="/batches/{bid}"><code>{bid}</code></a></td>'
            f'<td class="status">{esc(b["status"])}</td>'
            f"<td>{counts_bar(b, int(b['total']))} {b['done']}/{b['total']} ({pct:.0f}%)</td>"
            f'<td class="n total">{b["total"]}</td>{counts}'
            f'<td class="n">{b["spend_usd"]:.3f} ({b["spend_estimate_usd"]:.3f})</td>'
            f'<td>{esc(duration(b["eta_s"]))}</td><td class="links">{links or "-"}</td></tr>')


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    if host not in LOOPBACK and settings.dashboard_basic_auth is None:
        log.warning("the dashboard listens on %s without GENBATCH_DASHBOARD_BASIC_AUTH: "
                    "anyone who reaches it sees every batch", host)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
