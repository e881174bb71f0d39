"""Small server-side SVG charts: a line chart (time or numeric x) and bar charts, no JavaScript.

Every label passes through ``escape``; the result is a SafeString ready for a template.
Each chart carries a <title> and an aria-label so that it reads without seeing it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#1f6feb", "#d9480f", "#2f9e44", "#7048e8", "#c2255c", "#0b7285", "#5c940d", "#495057")
FONT = 'font-family="system-ui, sans-serif" font-size="11"'
TITLE_FONT = 'font-family="system-ui, sans-serif" font-size="13"'  # one font-size each: a second is invalid SVG
CHAR_W = 6.5  # about how wide a character of FONT is, in px: margins are sized from the labels they hold


def _text_w(text: str) -> float:
    return CHAR_W * len(text)


def _fit(text: str, width: float) -> str:
    """The text, cut with an ellipsis to fit ``width`` px (the whole text stays in the element's title)."""
    most = max(1, int(width // CHAR_W))
    return text if len(text) <= most else text[: most - 1] + "…"


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float | datetime, float]]
    color: str | None = None
    step: bool = False  # a level that holds until the next point (stock), not a trend
    dashed: bool = False
    markers: bool = False


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k) covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + 1
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _time_ticks(low: datetime, high: datetime, count: int = 6) -> list[tuple[datetime, str]]:
    span = (high - low).total_seconds()
    if span <= 0:
        return [(low, timezone.localtime(low).strftime("%d %b %H:%M"))]
    fmt = "%H:%M" if span <= 36 * 3600 else ("%a %d %b" if span <= 10 * 86400 else "%d %b")
    ticks = []
    for i in range(count + 1):
        at = low + timedelta(seconds=span * i / count)
        ticks.append((at, timezone.localtime(at).strftime(fmt)))
    return ticks


def _empty(title: str, width: int, height: int, message: str) -> SafeString:
    return mark_safe(  # every dynamic part is escaped
        f'<svg class="chart empty" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}: {escape(message)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>"
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#fafbfc" stroke="#d9dee6" rx="6"/>'
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#5d6b7e" {FONT}>{escape(message)}</text>'
        "</svg>"
    )


