"""The gallery of a batch's succeeded videos, each beside its input image, and its output
manifests read as tables (`/batches/{id}/gallery`, `/batches/{id}/view/{file}`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from genbatch.console.html import esc, page, query
from genbatch.records import Item
from genbatch.storage import object_key
from genbatch.store.pages import Page
from genbatch.worker.finalize import provider_model

GALLERY_LIMIT = 24
TABLE_LIMIT = 200


def video_url(item: Item) -> str:
    """The dashboard URL of the item's stored video (under its batch's prefix)."""
    key = object_key(item.batch_id, item.custom_id)  # `<batch>/<name>.mp4`
    return "/batches/" + key.replace("/", "/files/", 1)


def input_url(item: Item) -> str:
    return f"/batches/{item.batch_id}/items/{item.seq}/input"


def render_gallery(bid: str, page_: Page) -> str:
    tiles = "\n".join(_tile(item) for item in page_.items)
    nav = [f'<a href="{query(f"/batches/{bid}/gallery", {"before": page_.prev_before})}">'
           "← previous</a>" if page_.prev_before else "",
           f'<a href="{query(f"/batches/{bid}/gallery", {"after": page_.next_after})}">'
           "next →</a>" if page_.next_after else ""]
    body = (f'<nav><a href="/">all batches</a><a href="/batches/{esc(bid)}">batch</a>'
            f'<a href="/batches/{esc(bid)}/items">items</a></nav>'
            f"<h1>gallery of <code>{esc(bid)}</code></h1>"
            '<p class="muted">Succeeded videos in manifest order, each beside its input image; '
            "click the image or the name for the item.</p>"
            f'<div class="grid" id="gallery">{tiles or "<p>no succeeded video yet</p>"}</div>'
            f"<nav>{' '.join(n for n in nav if n)}</nav>")
    return page(f"gallery of {bid}", body)


def _tile(item: Item) -> str:
    detail = f"/batches/{item.batch_id}/items/{item.seq}"
    return (f'<div class="card" id="tile-{item.seq}"><div class="pair">'
            f'<a href="{esc(detail)}"><img loading="lazy" alt="input of '
            f'{esc(item.custom_id)}" src="{esc(input_url(item))}"></a>'
            f'<video controls muted playsinline preload="metadata" '
            f'src="{esc(video_url(item))}#t=0.1"></video></div>'
            f'<a href="{esc(detail)}"><code>{esc(item.custom_id)}</code></a> '
            f'<span class="muted">{esc(item.provider)} · '
            f'{esc(provider_model(item) or item.model)}</span></div>')


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
