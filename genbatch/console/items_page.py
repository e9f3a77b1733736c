"""A batch's items: one page of the table (filtered, searched and paged in Redis, see
`genbatch/store/pages.py`) and the detail of one item (`/batches/{id}/items[/{seq}]`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from genbatch.console.html import esc, page, query, state_label, usd, when
from genbatch.images import STORED_PREFIX
from genbatch.models import ItemState
from genbatch.records import Item
from genbatch.store.pages import ItemFilter, Page
from genbatch.worker.finalize import provider_model

DEFAULT_LIMIT, MAX_LIMIT = 50, 500
MEDIA_FIELDS = ("image", "last_image", "prompt")
LONG_TEXT = 300  # characters of a value shown before it is cut (data URIs, long prompts)


class BadQuery(ValueError):
    """Raised when the items' query string cannot be understood."""


def parse_query(params: Mapping[str, str]) -> tuple[ItemFilter, int, int | None, int]:
    """(filter, after, before, limit) from `state=a,b&provider=&model=&q=&after=&before=`."""
    states = tuple(s for s in params.get("state", "").split(",") if s)
    unknown = [s for s in states if s not in ItemState._value2member_map_]
    if unknown:
        raise BadQuery(f"unknown state {unknown[0]!r}")
    try:
        after = max(0, int(params.get("after") or 0))
        before = int(params["before"]) if params.get("before") else None
        limit = max(1, min(MAX_LIMIT, int(params.get("limit") or DEFAULT_LIMIT)))
    except ValueError as exc:
        raise BadQuery("after, before and limit are whole numbers") from exc
    flt = ItemFilter(states, params.get("provider", ""), params.get("model", ""),
                     params.get("q", "")[:200])
    return flt, after, before, limit


def request_fields(item: Item) -> dict[str, Any]:
    """The item's normalised request as stored (an unreadable one: empty)."""
    try:
        req = json.loads(item.request_json)
    except json.JSONDecodeError:
        return {}
    return req if isinstance(req, dict) else {}


def history(item: Item) -> list[dict[str, Any]]:
    """Past attempts, oldest first (store/history.py), then the current one."""
    try:
        past = json.loads(item.history_json)
    except json.JSONDecodeError:
        past = []
    current: dict[str, Any] = {
        "state": item.state, "remote_id": item.remote_id or None,
        "error_code": item.error_code or None, "error_message": item.error_message or None,
        "submitted_at": item.submitted_at, "finished_at": item.finished_at,
        "provider": item.provider, "model": item.model, "account": item.account or None}
    return [*(p for p in past if isinstance(p, dict)), current]


def item_row(item: Item) -> dict[str, Any]:
    """One item as the table and the items API show it."""
    req = request_fields(item)
    return {
        "seq": item.seq, "line": item.line, "custom_id": item.custom_id,
        "state": item.state, "provider": item.provider,
        "account": item.account or None, "model": item.model,
        "provider_model": provider_model(item), "prompt": req.get("prompt", ""),
        "parameters": {k: v for k, v in req.items() if k not in MEDIA_FIELDS},
        "attempts": item.attempts, "polls": item.polls, "cost_usd": item.cost,
        "estimate_usd": item.est_cost, "error_code": item.error_code or None,
        "error_message": item.error_message or None, "history": history(item),
        "has_video": item.state is ItemState.SUCCEEDED,
    }


def item_detail(item: Item) -> dict[str, Any]:
    """Every field of the item record, long values cut and URLs without their query (a
    provider's signed video URL carries its token there)."""
    fields = {}
    for name, value in sorted(item.items()):
        if name == "video_url":
            value = value.split("?", 1)[0]
        fields[name] = value if len(value) <= LONG_TEXT else value[:LONG_TEXT] + "…"
    return {**item_row(item), "fields": fields}


def page_json(page_: Page, flt: ItemFilter, total: int) -> dict[str, Any]:
    return {"total_in_batch": total, "filter": {"state": list(flt.states),
            "provider": flt.provider, "model": flt.model, "q": flt.search},
            "items": [item_row(i) for i in page_.items], "next_after": page_.next_after,
            "prev_before": page_.prev_before, "scanned_to": page_.scanned_to}


def render_table(bid: str, page_: Page, flt: ItemFilter, total: int, limit: int) -> str:
    base = f"/batches/{bid}/items"
    keep = {"state": ",".join(flt.states), "provider": flt.provider, "model": flt.model,
            "q": flt.search, "limit": limit if limit != DEFAULT_LIMIT else ""}
    rows = "\n".join(_row(bid, row) for row in (item_row(i) for i in page_.items))
    nav = [f'<a href="{query(base, {**keep, "before": page_.prev_before})}">← previous</a>'
           if page_.prev_before else "", f'<a href="{query(base, keep)}">first</a>',
           f'<a href="{query(base, {**keep, "after": page_.next_after})}">next →</a>'
           if page_.next_after else ""]
    short = (f'<p class="muted">Looked at items up to #{page_.scanned_to} of {total}; '
             "“next” searches on.</p>" if page_.next_after and len(page_.items) < limit
             else "")
    body = (f'<nav><a href="/">all batches</a><a href="/batches/{esc(bid)}">batch</a>'
            f'<a href="/batches/{esc(bid)}/gallery">gallery</a>'
            f'<a href="{query(f"/api{base}", keep)}">JSON</a></nav>'
            f"<h1>items of <code>{esc(bid)}</code></h1>{_filters(base, flt)}"
            f'<p class="muted">{total} items in the batch, in manifest order.</p>{short}'
            '<table class="wide" id="items"><tr><th class=n>#</th><th>custom_id</th>'
            "<th>state</th><th>provider / model</th><th>prompt</th><th>parameters</th>"
            "<th class=n>attempts</th><th class=n>cost</th><th>error</th></tr>"
            f"{rows or '<tr><td colspan=9>no item matches</td></tr>'}</table>"
            f"<nav>{' '.join(n for n in nav if n)}</nav>")
    return page(f"items of {bid}", body)


