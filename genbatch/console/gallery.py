"""Where a batch's videos and input images are served from, and its output manifests read
as tables (`/batches/{id}/view/{file}`). The gallery itself is the review page
(console/review.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from genbatch.console.html import esc, page, query
from genbatch.records import Item
from genbatch.storage import object_key

TABLE_LIMIT = 200


def video_url(item: Item) -> str:
    """The dashboard URL of the item's stored video (under its batch's prefix)."""
    key = object_key(item.batch_id, item.custom_id)  # `<batch>/<name>.mp4`
    return "/batches/" + key.replace("/", "/files/", 1)


def input_url(item: Item) -> str:
    return f"/batches/{item.batch_id}/items/{item.seq}/input"


def render_rows(bid: str, name: str, rows: Sequence[dict[str, Any]], offset: int,
                more: bool) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(f"<td>{esc(_cell(row.get(c)))}</td>" for c in columns)
                     + "</tr>" for row in rows)
    base = f"/batches/{bid}/view/{name}"
    nav = [f'<a href="{query(base, {"offset": max(0, offset - TABLE_LIMIT)})}">← previous</a>'
           if offset else "",
           f'<a href="{query(base, {"offset": offset + TABLE_LIMIT})}">next →</a>'
           if more else ""]
    content = (f'<table class="wide" id="rows"><tr>{head}</tr>{body}</table>' if rows
               else "<p>no rows</p>")
    html = (f'<nav><a href="/batches/{esc(bid)}">batch</a>'
            f'<a href="/results/{esc(bid)}/{esc(name)}">download {esc(name)}</a></nav>'
            f"<h1>{esc(name)} of <code>{esc(bid)}</code></h1>"
            f'<p class="muted">rows {offset + 1} to {offset + len(rows)}</p>{content}'
            f"<nav>{' '.join(n for n in nav if n)}</nav>")
    return page(f"{name} of {bid}", html)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
