"""The review page of a batch: its succeeded videos, each to keep or reject in one click,
filtered by verdict, and "redo rejected".

    GET  /batches/{id}/gallery             the page (`?review=kept|rejected|not_reviewed`,
                                           `?limit=`, `?after=` / `?before=` to page)
    GET  /batches/{id}/items/{seq}/poster  the video's poster (JPEG), made once and kept
    POST /batches/{id}/review              seq, verdict (kept, rejected, not_reviewed)
    POST /batches/{id}/redo                queue the rejected items again (worker/redo.py)

A tile shows a poster image and a `<video preload="none">`: a page of a thousand videos
loads as a thousand small JPEGs and fetches a video only when it is played. A poster is
decoded from the video once (genbatch/frames.py) and stored beside it, under
`<batch>/posters/`, named by the video's checksum, so a new take gets a new poster.

The POSTs change state: each is checked for origin and CSRF token (console/csrf.py) behind
the dashboard's authentication. The buttons are plain forms (they work without
JavaScript, answering with a redirect back); a few lines of script send them with fetch
and update the tile and the counts in place (JSON answers).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route

from genbatch.console import csrf, files
from genbatch.console.gallery import input_url, video_url
from genbatch.console.html import esc, page, query
from genbatch.errors import GenbatchError, NotFoundError, StorageError
from genbatch.frames import poster
from genbatch.models import Counter, ItemState, Review
from genbatch.records import Batch, Item
from genbatch.storage import ObjectStorage, object_key
from genbatch.storage.keys import safe_name
from genbatch.store import JobStore
from genbatch.store.pages import ItemFilter, Page
from genbatch.worker.finalize import provider_model
from genbatch.worker.redo import RedoReport, redo_batch

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 16_384
DEFAULT_LIMIT = 60
MAX_LIMIT = 1000
SUCCEEDED = ItemFilter(states=(ItemState.SUCCEEDED,))
FILTERS = (("", "all"), (Review.KEPT, "kept"), (Review.REJECTED, "rejected"),
           (Review.NOT_REVIEWED, "not reviewed"))
VERDICT_LABEL = {Review.KEPT: "kept", Review.REJECTED: "rejected",
                 Review.NOT_REVIEWED: "not reviewed"}


def poster_key(item: Item) -> str:
    """Where the item's poster is kept: named by its video's checksum (a new take, a new
    poster)."""
    digest = (item.get("sha256") or "none")[:16]
    return f"{item.batch_id}/posters/{safe_name(item.custom_id)}.{digest}.jpg"


def make_poster(storage: ObjectStorage, item: Item) -> bytes:
    """Decode the poster of the item's stored video (the video copied to a temporary file
    first, so S3 works the same as a folder)."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
        with storage.open_read(object_key(item.batch_id, item.custom_id)) as src:
            while chunk := src.read(1024 * 1024):
                tmp.write(chunk)
        tmp.flush()
        return poster(Path(tmp.name))