def _filters(base: str, flt: ItemFilter) -> str:
    states = "".join(f'<option value="{s.value}"{" selected" if (s.value,) == flt.states else ""}'
                     f">{s.value}</option>" for s in ItemState)
    return (f'<form class="filters" method="get" action="{esc(base)}">'
            f'<select name="state"><option value="">any state</option>{states}</select>'
            f'<input name="provider" placeholder="provider" value="{esc(flt.provider)}">'
            f'<input name="model" placeholder="model" value="{esc(flt.model)}">'
            f'<input name="q" placeholder="custom_id contains" value="{esc(flt.search)}">'
            '<button type="submit">filter</button></form>')


def _row(bid: str, row: Mapping[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in row["parameters"].items())
    error = f"<code>{esc(row['error_code'])}</code> {esc(row['error_message'])}" \
        if row["error_code"] else ""
    tries = " → ".join(str(h.get("state")) for h in row["history"][:-1])
    earlier = f"<br><span class=muted>{esc(tries)}</span>" if tries else ""
    cost = row["cost_usd"] if row["cost_usd"] is not None else row["estimate_usd"]
    est = "" if row["cost_usd"] is not None else " <span class=muted>est.</span>"
    return (f'<tr id="item-{row["seq"]}"><td class=n><a href="/batches/{esc(bid)}/items/'
            f'{row["seq"]}">{row["seq"]}</a></td><td><code>{esc(row["custom_id"])}</code></td>'
            f"<td>{state_label(str(row['state']))}</td><td>{esc(row['provider'])}"
            f"{_account_note(row)}<br>"
            f'<span class="muted">{esc(row["provider_model"] or row["model"])}</span></td>'
            f"<td>{esc(_cut(str(row['prompt']), 120))}</td><td>{esc(params)}</td>"
            f"<td class=n>{row['attempts']}{earlier}</td><td class=n>{usd(cost)}{est}</td>"
            f"<td>{error}</td></tr>")


def render_detail(bid: str, item: Item, media: Mapping[str, str | None]) -> str:
    d = item_detail(item)
    video = (f'<video controls preload="metadata" src="{esc(media["video"])}#t=0.1"></video>'
             if media.get("video") else "")
    image = f'<img alt="input image" src="{esc(media["image"])}">' if media.get("image") else ""
    attempts = "".join(
        f"<tr><td>{n}</td><td>{esc(h.get('provider'))} {esc(h.get('model'))}</td>"
        f"<td>{state_label(str(h.get('state')))}</td><td><code>{esc(h.get('remote_id'))}</code>"
        f"</td><td>{esc(when(_float(h.get('submitted_at'))))}</td>"
        f"<td><code>{esc(h.get('error_code'))}</code> {esc(h.get('error_message'))}</td></tr>"
        for n, h in enumerate(d["history"], 1))
    fields = "".join(f"<tr><th>{esc(k)}</th><td><code>{esc(v)}</code></td></tr>"
                     for k, v in d["fields"].items())
    body = (f'<nav><a href="/batches/{esc(bid)}">batch</a><a href="/batches/{esc(bid)}/items">'
            f'items</a><a href="/api/batches/{esc(bid)}/items/{d["seq"]}">JSON</a></nav>'
            f"<h1>item #{d['seq']} <code>{esc(d['custom_id'])}</code> · "
            f"{state_label(str(d['state']))}</h1><div class=\"pair\">{image}{video}</div>"
            f"<h2>prompt</h2><pre>{esc(d['prompt'])}</pre><h2>attempts</h2><table>"
            "<tr><th>#</th><th>where</th><th>state</th><th>remote task</th><th>submitted</th>"
            f"<th>error</th></tr>{attempts}</table><h2>record</h2><table>{fields}</table>")
    return page(f"item {d['seq']} of {bid}", body)


def input_key(item: Item) -> tuple[str, str] | None:
    """Where the item's input image is: ("url", http URL) or ("stored", object key)."""
    image = str(request_fields(item).get("image") or "")
    if image.startswith(("http://", "https://")):
        return "url", image
    if image.startswith(STORED_PREFIX):
        return "stored", image.removeprefix(STORED_PREFIX)
    return None


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _float(value: object) -> float | None:
    try:
        return float(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _account_note(row: Mapping[str, Any]) -> str:
    """` (account)` after the provider when an account other than the provider's own served
    the item."""
    account = row.get("account")
    if not account or account == row.get("provider"):
        return ""
    return f' <span class="muted">({esc(str(account))})</span>'
