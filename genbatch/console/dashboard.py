"""The batch dashboard and the Prometheus endpoint, served by one process
(`genbatch dashboard --port 8800`):

    /                     batches with progress, counts, spend, ETA and links to results
    /api/batches          the same as JSON (`?limit=N`, newest first)
    /metrics              Prometheus text format (see genbatch/metrics.py)
    /results/{id}/{file}  an output manifest of a completed batch (a presigned S3 URL
                          redirect, or the file's bytes from a folder)

Everything is read from Redis on each request, so any number of these processes can run.
"""

from __future__ import annotations

import html
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from genbatch import metrics
from genbatch.config import PROVIDER_NAMES, Settings
from genbatch.console.views import STATE_COLUMNS, batch_summary, done_count
from genbatch.errors import NotFoundError, StorageError
from genbatch.records import Batch
from genbatch.storage import ObjectStorage, batch_key, open_storage
from genbatch.store import JobStore

RESULT_FILES = {"results.jsonl": "application/x-ndjson", "results.csv": "text/csv",
                "errors.jsonl": "application/x-ndjson"}
REFRESH_S = 5


def batch_view(batch: Batch, spend: tuple[float, float], now: float) -> dict[str, Any]:
    """One batch as the dashboard shows it: counts, progress, spend and ETA."""
    view = batch_summary(batch)
    total = batch.total
    done = done_count(batch)
    view["done"] = done
    view["progress"] = round(done / total, 4) if total else 1.0
    view["spend_usd"], view["spend_estimate_usd"] = round(spend[0], 4), round(spend[1], 4)
    view["eta_s"] = _eta_s(batch, done, total, now)
    view["results"] = {name: f"/results/{batch.id}/{name}" for name in RESULT_FILES
                       if batch.get(name.replace(".", "_"))}
    return view


def _eta_s(batch: Batch, done: int, total: int, now: float) -> float | None:
    """Remaining items at the average rate since the batch was created; None if unknown."""
    if batch.finished:
        return 0.0
    elapsed = now - (batch.created_at or now)
    if done <= 0 or elapsed <= 0:
        return None
    return round((total - done) * elapsed / done, 1)


def create_app(settings: Settings, store: JobStore | None = None,
               storage: ObjectStorage | None = None) -> Starlette:
    js = store or JobStore.from_url(settings.require_redis_url())
    limits = {p: settings.provider(p).max_in_flight for p in PROVIDER_NAMES}
    prom = metrics.registry(js, limits)
    storages: list[ObjectStorage] = [storage] if storage is not None else []

    def get_storage() -> ObjectStorage:
        if not storages:
            storages.append(open_storage(settings.storage_url,
                                         endpoint_url=settings.s3_endpoint_url,
                                         region=settings.s3_region))
        return storages[0]

    def views(limit: int) -> list[dict[str, Any]]:
        batches = js.list_batches(limit)
        spend = metrics.batch_spend(js, [b.id for b in batches])
        now = time.time()
        return [batch_view(b, spend[b.id], now) for b in batches]

    def api_batches(request: Request) -> Response:
        return JSONResponse(views(_limit(request)))

    def page(request: Request) -> Response:
        return HTMLResponse(render_page(views(_limit(request))))

    def metrics_text(request: Request) -> Response:
        return Response(generate_latest(prom), media_type=CONTENT_TYPE_LATEST)

    def result_file(request: Request) -> Response:
        bid, name = request.path_params["batch_id"], request.path_params["name"]
        if name not in RESULT_FILES:
            return PlainTextResponse("no such file", status_code=404)
        try:
            js.get_batch(bid)
            storage = get_storage()
            key = batch_key(bid, name)
            url = storage.presigned_url(key, expires_s=3600)
            if url:
                return RedirectResponse(url, status_code=307)
            reader = storage.open_read(key)
        except (NotFoundError, StorageError) as exc:
            return PlainTextResponse(str(exc), status_code=404)
        return StreamingResponse(_chunks(reader), media_type=RESULT_FILES[name])

    routes = [
        Route("/", page), Route("/api/batches", api_batches), Route("/metrics", metrics_text),
        Route("/results/{batch_id}/{name}", result_file),
    ]
    return Starlette(routes=routes)


def _limit(request: Request) -> int:
    try:
        return max(1, min(500, int(request.query_params.get("limit", "50"))))
    except ValueError:
        return 50


def _chunks(reader: Any) -> Any:
    with reader:
        while chunk := reader.read(1 << 16):
            yield chunk


def render_page(batches: list[dict[str, Any]]) -> str:
    rows = "\n".join(_row(b) for b in batches) or (
        f'<tr><td colspan="{len(STATE_COLUMNS) + 6}">no batches yet</td></tr>')
    states = "".join(f"<th>{s.replace('_', ' ')}</th>" for s in STATE_COLUMNS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_S}">
<title>genbatch batches</title>
<style>
 body {{ font: 13px system-ui, sans-serif; margin: 1.5em; color: #222; }}
 table {{ border-collapse: collapse; }}
 th, td {{ border-bottom: 1px solid #ddd; padding: 4px 6px; text-align: right; }}
 th {{ font-weight: 600; }}
 td code, td.links {{ white-space: nowrap; }}
 th:first-child, td:first-child, td.status, td.links {{ text-align: left; }}
 .bar {{ background: #eee; width: 90px; height: 10px; display: inline-block; }}
 .bar span {{ background: #2a7; height: 10px; display: block; }}
 code {{ font-size: 13px; }}
</style></head>
<body>
<h1>genbatch batches</h1>
<p>Newest first; refreshes every {REFRESH_S} s.
 <a href="/api/batches">JSON</a> · <a href="/metrics">Prometheus metrics</a></p>
<table>
<thead><tr><th>batch</th><th>status</th><th>progress</th><th>total</th>{states}
<th>spend $<br>(est.)</th><th>ETA</th><th>results</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""


def _row(b: dict[str, Any]) -> str:
    e = html.escape
    pct = float(b["progress"]) * 100
    counts = "".join(f'<td class="{s}">{int(b[s])}</td>' for s in STATE_COLUMNS)
    links = "<br>".join(f'<a href="{e(url)}">{e(name)}</a>'
                        for name, url in b["results"].items())
    return (f'<tr id="batch-{e(str(b["id"]))}"><td><code>{e(str(b["id"]))}</code></td>'
            f'<td class="status">{e(str(b["status"]))}</td>'
            f'<td><span class="bar"><span style="width:{pct:.1f}%"></span></span> '
            f'{b["done"]}/{b["total"]} ({pct:.0f}%)</td><td class="total">{b["total"]}</td>'
            f'{counts}<td>{b["spend_usd"]:.3f} ({b["spend_estimate_usd"]:.3f})</td>'
            f'<td>{_eta_text(b["eta_s"])}</td><td class="links">{links or "-"}</td></tr>')


def _eta_text(eta_s: float | None) -> str:
    if eta_s is None:
        return "?"
    if eta_s == 0:
        return "done"
    return time.strftime("%H:%M:%S", time.gmtime(eta_s)) if eta_s < 86400 else \
        f"{eta_s / 86400:.1f} d"


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
