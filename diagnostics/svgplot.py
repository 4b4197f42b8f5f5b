"""One plot of a check (the schema in :mod:`diagnostics.report`) as inline SVG: pure string building.

No plotting library, no fonts to load, no scripts: the SVG is text in the HTML report and
opens offline anywhere. Every text (title, labels, series names) is escaped here, so the
caller may mark the result safe.

Layout of a ``width`` × ``height`` figure (:func:`plot_area`)::

    title
    legend (one swatch per series)
          ┌──────────────────────────────┐
     tick │ data, dashed hlines / vlines │
          └──────────────────────────────┘
             ticks, x label

Axes: linear axes run between "nice" tick values (1, 2, 5 × 10ⁿ) around the data and the
lines; a log x axis (``x_log``) runs from the smallest to the largest positive x, ticked at
1, 2, 5 per decade. A ``y_range`` fixes the y axis; values beyond it are drawn at its edge
and lines beyond it are left out.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["HEIGHT", "WIDTH", "Axis", "Box", "plot_area", "render_svg", "x_axis", "y_axis"]

WIDTH = 560
HEIGHT = 270
MARGIN_LEFT = 64.0
MARGIN_RIGHT = 24.0
MARGIN_TOP = 50.0  # title and legend
MARGIN_BOTTOM = 44.0  # tick labels and x label
TARGET_TICKS = 6
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"  # local fonts only
# Okabe–Ito colours: told apart with every common colour-vision deficiency.
COLORS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
LINE_COLOR = "#555555"
GRID_COLOR = "#e4e4e4"
CHAR_WIDTH = 6.2  # average width of an 11 px sans-serif character: enough to lay out the legend


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(value: float) -> str:
    """A pixel coordinate: a tenth of a pixel is finer than any screen."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


@dataclass(frozen=True)
class Box:
    """The data area of a figure, in pixels from the top left corner."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top


def plot_area(width: int = WIDTH, height: int = HEIGHT) -> Box:
    return Box(MARGIN_LEFT, MARGIN_TOP, width - MARGIN_RIGHT, height - MARGIN_BOTTOM)


@dataclass(frozen=True)
class Axis:
    """Maps values in [lo, hi] to pixels in [start_px, end_px] (for y, start is the bottom)."""

    lo: float
    hi: float
    start_px: float
    end_px: float
    log: bool = False
    ticks: tuple[float, ...] = ()

    def fraction(self, value: float) -> float:
        if self.log:
            return (math.log10(value) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (value - self.lo) / (self.hi - self.lo)

    def px(self, value: float) -> float:
        """The pixel of ``value``, held to the axis' ends."""
        if self.log and value <= 0:
            return self.start_px
        fraction = min(max(self.fraction(value), 0.0), 1.0)
        return self.start_px + fraction * (self.end_px - self.start_px)

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi and (value > 0 or not self.log)

    def label(self, value: float) -> str:
        if self.log:
            return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"
        step = self.ticks[1] - self.ticks[0] if len(self.ticks) > 1 else 1.0
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        text = f"{value:.{decimals}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text


def _nice_step(span: float) -> float:
    raw = span / TARGET_TICKS
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if raw <= m * magnitude * (1 + 1e-9))


def _ticks(lo: float, hi: float, step: float) -> tuple[float, ...]:
    first = math.ceil(lo / step - 1e-9)
    count = math.floor(hi / step + 1e-9) - first + 1
    return tuple(round((first + i) * step, 12) for i in range(max(count, 0)))


def _linear(values: Sequence[float], start_px: float, end_px: float, fixed: Sequence[float] | None) -> Axis:
    if fixed is not None:
        lo, hi = float(fixed[0]), float(fixed[1])
        return Axis(lo, hi, start_px, end_px, ticks=_ticks(lo, hi, _nice_step(hi - lo)))
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-12 * max(1.0, abs(lo)):
        lo, hi = lo - max(1.0, abs(lo) * 0.1), hi + max(1.0, abs(hi) * 0.1)
    step = _nice_step(hi - lo)
    lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return Axis(lo, hi, start_px, end_px, ticks=_ticks(lo, hi, step))