@dataclass
class ReviewRoutes:
    store: JobStore
    batch_storage: Callable[[Batch], ObjectStorage]  # where a batch keeps its videos

    def routes(self) -> list[Route]:
        b = "/batches/{batch_id}"
        return [Route(b + "/gallery", self.review_html),
                Route(b + "/items/{seq:int}/poster", self.poster),
                Route(b + "/review", self.review_post, methods=["POST"]),
                Route(b + "/redo", self.redo_post, methods=["POST"])]

    # -- the page ----------------------------------------------------------------------
    def review_html(self, request: Request) -> StarletteResponse:
        batch = self.store.batches.get(request.path_params["batch_id"])
        params = request.query_params
        verdict = _verdict(params.get("review", ""))
        limit = max(1, min(MAX_LIMIT, _int(params.get("limit"), DEFAULT_LIMIT)))
        found = self._page(batch, verdict, limit, _int(params.get("after"), 0),
                           _int(params.get("before"), 0) or None)
        verdicts = self.store.reviews.of(batch.id, [i.seq for i in found.items])
        counts = self.store.reviews.counts(batch.id, batch.count(Counter.SUCCEEDED))
        token = csrf.token(request)
        view = PageView(batch, verdict, limit, found, verdicts, counts, token,
                        _int(params.get("redone"), -1))
        return csrf.remember(request, HTMLResponse(render_review(view)), token)

    def _page(self, batch: Batch, verdict: Review | None, limit: int, after: int,
              before: int | None) -> Page:
        if verdict is None:
            return self.store.pages.page(batch.id, batch.total, SUCCEEDED, limit, after=after,
                                         before=before)
        if verdict is Review.NOT_REVIEWED:
            return self._unreviewed(batch, limit, after)
        seqs, more = self.store.reviews.page(batch.id, verdict, limit, after=after,
                                             before=before)
        items = [i for i in self.store.pages.fetch(batch.id, seqs)
                 if i.state is ItemState.SUCCEEDED]
        if not seqs:
            return Page(items, prev_before=before if before and before > 1 else None)
        later = more if before is None else True  # came back from a later page
        earlier = more if before is not None else bool(after)
        return Page(items, next_after=seqs[-1] if later else None,
                    prev_before=seqs[0] if earlier else None)

    def _unreviewed(self, batch: Batch, limit: int, after: int) -> Page:
        """Succeeded items without a verdict, walking pages of succeeded items until
        `limit` are found or the batch ends (forward only: "previous" is the first page)."""
        items: list[Item] = []
        cursor: int | None = after
        while cursor is not None and len(items) < limit:
            walk = self.store.pages.page(batch.id, batch.total, SUCCEEDED, limit, after=cursor)
            cursor = walk.next_after
            verdicts = self.store.reviews.of(batch.id, [i.seq for i in walk.items])
            for n, item in enumerate(walk.items):
                if verdicts[item.seq] is not Review.NOT_REVIEWED:
                    continue
                items.append(item)
                if len(items) == limit:  # more may follow in this walk or after it
                    more = n < len(walk.items) - 1 or walk.next_after is not None
                    cursor = item.seq if more else None
                    break
        return Page(items, next_after=cursor, prev_before=1 if after else None)

    def poster(self, request: Request) -> StarletteResponse:
        batch = self.store.batches.get(request.path_params["batch_id"])
        try:
            item = _succeeded_item(self.store, batch, int(request.path_params["seq"]))
        except GenbatchError as exc:
            return PlainTextResponse(str(exc), status_code=_status(exc))
        storage, key = self.batch_storage(batch), poster_key(item)
        try:
            if storage.exists(key):
                return files.stored_object(storage, key, confine_to=batch.id)
            data = make_poster(storage, item)
            storage.put_bytes(key, data, "image/jpeg")
        except GenbatchError as exc:  # VideoUnreadable, StorageError: one line, no image
            return files.not_found(str(exc))
        return StarletteResponse(data, media_type="image/jpeg")

    # -- the actions -------------------------------------------------------------------
    async def review_post(self, request: Request) -> StarletteResponse:
        form = await read_form(request)
        why = csrf.refused(request, form)
        if why:
            return PlainTextResponse(why, status_code=403)
        verdict = _verdict(form.get("verdict", ""))
        seq = _int(form.get("seq"), 0)
        if verdict is None or seq < 1:
            return PlainTextResponse("a review needs seq and verdict (kept, rejected or "
                                     "not_reviewed)", status_code=400)
        try:
            counts = await run_in_threadpool(self._mark, request.path_params["batch_id"],
                                             seq, verdict)
        except GenbatchError as exc:
            return PlainTextResponse(str(exc), status_code=_status(exc))
        if _wants_json(request):
            return JSONResponse({"seq": seq, "review": verdict.value, "counts": counts})
        return RedirectResponse(_back(request, form), status_code=303)

    def _mark(self, batch_id: str, seq: int, verdict: Review) -> dict[str, int]:
        batch = self.store.batches.get(batch_id)
        _succeeded_item(self.store, batch, seq)
        self.store.reviews.mark(batch_id, [seq], verdict)
        return self.store.reviews.counts(batch_id, batch.count(Counter.SUCCEEDED))

    async def redo_post(self, request: Request) -> StarletteResponse:
        form = await read_form(request)
        why = csrf.refused(request, form)
        if why:
            return PlainTextResponse(why, status_code=403)
        bid = request.path_params["batch_id"]
        try:
            report = await run_in_threadpool(self._redo, bid)
        except GenbatchError as exc:
            return PlainTextResponse(str(exc), status_code=_status(exc))
        if _wants_json(request):
            return JSONResponse({"batch_id": bid, "redone": report.redone,
                                 "skipped": report.skipped,
                                 "estimated_cost_usd": round(report.estimate_usd, 6)})
        return RedirectResponse(f"/batches/{bid}/gallery?redone={len(report.redone)}",
                                status_code=303)


    def _redo(self, batch_id: str) -> RedoReport:
        batch = self.store.batches.get(batch_id)
        return redo_batch(self.store, self.batch_storage(batch), batch_id)


