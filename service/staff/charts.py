"""Server-rendered SVG charts for `/staff/insights`: no JavaScript, no CDN. Each chart is an
`<svg role="img">` with a `<title>` and a `<desc>` (the page puts its data table beside it).
Every number and label is escaped; the colours are CSS variables, so dark mode follows."""
from __future__ import annotations

from collections.abc import Callable, Sequence
import math
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 78, 24, 16, 44
# Series k is drawn with the class `s{k}` (style.css: --chart-1..8, distinct in hue and lightness,
# dark mode too) and lines also differ by dash, so colour is never the only difference.
DASHES = ("", "6 3", "2 3", "8 3 2 3", "", "6 3", "2 3", "8 3 2 3")


def _cls(k: int) -> str:
    return f"s{k % 8 + 1}"


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


def nice_top(value: float, *, whole: bool = False) -> float:
    """The axis's top: four gridline steps of 1, 2 or 5 times a power of ten, so every gridline
    falls on a round figure (`whole`: counts, never a fractional step)."""
    if value <= 0:
        return 4.0 if whole else 1.0
    quarter = value / 4
    power = 10 ** math.floor(math.log10(quarter))
    for factor in (1, 2, 5, 10):
        step = factor * power
        if step >= quarter and (not whole or step == int(step)):
            return step * 4
    return 40 * power


def _frame(chart_id: str, title: str, description: str, labels: Sequence[str], top: float,
           fmt: Callable[[float], str]) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    out = [f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" preserveAspectRatio="xMidYMid meet">',
           f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
           f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>']
    for k in range(5):  # the grid and the y axis's figures
        y = TOP + plot_h - plot_h * k / 4
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(top * k / 4))}</text>')
    every = max(1, -(-len(labels) // 6))  # at most 6 labels under the x axis
    for i, label in enumerate(labels):
        if i % every == 0:
            x = _x(i, len(labels))
            anchor = "end" if x > WIDTH - RIGHT - 40 else "start" if x < LEFT + 30 else "middle"
            out.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - BOTTOM + 20}" text-anchor="{anchor}">'
                       f'{escape(label)}</text>')
    return out


def _x(i: int, n: int) -> float:
    plot_w = WIDTH - LEFT - RIGHT
    return LEFT + (plot_w * (i + 0.5) / n if n else 0)


def _y(value: float, top: float) -> float:
    plot_h = HEIGHT - TOP - BOTTOM
    return TOP + plot_h - plot_h * (value / top if top else 0)


def line_chart(chart_id: str, title: str, description: str, labels: Sequence[str], series: Sequence[Series],
               fmt: Callable[[float], str] = lambda v: f"{v:,.0f}", top: float | None = None,
               whole: bool = True) -> Markup:
    """One line per series (missing values break the line), with a point on each value."""
    highest = max([v for s in series for v in s.values if v is not None] or [0])
    top = top or nice_top(highest, whole=whole)
    out = _frame(chart_id, title, description, labels, top, fmt)
    for k, s in enumerate(series):
        cls, dash = _cls(k), DASHES[k % len(DASHES)]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(s.values):
            if v is None:
                runs.append([])
                continue
            runs[-1].append(f"{_x(i, len(labels)):.1f},{_y(v, top):.1f}")
            out.append(f'<circle class="{cls}" cx="{_x(i, len(labels)):.1f}" cy="{_y(v, top):.1f}" r="3">'
                       f'<title>{escape(s.name)}, {escape(labels[i])}: {escape(fmt(v))}</title></circle>')
        for run in runs:
            if len(run) > 1:
                out.append(f'<polyline class="{cls}" stroke-dasharray="{dash}" points="{" ".join(run)}"/>')
    out.append("</svg>")
    return Markup("\n".join(out))


def bar_chart(chart_id: str, title: str, description: str, labels: Sequence[str], series: Sequence[Series],
              fmt: Callable[[float], str] = lambda v: f"{v:,.0f}") -> Markup:
    """Grouped bars: one bar per series in each period."""
    highest = max([v for s in series for v in s.values if v is not None] or [0])
    top = nice_top(highest, whole=True)
    out = _frame(chart_id, title, description, labels, top, fmt)
    n = len(labels)
    slot = (WIDTH - LEFT - RIGHT) / n if n else 0
    width = max(1.0, slot * 0.8 / max(1, len(series)))
    for k, s in enumerate(series):
        cls = _cls(k)
        for i, v in enumerate(s.values):
            if not v:
                continue
            x = LEFT + slot * i + slot * 0.1 + width * k
            y = _y(v, top)
            out.append(f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                       f'height="{HEIGHT - BOTTOM - y:.1f}"><title>{escape(s.name)}, {escape(labels[i])}: {escape(fmt(v))}</title></rect>')
    out.append("</svg>")
    return Markup("\n".join(out))


def legend(series: Sequence[Series]) -> Markup:
    items = "".join(f'<li><svg class="swatch" viewBox="0 0 24 10" aria-hidden="true"><line class="{_cls(k)}" '
                    f'x1="0" x2="24" y1="5" y2="5" stroke-dasharray="{DASHES[k % len(DASHES)]}"/></svg>'
                    f'{escape(s.name)}</li>' for k, s in enumerate(series))
    return Markup(f'<ul class="legend">{items}</ul>')