def _logarithmic(values: Sequence[float], start_px: float, end_px: float) -> Axis:
    positive = [v for v in values if v > 0]
    lo, hi = (min(positive), max(positive)) if positive else (1.0, 10.0)
    if hi / lo < 1.0 + 1e-9:
        lo, hi = lo / 2.0, hi * 2.0
    ticks = [
        m * 10.0**exponent
        for exponent in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for m in (1.0, 2.0, 5.0)
    ]
    inside = tuple(t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9))
    return Axis(lo, hi, start_px, end_px, log=True, ticks=inside)


def _series(plot: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in plot.get("series") or [] if len(s.get("x") or []) == len(s.get("y") or [])]


def x_axis(plot: Mapping[str, Any], box: Box) -> Axis:
    values = [float(v) for s in _series(plot) for v in s["x"]]
    values += [float(line["x"]) for line in plot.get("vlines") or []]
    if plot.get("x_log"):
        return _logarithmic(values, box.left, box.right)
    return _linear(values, box.left, box.right, None)


def y_axis(plot: Mapping[str, Any], box: Box) -> Axis:
    values = [float(v) for s in _series(plot) for v in s["y"]]
    values += [float(line["y"]) for line in plot.get("hlines") or []]
    if plot.get("kind") == "bars":
        values.append(0.0)  # bars stand on zero
    return _linear(values, box.bottom, box.top, plot.get("y_range"))


def _points(series: Mapping[str, Any], x: Axis, y: Axis) -> list[tuple[float, float]]:
    return [(x.px(float(a)), y.px(float(b))) for a, b in zip(series["x"], series["y"], strict=True)
            if not x.log or float(a) > 0]


def _line(points: Sequence[tuple[float, float]], color: str) -> str:
    coords = " ".join(f"{_n(a)},{_n(b)}" for a, b in points)
    return f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.6" stroke-linejoin="round"/>'


def _impulses(points: Sequence[tuple[float, float]], base: float, color: str) -> str:
    path = "".join(f"M{_n(a)} {_n(base)}V{_n(b)}" for a, b in points)
    return f'<path d="{path}" stroke="{color}" stroke-width="1.2" fill="none"/>'


def _bars(points: Sequence[tuple[float, float]], base: float, width: float, offset: float, color: str) -> str:
    rects = []
    for a, b in points:
        top, height = min(b, base), abs(base - b)
        rects.append(f'<rect x="{_n(a + offset - width / 2)}" y="{_n(top)}" width="{_n(width)}" '
                     f'height="{_n(height)}" fill="{color}"/>')
    return "".join(rects)


def _bar_width(all_points: Iterable[Sequence[tuple[float, float]]], count: int, box: Box) -> float:
    gaps = [b - a for points in all_points for a, b in itertools.pairwise(sorted(p[0] for p in points)) if b > a]
    spacing = min(gaps) if gaps else box.width / 10.0
    return max(1.0, 0.8 * spacing / max(count, 1))


def _grid_and_ticks(x: Axis, y: Axis, box: Box) -> list[str]:
    parts = []
    for tick in x.ticks:
        px = x.px(tick)
        parts.append(f'<line x1="{_n(px)}" y1="{_n(box.top)}" x2="{_n(px)}" y2="{_n(box.bottom)}" '
                     f'stroke="{GRID_COLOR}"/>')
        parts.append(f'<text class="tick" x="{_n(px)}" y="{_n(box.bottom + 15)}" text-anchor="middle">'
                     f"{_esc(x.label(tick))}</text>")
    for tick in y.ticks:
        py = y.px(tick)
        parts.append(f'<line x1="{_n(box.left)}" y1="{_n(py)}" x2="{_n(box.right)}" y2="{_n(py)}" '
                     f'stroke="{GRID_COLOR}"/>')
        parts.append(f'<text class="tick" x="{_n(box.left - 6)}" y="{_n(py + 4)}" text-anchor="end">'
                     f"{_esc(y.label(tick))}</text>")
    return parts


def _halo(x: float, y: float, anchor: str, css_class: str, text: str) -> str:
    """A line's label, with a white outline so that it stays readable over the data."""
    return (f'<text class="{css_class}" x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" fill="#333" '
            f'stroke="#fff" stroke-width="3" paint-order="stroke">{_esc(text)}</text>')


