"""The dashboard's pages and APIs about one batch; every handler here is a read (GET/HEAD).

    /batches/{id}                    the batch page     /api/batches/{id}      as JSON
    /batches/{id}/items              items table        /api/batches/{id}/items
    /batches/{id}/items/{seq}        item detail        /api/batches/{id}/items/{seq}
    /batches/{id}/items/{seq}/input  the item's input image (stored, or a redirect to its URL)
    /batches/{id}/gallery            the review page (console/review.py, with its POSTs)
    /batches/{id}/files/{name}       a file directly under the batch's prefix (videos)
    /batches/{id}/view/{file}        results.jsonl / errors.jsonl as a table
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from genbatch import metrics
from genbatch.console import batch_page, files, gallery, items_page
from genbatch.console.health import diagnose
from genbatch.errors import NotFoundError, StorageError
from genbatch.records import Batch, Item
from genbatch.storage import ObjectStorage, batch_key
from genbatch.store import JobStore
from genbatch.store.pages import ItemFilter, Page
from genbatch.store.series import Point

VIEWABLE = ("results.jsonl", "errors.jsonl")


@dataclass
class BatchRoutes:
    store: JobStore
    storage: Callable[[], ObjectStorage]
    limits: Mapping[str, int]  # account -> its concurrency
    accounts: Sequence[str]  # configured provider accounts
    recover_s: float  # AIMD recovery, for the submit-rate share shown per account
    by_provider: Mapping[str, Sequence[str]] = field(default_factory=dict)  # its accounts

    def _accounts_of(self, provider: str) -> Sequence[str]:
        return self.by_provider.get(provider) or [provider]

    def routes(self) -> list[Route]:
        b = "/batches/{batch_id}"
        return [Route(b, self.batch_html), Route("/api" + b, self.batch_json),
                Route(b + "/items", self.items_html), Route("/api" + b + "/items", self.items_json),
                Route(b + "/items/{seq:int}", self.item_html),
                Route("/api" + b + "/items/{seq:int}", self.item_json),
                Route(b + "/items/{seq:int}/input", self.item_input),
                Route(b + "/files/{name:path}", self.batch_file),
                Route(b + "/view/{name}", self.results_table)]

    # -- the batch ---------------------------------------------------------------------------
    def _batch(self, request: Request) -> Batch:
        return self.store.batches.get(request.path_params["batch_id"])

    def _detail(self, batch: Batch) -> tuple[dict[str, Any], list[Point], list[dict[str, Any]]]:
        now = time.time()
        view = batch_page.batch_view(batch, metrics.batch_spend(self.store, [batch.id])[batch.id],
                                     now)
        health = batch_page.accounts_health(
            self.store, batch_page.batch_accounts(batch, self.accounts, self.by_provider),
            self.limits, now, self.recover_s)
        diagnosis = diagnose(self.store, batch, self._accounts_of)
        view["waiting"] = list(diagnosis.reasons)
        view["durability"] = diagnosis.durability
        view["served_by"] = self.store.batches.served_by(batch.id)
        return view, batch_page.life(self.store, batch, now), health

    def batch_html(self, request: Request) -> Response:
        view, points, health = self._detail(self._batch(request))
        return HTMLResponse(batch_page.render(view, points, health))

    def batch_json(self, request: Request) -> Response:
        view, points, health = self._detail(self._batch(request))
        series = [{"t": p.t, **p.values} for p in points]
        return JSONResponse({**view, "accounts": health, "series": series})

    # -- items -------------------------------------------------------------------------------
    def _page(self, request: Request, flt: ItemFilter | None = None,
              limit: int | None = None) -> tuple[Batch, ItemFilter, Page, int]:
        batch = self._batch(request)
        parsed, after, before, asked = items_page.parse_query(request.query_params)
        flt, limit = flt or parsed, limit or asked
        page = self.store.pages.page(batch.id, batch.total, flt, limit, after=after,
                                     before=before)
        return batch, flt, page, limit

    def items_html(self, request: Request) -> Response:
        batch, flt, page, limit = self._page(request)
        return HTMLResponse(items_page.render_table(batch.id, page, flt, batch.total, limit))

    def items_json(self, request: Request) -> Response:
        batch, flt, page, _ = self._page(request)
        return JSONResponse(items_page.page_json(page, flt, batch.total))

    def _item(self, request: Request) -> Item:
        batch = self._batch(request)
        seq = int(request.path_params["seq"])
        found = self.store.pages.fetch(batch.id, [seq]) if 1 <= seq <= batch.total else []
        if not found:
            raise NotFoundError(f"no item {seq} in batch {batch.id}")
        return found[0]

    def item_html(self, request: Request) -> Response:
        item = self._item(request)
        media = {"image": gallery.input_url(item) if items_page.input_key(item) else None,
                 "video": gallery.video_url(item) if item.output_uri else None}
        return HTMLResponse(items_page.render_detail(item.batch_id, item, media))

    def item_json(self, request: Request) -> Response:
        return JSONResponse(items_page.item_detail(self._item(request)))

    def item_input(self, request: Request) -> Response:
        where = items_page.input_key(self._item(request))
        if where is None:
            return files.not_found("no input image to show (a data URI or none)")
        kind, ref = where
        if kind == "url":
            return RedirectResponse(ref, status_code=307)
        return files.stored_object(self.storage(), ref)

    # -- files -------------------------------------------------------------------------
    def batch_file(self, request: Request) -> Response:
        batch = self._batch(request)
        return files.batch_file(self.storage(), batch.id, request.path_params["name"])

    def results_table(self, request: Request) -> Response:
        batch, name = self._batch(request), request.path_params["name"]
        if name not in VIEWABLE or not batch.get(name.replace(".", "_")):
            return files.not_found("written when the batch finishes")
        offset = _int(request.query_params.get("offset"))
        try:
            rows, more = files.jsonl_rows(self.storage(), batch_key(batch.id, name), offset,
                                          gallery.TABLE_LIMIT)
        except StorageError as exc:
            return files.not_found(str(exc))
        return HTMLResponse(gallery.render_rows(batch.id, name, rows, offset, more))


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0
