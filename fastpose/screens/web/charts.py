"""Line charts as inline SVG, drawn on the server: no JavaScript, nothing downloaded, and a page that shows its
curves the moment it arrives (and in a screenshot). One ``<g class="series">`` per run or group, so a test (or
a reader of the page) can count them.

| part            | what it is                                                                        |
| --------------- | --------------------------------------------------------------------------------- |
| ``Series``      | one curve: a name, its points ``(epoch, value)``, a colour, dashed or not         |
| ``line_chart``  | one metric's panel: axes with ~5 round ticks, one polyline per series, points with their value as a tooltip (``<title>``) |
| ``colour``      | the i-th colour of ``PALETTE`` (Tableau 10, told apart by most colour-blind readers) |

Only SVG presentation attributes are used (no ``style``), so the Content-Security-Policy can forbid inline
styles too. Non-finite values break the line; every text is escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from markupsafe import Markup, escape

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
MARKERS_UP_TO = 60  # points per series drawn as dots (with a tooltip); longer curves are lines only
MAX_POINTS = 600  # longer curves are thinned to this many points (every k-th, the last kept)


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]  # (x, y); y may be NaN (a gap)
    colour: str
    dashed: bool = False
    extra: list[tuple[float, float]] = field(default_factory=list)  # drawn dashed before ``points`` (a parent's)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round numbers covering ``[lo, hi]`` (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9 and len(ticks) < 50:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e5:
        return f"{v:.4g}"
    return f"{v:.2e}"


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    k = math.ceil(len(points) / MAX_POINTS)
    return points[::k] + ([points[-1]] if (len(points) - 1) % k else [])


def line_chart(title: str, series: list[Series], *, width: int = 330, height: int = 190, x_label: str = "epoch",
               direction: str | None = None) -> Markup:
    """One panel: ``title`` over the plot of every series (x: ``x_label``). ``direction`` (min|max) adds
    "lower is better" or "higher is better" to the title's tooltip."""
    left, right, top, bottom = 52, 10, 24, 30
    pw, ph = width - left - right, height - top - bottom
    drawn = [(s, _thin(s.extra), _thin(s.points)) for s in series]
    xs = [x for _, e, p in drawn for x, _ in e + p]
    ys = [y for _, e, p in drawn for _, y in e + p if math.isfinite(y)]
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">']
    hint = {"min": " (lower is better)", "max": " (higher is better)"}.get(direction or "", "")
    out.append(f'<title>{escape(title + hint)}</title>')
    out.append(f'<text class="chart-title" x="{left}" y="15">{escape(title)}</text>')
    if not xs or not ys:
        out.append(f'<text class="chart-empty" x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle">'
                   'no finite values</text></svg>')
        return Markup("".join(out))
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        pad = abs(y0) * 0.1 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    else:
        pad = (y1 - y0) * 0.06
        y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        return round(left + (x - x0) / (x1 - x0) * pw, 1)

    def py(y: float) -> float:
        return round(top + (1 - (y - y0) / (y1 - y0)) * ph, 1)

    out.append(f'<rect class="plot" x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none"/>')
    for t in nice_ticks(y0, y1):
        y = py(t)
        out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y}" y2="{y}"/>'
                   f'<text class="tick" x="{left - 4}" y="{y + 3}" text-anchor="end">{_fmt(t)}</text>')
    xticks = [t for t in nice_ticks(x0, x1) if float(t).is_integer()] or [x0, x1]
    for t in xticks:
        x = px(t)
        out.append(f'<line class="axis" x1="{x}" x2="{x}" y1="{top + ph}" y2="{top + ph + 4}"/>'
                   f'<text class="tick" x="{x}" y="{top + ph + 15}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<text class="axis-label" x="{left + pw}" y="{height - 2}" text-anchor="end">{escape(x_label)}</text>')
    for s, extra, points in drawn:
        name = escape(s.name)
        out.append(f'<g class="series" data-series="{name}"><title>{name}</title>')
        if extra:
            out.extend(_lines(extra + points[:1], px, py, s.colour, dashed=True))
        out.extend(_lines(points, px, py, s.colour, dashed=s.dashed))
        if len(points) <= MARKERS_UP_TO:
            for x, y in points:
                if math.isfinite(y):
                    out.append(f'<circle cx="{px(x)}" cy="{py(y)}" r="2.5" fill="{s.colour}">'
                               f'<title>{name} · {escape(x_label)} {_fmt(x)}: {_fmt(y)}</title></circle>')
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))


def _lines(points: list[tuple[float, float]], px, py, stroke: str, dashed: bool) -> list[str]:  # noqa: ANN001
    """One polyline per run of finite values (a NaN breaks the line)."""
    runs: list[list[str]] = [[]]
    for x, y in points:
        if math.isfinite(y):
            runs[-1].append(f"{px(x)},{py(y)}")
        elif runs[-1]:
            runs.append([])
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    return [f'<polyline points="{" ".join(r)}" fill="none" stroke="{stroke}" stroke-width="1.8"{dash}/>'
            for r in runs if r]