def line_chart(
    *,
    series: Sequence[Series],
    title: str,
    y_label: str = "",
    x_label: str = "",
    width: int = 640,
    height: int = 260,
    y_min: float | None = 0,
    x_min: float | None = None,
    empty_message: str = "No data yet",
) -> SafeString:
    """Lines over a shared x axis (datetimes or numbers), with axes, ticks, gridlines and a legend."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return _empty(title, width, height, empty_message)
    is_time = isinstance(drawn[0].points[0][0], datetime)

    def xnum(x: float | datetime) -> float:
        return x.timestamp() if isinstance(x, datetime) else float(x)

    xs = [xnum(x) for s in drawn for x, _ in s.points]
    ys = [float(y) for s in drawn for _, y in s.points]
    x_lo, x_hi = min(xs), max(xs)
    if x_min is not None and not is_time:
        x_lo = min(x_lo, x_min)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_lo = min(ys) if y_min is None else min(y_min, min(ys))
    y_ticks = nice_ticks(y_lo, max(ys) if max(ys) > y_lo else y_lo + 1)
    y_lo, y_hi = y_ticks[0], y_ticks[-1]
    # Room for the widest y tick label (and the y axis title), and half of the last x tick label.
    y_tick_w = max(_text_w(_fmt(t)) for t in y_ticks)
    left = int(max(54, y_tick_w + 12 + (16 if y_label else 0)))
    right, top, bottom = 14, 30, 40 if not x_label else 52
    legend_rows = len(_legend_rows([s.name for s in drawn], 54, width))
    bottom += 16 * legend_rows
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h

    parts = [
        f'<svg class="chart line-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text x="8" y="18" font-weight="600" fill="#1d2430" {TITLE_FONT}>'
        f"{escape(_fit(title, (width - 16) * 11 / 13))}</text>",
    ]
    for tick in y_ticks:
        y = py(tick)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eef1f5"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#5d6b7e" {FONT}>{_fmt(tick)}</text>'
        )
    if is_time:
        lo_dt = datetime.fromtimestamp(x_lo, tz=timezone.get_current_timezone())
        hi_dt = datetime.fromtimestamp(x_hi, tz=timezone.get_current_timezone())
        x_ticks = [(t.timestamp(), label) for t, label in _time_ticks(lo_dt, hi_dt)]
    else:
        x_ticks = [(t, _fmt(t)) for t in nice_ticks(x_lo, x_hi, 6) if x_lo <= t <= x_hi]
    for x, label in x_ticks:
        xp = px(x)
        # A label that would run past either edge is anchored to its tick's inner side instead.
        anchor = "middle"
        if xp + _text_w(label) / 2 > width - 2:
            anchor = "end"
        elif xp - _text_w(label) / 2 < 2:
            anchor = "start"
        parts.append(
            f'<line x1="{xp:.1f}" x2="{xp:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}" stroke="#8b95a5"/>'
        )
        parts.append(
            f'<text x="{xp:.1f}" y="{top + plot_h + 16}" text-anchor="{anchor}" fill="#5d6b7e" {FONT}>'
            f"{escape(label)}</text>"
        )
    parts.append(
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#8b95a5"/>'
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#8b95a5"/>'
    )
    if y_label:
        parts.append(
            f'<text transform="translate(13 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle" '
            f'fill="#5d6b7e" {FONT}>{escape(y_label)}</text>'
        )
    if x_label:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 32}" text-anchor="middle" fill="#5d6b7e" {FONT}>'
            f"{escape(x_label)}</text>"
        )
    for i, s in enumerate(drawn):
        color = s.color or PALETTE[i % len(PALETTE)]
        points = sorted((xnum(x), float(y)) for x, y in s.points)
        coords: list[str] = []
        for j, (x, y) in enumerate(points):
            if s.step and j:
                coords.append(f"{px(x):.1f},{py(points[j - 1][1]):.1f}")
            coords.append(f"{px(x):.1f},{py(y):.1f}")
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        parts.append(
            f'<polyline class="series" data-series="{escape(s.name)}" fill="none" stroke="{color}" '
            f'stroke-width="2" stroke-linejoin="round"{dash} points="{" ".join(coords)}"/>'
        )
        if s.markers or len(points) == 1:
            for x, y in points:
                parts.append(
                    f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}">'
                    f"<title>{escape(s.name)}: {_fmt(y)}</title></circle>"
                )
    parts.extend(
        _legend([(s.name, s.color or PALETTE[i % len(PALETTE)]) for i, s in enumerate(drawn)], left, height, width)
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every dynamic part is escaped


def _legend_rows(names: Sequence[str], left: int, width: int) -> list[list[tuple[int, float]]]:
    """Lay entries out left to right, each as wide as its text (about 6.5 px a character), wrapping at the edge."""
    rows: list[list[tuple[int, float]]] = [[]]
    x = float(left)
    for i, name in enumerate(names):
        span = 17 + 6.5 * len(name) + 22
        if rows[-1] and x + span > width:
            rows.append([])
            x = float(left)
        rows[-1].append((i, x))
        x += span
    return rows


def _legend(entries: Sequence[tuple[str, str]], left: int, height: int, width: int) -> list[str]:
    rows = _legend_rows([name for name, _ in entries], left, width)
    parts = ['<g class="legend">']
    for row, placed in enumerate(rows):
        y = height - 16 * (len(rows) - row) + 2
        for i, x in placed:
            name, color = entries[i]
            parts.append(f'<rect x="{x:.0f}" y="{y - 8}" width="12" height="4" fill="{color}" rx="1"/>')
            parts.append(f'<text x="{x + 17:.0f}" y="{y - 3}" fill="#1d2430" {FONT}>{escape(name)}</text>')
    parts.append("</g>")
    return parts


def bar_chart(
    *,
    bars: Sequence[tuple[str, float]],
    title: str,
    unit: str = "",
    width: int = 640,
    bar_height: int = 22,
    colors: Sequence[str] | None = None,
    limit: float | None = None,
    limit_label: str = "",
    empty_message: str = "No data yet",
    value_text: Callable[[float], str] | None = None,
) -> SafeString:
    """Horizontal bars, one per label, with an optional limit line. Labels longer than the label column
    (at most 40 % of the width) are cut with an ellipsis, the whole label in the bar's title; the right
    margin fits the longest value. ``value_text`` formats a value (e.g. a duration) instead of ``unit``."""
    if not bars:
        return _empty(title, width, 90, empty_message)

    def shown_of(value: float) -> str:
        return value_text(value) if value_text else f"{_fmt(value)}{(' ' + unit) if unit else ''}"

    label_w = min(width * 0.4, max(70, _text_w(max((label for label, _ in bars), key=len))))
    left, top = int(label_w + 12), 30 if limit is None else 44  # a limit's label sits under the title
    right = int(max(40, max(_text_w(shown_of(v)) for _, v in bars) + 12))
    height = top + len(bars) * (bar_height + 8) + 28
    plot_w = width - left - right
    high = max([v for _, v in bars] + ([limit] if limit else []) + [1])
    ticks = nice_ticks(0, high, 4)
    x_hi = ticks[-1]

    def px(v: float) -> float:
        return left + max(0.0, v) / x_hi * plot_w

    parts = [
        f'<svg class="chart bar-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text x="8" y="18" font-weight="600" fill="#1d2430" {TITLE_FONT}>'
        f"{escape(_fit(title, (width - 16) * 11 / 13))}</text>",
    ]
    axis_y = top + len(bars) * (bar_height + 8)
    for tick in ticks:
        x = px(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{axis_y}" stroke="#eef1f5"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle" fill="#5d6b7e" {FONT}>{_fmt(tick)}</text>'
        )
    for i, (label, value) in enumerate(bars):
        y = top + i * (bar_height + 8)
        color = colors[i] if colors else PALETTE[0]
        shown = shown_of(value)
        parts.append(
            f'<text x="{left - 8}" y="{y + bar_height / 2 + 4:.1f}" text-anchor="end" fill="#1d2430" {FONT}>'
            f"<title>{escape(label)}</title>{escape(_fit(label, label_w))}</text>"
        )
        parts.append(
            f'<rect class="bar" x="{left}" y="{y}" width="{max(1.0, px(value) - left):.1f}" height="{bar_height}" '
            f'fill="{color}" rx="3"><title>{escape(label)}: {escape(shown)}</title></rect>'
        )
        parts.append(
            f'<text x="{px(value) + 5:.1f}" y="{y + bar_height / 2 + 4:.1f}" fill="#1d2430" {FONT}>'
            f"{escape(shown)}</text>"
        )
    if limit is not None:
        x = px(limit)
        # The label reads to the right of the line, or to its left where it would run off the chart.
        fits_right = x + 3 + _text_w(limit_label) <= width - 2
        anchor, label_x = ("start", x + 3) if fits_right else ("end", x - 3)
        parts.append(
            f'<line class="limit" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{axis_y}" stroke="#c62828" '
            f'stroke-dasharray="4 3"/><text x="{label_x:.1f}" y="{top - 8}" text-anchor="{anchor}" fill="#c62828" '
            f"{FONT}>{escape(limit_label)}</text>"
        )
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top - 4}" y2="{axis_y}" stroke="#8b95a5"/>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every dynamic part is escaped