@dataclass(frozen=True, slots=True)
class PageView:
    batch: Batch
    verdict: Review | None  # the filter (None: every succeeded video)
    limit: int
    page: Page
    verdicts: Mapping[int, Review]
    counts: Mapping[str, int]
    token: str
    redone: int  # -1: no redo just happened


def render_review(v: PageView) -> str:
    bid = v.batch.id
    base = f"/batches/{bid}/gallery"
    keep = {"review": v.verdict.value if v.verdict else "",
            "limit": v.limit if v.limit != DEFAULT_LIMIT else ""}
    back = query(base, keep)
    tiles = "\n".join(_tile(item, v.verdicts.get(item.seq, Review.NOT_REVIEWED), v.token,
                            back) for item in v.page.items)
    nav = [f'<a href="{query(base, {**keep, "before": v.page.prev_before})}">← previous</a>'
           if v.page.prev_before else "",
           f'<a href="{query(base, {**keep, "after": v.page.next_after})}">next →</a>'
           if v.page.next_after else ""]
    body = (f'<nav><a href="/">all batches</a><a href="/batches/{esc(bid)}">batch</a>'
            f'<a href="/batches/{esc(bid)}/items">items</a></nav>'
            f"<h1>review <code>{esc(bid)}</code></h1>"
            f"{_notice(v)}{_filters(base, v)}{_redo_form(bid, v)}"
            '<p class="muted">Succeeded videos in manifest order. Play one to load it; keep or '
            "reject it in one click. Redo generates the rejected ones again with a new seed "
            "(the earlier take is kept in the item's history).</p>"
            f'<div class="grid" id="gallery">{tiles or "<p>no video here</p>"}</div>'
            f"<nav>{' '.join(n for n in nav if n)}</nav><style>{REVIEW_CSS}</style>"
            f"<script>{SCRIPT}</script>")
    return page(f"review {bid}", body)


def _notice(v: PageView) -> str:
    if v.redone < 0:
        return ""
    return (f'<p class="notice" id="redone">{v.redone} rejected videos queued again with a '
            "new seed; they come back here when they finish.</p>")


def _filters(base: str, v: PageView) -> str:
    total = sum(v.counts.values())
    links = []
    for value, label in FILTERS:
        n = v.counts.get(value, 0) if value else total
        here = (v.verdict.value if v.verdict else "") == value
        links.append(f'<a class="filter{" here" if here else ""}" id="count-{value or "all"}" '
                     f'href="{query(base, {"review": value})}">{label} '
                     f"<b>{n}</b></a>")
    return f'<p class="filters">{" ".join(links)}</p>'


def _redo_form(bid: str, v: PageView) -> str:
    n = v.counts.get(Review.REJECTED, 0)
    disabled = "" if n else " disabled"
    return (f'<form method="post" action="/batches/{esc(bid)}/redo" class="redo">'
            f'<input type="hidden" name="{csrf.FIELD}" value="{esc(v.token)}">'
            f'<button type="submit" id="redo"{disabled}>Redo rejected ({n})</button></form>')


