"""The chart on a batch's page: completions and 429s per minute, and items in flight, over
the batch's life, drawn as inline SVG from its series (`genbatch/store/series.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from genbatch.console.html import STATE_COLOURS, esc
from genbatch.models import Counter
from genbatch.store.series import Point

WIDTH, PANEL_H, PAD_L, PAD_R, GAP = 760, 110, 48, 12, 26
RATE_LIMITED = "#e8590c"


@dataclass(frozen=True, slots=True)
class Rates:
    """Per interval between samples: its end (s since the first sample) and the rates."""

    t: list[float]
    done_per_min: list[float]
    limited_per_min: list[float]
    in_flight: list[float]


def rates(points: Sequence[Point]) -> Rates:
    """Per-minute rates of the cumulative counters between consecutive samples."""
    out = Rates([], [], [], [])
    if not points:
        return out
    t0 = points[0].t
    out.t.append(0.0)
    out.done_per_min.append(0.0)
    out.limited_per_min.append(0.0)
    out.in_flight.append(float(points[0].values.get(Counter.IN_FLIGHT, 0)))
    for a, b in pairwise(points):
        dt = max(b.t - a.t, 1e-9)
        out.t.append(b.t - t0)
        out.done_per_min.append(max(0, b.done - a.done) * 60 / dt)
        limited = b.values.get("rate_limited", 0) - a.values.get("rate_limited", 0)
        out.limited_per_min.append(max(0, limited) * 60 / dt)
        out.in_flight.append(float(b.values.get(Counter.IN_FLIGHT, 0)))
    return out


def svg(points: Sequence[Point]) -> str:
    """Two panels sharing the time axis; a note instead when there are too few samples."""
    r = rates(points)
    if len(r.t) < 2:
        return '<p class="muted">Not enough samples yet for a chart (one every few seconds ' \
               "while the batch runs).</p>"
    span = r.t[-1] or 1.0
    top = _panel(r.t, span, [(r.done_per_min, STATE_COLOURS[Counter.SUCCEEDED], "completed / min"),
                             (r.limited_per_min, RATE_LIMITED, "429s / min")], y0=0)
    bottom = _panel(r.t, span, [(r.in_flight, STATE_COLOURS[Counter.IN_FLIGHT], "in flight")],
                    y0=PANEL_H + GAP)
    height = 2 * PANEL_H + GAP + 20
    axis = (f'<text x="{PAD_L}" y="{height - 4}">0</text>'
            f'<text x="{WIDTH - PAD_R}" y="{height - 4}" text-anchor="end">'
            f"{esc(_span_text(span))}</text>")
    return (f'<svg class="chart" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-size="11" font-family="sans-serif" '
            f'role="img" aria-label="completions, 429s and in flight over time">'
            f"{top}{bottom}{axis}</svg>")


def _panel(t: list[float], span: float, lines: list[tuple[list[float], str, str]],
           y0: float) -> str:
    peak = max(max(values) for values, _, _ in lines) or 1.0
    inner = WIDTH - PAD_L - PAD_R
    parts = [f'<rect x="{PAD_L}" y="{y0}" width="{inner}" height="{PANEL_H}" fill="#f8f9fa" '
             f'stroke="#dee2e6"/>',
             f'<text x="{PAD_L - 4}" y="{y0 + 10}" text-anchor="end">{_num(peak)}</text>',
             f'<text x="{PAD_L - 4}" y="{y0 + PANEL_H}" text-anchor="end">0</text>']
    for n, (values, colour, label) in enumerate(lines):
        coords = " ".join(
            f"{PAD_L + inner * x / span:.1f},{y0 + PANEL_H - PANEL_H * v / peak:.1f}"
            for x, v in zip(t, values, strict=True))
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                     f'stroke-width="2"/>')
        parts.append(f'<text x="{PAD_L + 8 + 120 * n}" y="{y0 + 14}" fill="{colour}">'
                     f"{esc(label)}</text>")
    return "".join(parts)


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def _span_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
