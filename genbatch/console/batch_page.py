"""One batch as the dashboard shows it: counts, progress, spend, options, the health of its
accounts and the chart of its life (`/batches/{id}`, `/api/batches/{id}`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from genbatch.console import chart
from genbatch.console.html import (
    COUNTER_STATES,
    STATE_COLOURS,
    counts_bar,
    duration,
    esc,
    page,
    query,
    usd,
)
from genbatch.console.views import STATE_COLUMNS, batch_summary, done_count, served_by_line
from genbatch.models import FINISHED_STATUSES
from genbatch.records import Batch
from genbatch.store import JobStore
from genbatch.store.series import SERIES_COUNTERS, SERIES_FIELDS, Point

RESULT_FILES = {"results.jsonl": "application/x-ndjson", "results.csv": "text/csv",
                "errors.jsonl": "application/x-ndjson"}
REFRESH_S = 5


def batch_view(batch: Batch, spend: tuple[float, float], now: float) -> dict[str, Any]:
    """One batch as the dashboard lists it: counts, progress, spend and ETA."""
    view = batch_summary(batch)
    total = batch.total
    done = done_count(batch)
    view["done"] = done
    view["progress"] = round(done / total, 4) if total else 1.0
    view["spend_usd"], view["spend_estimate_usd"] = round(spend[0], 4), round(spend[1], 4)
    view["eta_s"] = _eta_s(batch, done, total, now)
    view["results"] = {name: f"/results/{batch.id}/{name}" for name in RESULT_FILES
                       if batch.get(name.replace(".", "_"))}
    view["notify_host"] = _host(batch.notify_url)  # never the URL: it may hold a token
    return view


def _eta_s(batch: Batch, done: int, total: int, now: float) -> float | None:
    """Remaining items at the average rate since the batch was created; None if unknown."""
    if batch.finished:
        return 0.0
    elapsed = now - (batch.created_at or now)
    if done <= 0 or elapsed <= 0:
        return None
    return round((total - done) * elapsed / done, 1)


def _host(url: str) -> str | None:
    return urlsplit(url).hostname if url else None


def life(store: JobStore, batch: Batch, now: float) -> list[Point]:
    """The batch's samples, from its creation (all zero) to its counters now (or when it
    finished)."""
    points = store.series.read(batch.id)
    extra = store.counters.batch_counts(batch.id)
    current: dict[str, int] = {f: batch.count(f) for f in SERIES_COUNTERS}
    current["rate_limited"] = int(float(extra.get("rate_limited") or 0))
    start = batch.created_at or now
    if not points or points[0].t > start:
        points.insert(0, Point(start, dict.fromkeys(SERIES_FIELDS, 0)))
    end = batch.finished_at or now
    if end > points[-1].t:
        points.append(Point(end, current))
    return points


def accounts_health(store: JobStore, accounts: Sequence[str], limits: Mapping[str, int],
                    now: float, recover_s: float) -> list[dict[str, Any]]:
    """Each account's health (state, why, the fix), in-flight count against its
    concurrency, cooldown, submit rate and 429s."""
    in_flight = store.queues.in_flight_counts(accounts)
    healths = store.health.get_many(accounts)
    cooling = store.queues.cooling(accounts)
    (rate_limited,) = store.counters.read(["provider_429"])
    rows = []
    for p, n, h, cool in zip(accounts, in_flight, healths, cooling, strict=True):
        rows.append({
            "provider": p, "account": p, "state": h.state, "why": h.reason or None,
            "fix": h.fix or None,
            "in_flight": n, "max_in_flight": limits.get(p),
            "cooling_down": cool,
            "submit_rate_share": round(store.limits.factor(p, "submit", now, recover_s), 3),
            "rate_limited_total": sum(int(float(v)) for f, v in rate_limited.items()
                                      if f.split(":", 1)[0] == p),
        })
    return rows


def batch_accounts(batch: Batch, configured: Sequence[str],
                   by_provider: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The accounts a batch uses: those of its --provider and --fallback, or (a manifest
    naming its provider per row) every configured account."""
    named = [p for p in (batch.default_provider, batch.fallback.split(":", 1)[0]) if p]
    if not batch.default_provider:
        return list(configured)
    found = [a for p in dict.fromkeys(named) for a in (by_provider or {}).get(p) or [p]]
    return list(dict.fromkeys(found))


def render(view: Mapping[str, Any], points: Sequence[Point],
           health: Sequence[Mapping[str, Any]]) -> str:
    bid = str(view["id"])
    base = f"/batches/{bid}"
    live = view["status"] not in FINISHED_STATUSES
    body = [f'<nav><a href="/">all batches</a><a href="{esc(base)}/items">items</a>'
            f'<a href="{esc(base)}/gallery">gallery</a>'
            f'<a href="/api/batches/{esc(bid)}">JSON</a></nav>',
            f"<h1>batch <code>{esc(bid)}</code> · {esc(view['status'])}</h1>",
            f'<p class="muted">manifest {esc(view.get("manifest"))} · created '
            f"{esc(view['created_at'])} · {view['done']}/{view['total']} done "
            f"({float(view['progress']) * 100:.0f}%) · ETA {esc(duration(view['eta_s']))}"
            f"{f' · refreshes every {REFRESH_S} s' if live else ''}</p>",
            _waiting(view.get("waiting") or ()), _paid_twice(view),
            _served_by(view.get("served_by") or {}),
            counts_bar(view, int(view["total"]), big=True), _tiles(view, base),
            '<div class="cols">', _money(view), _options(view), "</div>",
            "<h2>accounts</h2>", _health(health), "<h2>over time</h2>", chart.svg(points),
            "<h2>output manifests</h2>", _results(bid, view)]
    return page(f"genbatch batch {bid}", "\n".join(body), refresh_s=REFRESH_S if live else None)


