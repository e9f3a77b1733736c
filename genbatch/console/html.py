"""The dashboard's HTML pieces: the page shell, state colours, escaping and small formats.

Every value that comes from a manifest, a provider or the store goes through `esc` (or
`attr` inside a quoted attribute) before it reaches a page.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from urllib.parse import urlencode

from genbatch.models import OPEN_COUNTERS, STATE_COUNTER, TERMINAL_STATES, Counter

# One colour per place an item can be, the same on every page and in the chart.
STATE_COLOURS: dict[str, str] = {
    Counter.SUCCEEDED: "#2f9e44", Counter.FAILED: "#e03131", Counter.EXPIRED: "#f08c00",
    Counter.CANCELLED: "#868e96", Counter.AMBIGUOUS: "#9c36b5", Counter.IN_FLIGHT: "#1c7ed6",
    Counter.DOWNLOADING: "#15aabf", Counter.PENDING: "#ced4da",
    Counter.WAITING: "#e9ecef", Counter.PARENT_FAILED: "#ffa8a8",
}
# Batch counter -> the item states it counts (for links to the filtered items table).
COUNTER_STATES: Mapping[str, tuple[str, ...]] = {
    counter: tuple(s.value for s, c in STATE_COUNTER.items() if c == counter)
    for counter in dict.fromkeys(STATE_COUNTER.values())
}
# Finished counters first (in state order), then the open ones, newest step first.
BAR_ORDER: tuple[str, ...] = (
    *dict.fromkeys(c for s, c in STATE_COUNTER.items() if s in TERMINAL_STATES),
    *reversed(OPEN_COUNTERS),
)

CSS = """
body { font: 13px system-ui, sans-serif; margin: 1.2em 1.5em; color: #212529; }
a { color: #1864ab; } h1 { font-size: 20px; margin: 0 0 .3em; } h2 { font-size: 15px; }
table { border-collapse: collapse; } .wide { width: 100%; }
th, td { border-bottom: 1px solid #dee2e6; padding: 4px 6px; text-align: left;
         vertical-align: top; }
th { font-weight: 600; background: #f8f9fa; } td.n, th.n { text-align: right; }
code { font-size: 12px; } .muted { color: #868e96; } nav a { margin-right: .8em; }
.bar { display: inline-flex; width: 160px; height: 10px; background: #f1f3f5;
       vertical-align: middle; } .bar span { display: block; height: 10px; }
.big.bar { width: 100%; height: 16px; } .big.bar span { height: 16px; }
.tiles { display: flex; gap: 8px; flex-wrap: wrap; margin: .6em 0; }
.tile { border-left: 6px solid; padding: 4px 10px; background: #f8f9fa; min-width: 90px; }
.tile b { display: block; font-size: 18px; } .tile a { text-decoration: none; color: inherit; }
.waiting { background: #fff3bf; border-left: 6px solid #f08c00; padding: 4px 10px; margin: .6em 0; }
.waiting ul { margin: .2em 0; } .health-paused { color: #c92a2a; font-weight: bold; }
.health-degraded { color: #e67700; font-weight: bold; } .health-ok { color: #2b8a3e; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
.card { border: 1px solid #dee2e6; padding: 6px; } .pair { display: flex; gap: 6px; }
.pair img, .pair video { width: 144px; height: 144px; object-fit: contain; background: #212529; }
.cols { display: flex; gap: 2em; flex-wrap: wrap; } .state { font-weight: 600; }
pre { white-space: pre-wrap; word-break: break-all; background: #f8f9fa; padding: 6px; }
form.filters { margin: .5em 0; } form.filters * { margin-right: .4em; }
"""


def esc(value: object) -> str:
    """Text for an HTML element (quotes escaped too, so it is also safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, *, refresh_s: int | None = None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">{refresh}'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
            "</body></html>\n")


def state_label(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#495057")
    return f'<span class="state" style="color:{colour}">{esc(state.replace("_", " "))}</span>'


def counts_bar(counts: Mapping[str, int], total: int, *, big: bool = False) -> str:
    """A bar with one coloured segment per counter, in BAR_ORDER."""
    segments = []
    for name in BAR_ORDER:
        n = int(counts.get(name, 0))
        if n and total:
            segments.append(f'<span title="{esc(name)}: {n}" style="width:{100 * n / total:.2f}%;'
                            f'background:{STATE_COLOURS[name]}"></span>')
    return f'<span class="{"big bar" if big else "bar"}">{"".join(segments)}</span>'


def query(base: str, params: Mapping[str, object]) -> str:
    """`base` with the non-empty `params` as its query string (escaped for an attribute)."""
    kept = {k: str(v) for k, v in params.items() if v not in (None, "")}
    return esc(f"{base}?{urlencode(kept)}" if kept else base)


def usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.3f}"


def when(ts: float | None) -> str:
    return "-" if not ts else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds == 0:
        return "done"
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    return time.strftime("%H:%M:%S", time.gmtime(seconds))