def _lines(plot: Mapping[str, Any], x: Axis, y: Axis, box: Box) -> list[str]:
    parts = []
    for line in plot.get("hlines") or []:
        value = float(line["y"])
        if not y.contains(value):
            continue
        py = y.px(value)
        parts.append(f'<line class="hline" x1="{_n(box.left)}" y1="{_n(py)}" x2="{_n(box.right)}" y2="{_n(py)}" '
                     f'stroke="{LINE_COLOR}" stroke-dasharray="6 4"/>')
        parts.append(_halo(box.right - 4, py - 4, "end", "hline-label", line.get("label", "")))
    for line in plot.get("vlines") or []:
        value = float(line["x"])
        if not x.contains(value):
            continue
        px = x.px(value)
        parts.append(f'<line class="vline" x1="{_n(px)}" y1="{_n(box.top)}" x2="{_n(px)}" y2="{_n(box.bottom)}" '
                     f'stroke="{LINE_COLOR}" stroke-dasharray="3 3"/>')
        at_right = px > box.right - CHAR_WIDTH * len(str(line.get("label", ""))) - 8
        parts.append(_halo(px - 4 if at_right else px + 4, box.top + 12, "end" if at_right else "start",
                           "vline-label", line.get("label", "")))
    return parts


def _legend(series: Sequence[Mapping[str, Any]], left: float, top: float) -> list[str]:
    parts, cursor = [], left
    for index, s in enumerate(series):
        name = str(s.get("name", ""))
        if not name:
            continue
        color = COLORS[index % len(COLORS)]
        parts.append(f'<line x1="{_n(cursor)}" y1="{_n(top - 4)}" x2="{_n(cursor + 16)}" y2="{_n(top - 4)}" '
                     f'stroke="{color}" stroke-width="3"/>')
        parts.append(f'<text class="legend" x="{_n(cursor + 21)}" y="{_n(top)}">{_esc(name)}</text>')
        cursor += 21 + CHAR_WIDTH * len(name) + 18
    return parts


def render_svg(plot: Mapping[str, Any], width: int = WIDTH, height: int = HEIGHT) -> str:
    """The plot as an ``<svg>`` element for an HTML5 page (no ``xmlns``: the HTML parser supplies it)."""
    box = plot_area(width, height)
    x, y = x_axis(plot, box), y_axis(plot, box)
    series = _series(plot)
    title = str(plot.get("title", ""))
    parts = [
        f'<svg class="plot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{_esc(title)}" font-family="{_esc(FONT)}" font-size="11" fill="#222">',
        f"<title>{_esc(title)}</title>",
        f'<text class="title" x="8" y="17" font-size="13" font-weight="600">{_esc(title)}</text>',
        *_legend(series, box.left, 37),
        *_grid_and_ticks(x, y, box),
    ]
    baseline = y.px(0.0) if plot.get("kind") == "bars" and y.contains(0.0) else box.bottom
    drawn = [_points(s, x, y) for s in series]
    bar_width = _bar_width(drawn, len(series), box)
    for index, (s, points) in enumerate(zip(series, drawn, strict=True)):
        color = COLORS[index % len(COLORS)]
        if plot.get("kind") == "bars":
            offset = (index - (len(series) - 1) / 2) * bar_width
            body = _bars(points, baseline, bar_width, offset, color)
        elif plot.get("kind") == "impulse":
            body = _impulses(points, baseline, color)
        else:
            body = _line(points, color)
        parts.append(f'<g class="series" data-name="{_esc(s.get("name", ""))}">{body}</g>')
    if not any(drawn):
        parts.append(f'<text x="{_n(box.left + box.width / 2)}" y="{_n(box.top + box.height / 2)}" '
                     f'text-anchor="middle" fill="#777">no data</text>')
    parts += _lines(plot, x, y, box)
    parts += [
        f'<rect x="{_n(box.left)}" y="{_n(box.top)}" width="{_n(box.width)}" height="{_n(box.height)}" '
        f'fill="none" stroke="#999"/>',
        f'<text class="x-label" x="{_n(box.left + box.width / 2)}" y="{height - 8}" '
        f'text-anchor="middle">{_esc(plot.get("x_label", ""))}</text>',
        f'<text class="y-label" transform="translate(14 {_n(box.top + box.height / 2)}) rotate(-90)" '
        f'text-anchor="middle">{_esc(plot.get("y_label", ""))}</text>',
        "</svg>",
    ]
    return "".join(parts)