def _waiting(reasons: Sequence[str]) -> str:
    """What the batch waits on (no worker, a paused account …), one line each."""
    if not reasons:
        return ""
    items = "".join(f"<li>{esc(r)}</li>" for r in reasons)
    return f'<div id="waiting" class="waiting"><b>waiting:</b><ul>{items}</ul></div>'


def _served_by(hosts: Mapping[str, Mapping[str, int]]) -> str:
    """Which hosts' workers submitted and downloaded the batch's items."""
    if not hosts:
        return ""
    return f'<p id="served-by"><b>served by:</b> {esc(served_by_line(hosts))}</p>'


def _paid_twice(view: Mapping[str, Any]) -> str:
    """A badge for items a Redis restart may have lost a submit of, and the durability."""
    twice = int(view.get("possibly_paid_twice") or 0)
    badge = (f'<div id="paid-twice" class="waiting"><b>possibly paid twice: {twice}</b> '
             "items (a Redis restart may have lost their submit; see "
             "<code>possibly_paid_twice</code> in the output manifests)</div>") if twice else ""
    line = view.get("durability")
    return badge + (f'<p id="durability" class="muted">durability: {esc(line)}</p>'
                    if line else "")


def _tiles(view: Mapping[str, Any], base: str) -> str:
    tiles = []
    for name in STATE_COLUMNS:
        href = query(f"{base}/items", {"state": ",".join(COUNTER_STATES[name])})
        tiles.append(f'<div class="tile" id="count-{name}" style="border-color:'
                     f'{STATE_COLOURS[name]}"><a href="{href}"><b>{int(view[name])}</b>'
                     f'{esc(name.replace("_", " "))}</a></div>')
    return f'<div class="tiles">{"".join(tiles)}</div>'


def _money(view: Mapping[str, Any]) -> str:
    money = view["budget"]
    rows = [("spent", usd(money["spent_usd"])),
            ("estimate of the same items", usd(money["spent_estimate_usd"])),
            ("reserved for items in flight", usd(money["reserved_usd"])),
            ("budget", usd(money["budget_usd"])), ("left", usd(money["left_usd"])),
            ("budget exhausted", "yes" if money["exhausted"] else "no")]
    return _table("spend", rows, "money")


def _options(view: Mapping[str, Any]) -> str:
    failover = view.get("failover") or {}
    rows = [("tier", view.get("tier") or "default"), ("priority", view.get("priority")),
            ("expires after", f"{view['expires_after']} s" if view.get("expires_after")
             else "provider default"),
            ("fallback", f"{failover['fallback']} ({failover['failed_over']} moved)"
             if failover else "none"),
            ("notify", view.get("notify_host") or "none")]
    return _table("options", rows, "options")


def _table(title: str, rows: Sequence[tuple[str, object]], css_id: str) -> str:
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<div><h2>{esc(title)}</h2><table id="{css_id}">{cells}</table></div>'


def _health(rows: Sequence[Mapping[str, Any]]) -> str:
    head = ("<tr><th>account</th><th>state</th><th class=n title=\"WaveSpeed and BytePlus "
            "accounts run up to the queue-ahead above their concurrency: those tasks wait at "
            "the provider\">in flight / concurrency</th>"
            "<th>cooling down</th>"
            "<th class=n>submit rate (share of configured)</th><th class=n>429s (all time)</th>"
            "<th>why / fix</th></tr>")
    body = "".join(
        f"<tr><td>{esc(r['provider'])}</td><td class=\"health-{esc(r['state'])}\">"
        f"{esc(r['state'])}</td><td class=n>{r['in_flight']} / "
        f"{esc(r['max_in_flight'])}</td><td>{'yes' if r['cooling_down'] else 'no'}</td>"
        f"<td class=n>{float(r['submit_rate_share']) * 100:.0f}%</td>"
        f"<td class=n>{r['rate_limited_total']}</td>"
        f"<td>{esc(r['why'] or '')}{'<br>' + esc(r['fix']) if r['fix'] else ''}</td></tr>"
        for r in rows)
    return f'<table id="accounts">{head}{body}</table>'


def _results(bid: str, view: Mapping[str, Any]) -> str:
    if not view["results"]:
        return '<p class="muted">Written when the batch finishes.</p>'
    links = []
    for name, url in view["results"].items():
        shown = f' · <a href="/batches/{esc(bid)}/view/{esc(name)}">view as a table</a>' \
            if name.endswith(".jsonl") else ""
        links.append(f'<li><a href="{esc(url)}">{esc(name)}</a> (download){shown}</li>')
    return f"<ul>{''.join(links)}</ul>"