def _tile(item: Item, verdict: Review, token: str, back: str) -> str:
    detail = f"/batches/{item.batch_id}/items/{item.seq}"
    poster_url = f"{detail}/poster"
    takes = f" · take {item.takes}" if item.takes > 1 else ""
    return (f'<div class="card {verdict.value}" id="tile-{item.seq}"><div class="pair">'
            f'<a href="{esc(detail)}"><img loading="lazy" alt="input of '
            f'{esc(item.custom_id)}" src="{esc(input_url(item))}"></a>'
            f'<video controls muted playsinline preload="none" poster="{esc(poster_url)}" '
            f'src="{esc(video_url(item))}"></video></div>'
            f'<a href="{esc(detail)}"><code>{esc(item.custom_id)}</code></a> '
            f'<span class="muted">{esc(item.provider)} · '
            f"{esc(provider_model(item) or item.model)}{takes}</span>"
            f'<form method="post" action="/batches/{esc(item.batch_id)}/review" class="verdict">'
            f'<input type="hidden" name="{csrf.FIELD}" value="{esc(token)}">'
            f'<input type="hidden" name="seq" value="{item.seq}">'
            f'<input type="hidden" name="back" value="{back}">'
            f'<button name="verdict" value="kept" class="keep">keep</button>'
            f'<button name="verdict" value="rejected" class="reject">reject</button>'
            f'<span class="verdict-label">{VERDICT_LABEL[verdict]}</span></form></div>')


REVIEW_CSS = """
.filters a { margin-right: 1em; text-decoration: none; } .filters a.here { font-weight: 600;
  border-bottom: 2px solid #1864ab; } .notice { background: #e7f5ff; padding: 4px 10px; }
form.verdict { display: flex; gap: 6px; align-items: center; margin-top: 4px; }
form.verdict button, form.redo button { font: inherit; padding: 2px 10px; cursor: pointer; }
.card.kept { border-color: #2f9e44; box-shadow: inset 4px 0 #2f9e44; }
.card.rejected { border-color: #e03131; box-shadow: inset 4px 0 #e03131; opacity: .75; }
.card.kept .keep, .card.rejected .reject { font-weight: 700; }
.verdict-label { color: #868e96; } form.redo { margin: .4em 0; }
"""

# One click: send the form with fetch, then mark the tile and update the counts.
SCRIPT = """
document.querySelectorAll('form.verdict').forEach(function (form) {
  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var data = new FormData(form);
    if (ev.submitter) data.set('verdict', ev.submitter.value);
    fetch(form.action, {method: 'POST', body: new URLSearchParams(data),
                        credentials: 'same-origin',
                        headers: {'Accept': 'application/json'}})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (res) {
        var card = form.closest('.card');
        card.classList.remove('kept', 'rejected', 'not_reviewed');
        card.classList.add(res.review);
        form.querySelector('.verdict-label').textContent = res.review.replace('_', ' ');
        var all = 0;
        Object.keys(res.counts).forEach(function (k) {
          all += res.counts[k];
          var el = document.querySelector('#count-' + k + ' b');
          if (el) el.textContent = res.counts[k];
        });
        document.querySelector('#count-all b').textContent = all;
        var redo = document.getElementById('redo');
        redo.textContent = 'Redo rejected (' + res.counts.rejected + ')';
        redo.disabled = !res.counts.rejected;
      })
      .catch(function () {  // send it as a plain form post instead
        var v = document.createElement('input');
        v.type = 'hidden'; v.name = 'verdict'; v.value = data.get('verdict');
        form.appendChild(v); form.submit();
      });
  });
});
"""


async def read_form(request: Request) -> dict[str, str]:
    """The POST's urlencoded form (what a plain form sends, and the page's script too), the
    first value of each field; anything else reads as an empty form, which the CSRF check
    refuses."""
    if not request.headers.get("content-type", "").startswith(FORM_TYPE):
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _succeeded_item(store: JobStore, batch: Batch, seq: int) -> Item:
    found = store.pages.fetch(batch.id, [seq]) if 1 <= seq <= batch.total else []
    if not found:
        raise NotFoundError(f"no item {seq} in batch {batch.id}")
    if found[0].state is not ItemState.SUCCEEDED:
        raise GenbatchError(f"item {seq} has no video to review (it is {found[0].state})")
    return found[0]


def _verdict(value: str) -> Review | None:
    return Review(value) if value in Review._value2member_map_ else None


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _status(exc: GenbatchError) -> int:
    return 404 if isinstance(exc, (NotFoundError, StorageError)) else 409


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _back(request: Request, form: Mapping[str, str]) -> str:
    """Where a plain form POST returns to: the page it came from, only on this batch."""
    bid = request.path_params["batch_id"]
    back = form.get("back") or ""
    own = f"/batches/{bid}/"
    return back if back.startswith(own) and "//" not in back and "\\" not in back \
        else f"/batches/{bid}/gallery"
