"""Laying out a chart (formats.charts): axes, ticks, bars, lines, areas, pie wedges, legend, as
shapes (formats.chartpaint) drawn by reportlab's graphics in the PDF and by Pillow as the email's
PNG. Chosen over matplotlib by measurement (bench/charts.py, figures in bench/README.md):
matplotlib is a new dependency of about 60 MB with numpy, imports in several hundred
milliseconds and draws slower; these shapes need only libraries reportlab already brings.

Every chart is laid out here, not by a chart widget, so the coordinates of each drawn point are
known: `Chart.drawn` lists them (x label, series, value, and the point's position in the
drawing), and the writers export them beside the picture for checking.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from reporthubd.formats import chartpaint, pdffonts
from reporthubd.formats.chartpaint import Drawing, Line, Polygon, PolyLine, Rect, String, Wedge
from reporthubd.formats.charts import ChartPoints, ChartType

PALETTE: Final = (
    "#2563eb",
    "#f59e0b",
    "#10b981",
    "#ef4444",
    "#8b5cf6",
    "#0ea5e9",
    "#84cc16",
    "#64748b",
)
FONT: Final = pdffonts.REGULAR
PNG_SCALE: Final = 2.0
"""The email's PNG has twice the drawing's size in pixels: sharp on a phone's screen."""


@dataclass
class Chart:
    drawing: Drawing
    drawn: list[dict[str, Any]] = field(default_factory=list)
    """One entry per drawn data point: label, series, value, and x/y in drawing units."""
    zero_y: float | None = None
    """The value axis's zero line (axes charts)."""
    points: ChartPoints | None = None
    """The data it draws."""


def nice_ticks(high: float, low: float = 0.0, count: int = 5) -> list[float]:
    """Round tick values covering low..high (0 included)."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def draw(points: ChartPoints, tick_text: Callable[[float], str]) -> Chart:
    """The chart as a reportlab Drawing of `spec.width` × `spec.height` points."""
    pdffonts.font(FONT)  # registered before any String uses it
    spec = points.spec
    d = Drawing(spec.width, spec.height)
    chart = Chart(drawing=d, points=points)
    top = spec.height - 6
    if spec.title:
        d.add(String(8, top - 10, spec.title, fontName=FONT, fontSize=10, fillColor="#111827"))
        top -= 18
    if spec.type is ChartType.PIE:
        _pie(chart, points, top)
    else:
        _axes_chart(chart, points, top, tick_text)
    note = _omitted_note(points)
    if note:
        d.add(String(8, 3, note, fontName=FONT, fontSize=6.5, fillColor="#6b7280"))
    return chart


def _omitted_note(points: ChartPoints) -> str:
    parts = []
    if points.omitted_points:
        parts.append(f"{points.omitted_points:,} rows past the first {len(points.labels)} x values")
    if points.omitted_series:
        parts.append(f"{points.omitted_series} more series")
    return ("Not drawn: " + "; ".join(parts)) if parts else ""


def _legend(d: Drawing, names: list[str], x: float, y: float, width: float) -> float:
    """One row (or more) of coloured squares and names; returns the height used."""
    if len(names) <= 1:
        return 0.0
    cx, cy = x, y
    family = pdffonts.FontFamily(FONT, 7)
    for i, name in enumerate(names):
        text = name[:30]
        w = 12 + family.width(text) + 10
        if cx + w > x + width and cx > x:
            cx, cy = x, cy - 11
        d.add(Rect(cx, cy, 7, 7, fillColor=PALETTE[i % len(PALETTE)], strokeColor=None))
        d.add(String(cx + 10, cy, text, fontName=FONT, fontSize=7, fillColor="#374151"))
        cx += w
    return y - cy + 12


def _axes_chart(
    chart: Chart, points: ChartPoints, top: float, tick_text: Callable[[float], str]
) -> None:
    d, spec = chart.drawing, points.spec
    legend = _legend(d, points.series, 48, top - 8, spec.width - 56)
    top -= legend
    flat = [v for row in points.values for v in row] or [0.0]
    ticks = nice_ticks(max(flat), min(flat))
    family = pdffonts.FontFamily(FONT, 7)
    tick_labels = [tick_text(t) for t in ticks]
    left = 8 + max(family.width(t) for t in tick_labels) + 4
    right = spec.width - 8
    n = len(points.labels)
    label_family = pdffonts.FontFamily(FONT, 7)
    slot = (right - left) / max(n, 1)
    longest = max((label_family.width(t[:24]) for t in points.labels), default=0.0)
    rotate = longest > slot - 4
    bottom = 14 + (min(longest, spec.height * 0.4) * 0.72 if rotate else 6)
    height = max(top - bottom, 20.0)
    lo, hi = ticks[0], ticks[-1]

    def y_of(value: float) -> float:
        return bottom + (value - lo) / (hi - lo) * height

    for t, text in zip(ticks, tick_labels, strict=True):
        y = y_of(t)
        d.add(Line(left, y, right, y, strokeColor="#e5e7eb", strokeWidth=0.5))
        d.add(
            String(
                left - 4,
                y - 2.5,
                text,
                fontName=FONT,
                fontSize=7,
                fillColor="#4b5563",
                textAnchor="end",
            )
        )
    zero = y_of(0.0)
    chart.zero_y = round(zero, 2)
    d.add(Line(left, zero, right, zero, strokeColor="#6b7280", strokeWidth=0.7))
    step = max(1, math.ceil(n / max(1, int((right - left) / 14)))) if rotate else 1
    for i, text in enumerate(points.labels):
        if i % step:
            continue
        cx = left + slot * (i + 0.5)
        if rotate:
            d.add(
                String(
                    cx + 2,
                    bottom - 6,
                    text[:24],
                    fontName=FONT,
                    fontSize=7,
                    fillColor="#4b5563",
                    textAnchor="end",
                    rotate=45,
                )
            )
        else:
            d.add(
                String(
                    cx,
                    bottom - 10,
                    text[:24],
                    fontName=FONT,
                    fontSize=7,
                    fillColor="#4b5563",
                    textAnchor="middle",
                )
            )
    count = len(points.series)
    if spec.type is ChartType.BAR:
        inner = slot * 0.8
        bar = inner / max(count, 1)
        for s, row in enumerate(points.values):
            color = PALETTE[s % len(PALETTE)]
            for i, value in enumerate(row):
                x = left + slot * i + slot * 0.1 + bar * s
                y = y_of(value)
                d.add(
                    Rect(
                        x,
                        min(y, zero),
                        bar * 0.92,
                        abs(y - zero),
                        fillColor=color,
                        strokeColor=None,
                    )
                )
                chart.drawn.append(_point(points, s, i, value, x + bar * 0.46, y))
        return
    for s, row in enumerate(points.values):
        color = PALETTE[s % len(PALETTE)]
        coords: list[float] = []
        for i, value in enumerate(row):
            x, y = left + slot * (i + 0.5), y_of(value)
            coords += [x, y]
            chart.drawn.append(_point(points, s, i, value, x, y))
        if spec.type is ChartType.AREA and coords:
            polygon = [coords[0], zero, *coords, coords[-2], zero]
            d.add(Polygon(polygon, fillColor=color, fillOpacity=0.25, strokeColor=None))
        if len(coords) >= 4:
            d.add(PolyLine(coords, strokeColor=color, strokeWidth=1.6))
        elif coords:
            d.add(Rect(coords[0] - 2, coords[1] - 2, 4, 4, fillColor=color, strokeColor=None))


def _pie(chart: Chart, points: ChartPoints, top: float) -> None:
    d, spec = chart.drawing, points.spec
    values = points.values[0] if points.values else []
    total = sum(v for v in values if v > 0)
    radius = max(min((top - 12) / 2, spec.width / 4), 10.0)
    cx, cy = 12 + radius, (top + 8) / 2
    angle = 90.0
    legend_x = cx + radius + 24
    family_size = 7.5
    for i, (label, value) in enumerate(zip(points.labels, values, strict=True)):
        color = PALETTE[i % len(PALETTE)]
        share = value / total if total > 0 and value > 0 else 0.0
        sweep = share * 360
        if sweep > 0:
            if sweep >= 359.999:
                wedge = Wedge(cx, cy, radius, 0, 360, fillColor=color, strokeColor="#ffffff")
            else:
                wedge = Wedge(
                    cx,
                    cy,
                    radius,
                    angle - sweep,
                    angle,
                    fillColor=color,
                    strokeColor="#ffffff",
                    strokeWidth=0.8,
                )
            d.add(wedge)
        middle = math.radians(angle - sweep / 2)
        chart.drawn.append(
            _point(
                points,
                0,
                i,
                value,
                cx + radius * 0.6 * math.cos(middle),
                cy + radius * 0.6 * math.sin(middle),
            )
            | {"share": round(share, 6)}
        )
        angle -= sweep
        y = top - 14 - i * 12
        if y > 4:
            d.add(Rect(legend_x, y, 8, 8, fillColor=color, strokeColor=None))
            d.add(
                String(
                    legend_x + 12,
                    y + 1,
                    f"{label[:40]}  {share * 100:.1f} %",
                    fontName=FONT,
                    fontSize=family_size,
                    fillColor="#374151",
                )
            )


def _point(points: ChartPoints, s: int, i: int, value: float, x: float, y: float) -> dict[str, Any]:
    return {
        "label": points.labels[i],
        "series": points.series[s],
        "value": value,
        "x": round(x, 2),
        "y": round(y, 2),
    }


def png(chart: Chart) -> bytes:
    """The chart as a PNG of PNG_SCALE pixels per point."""
    return chartpaint.to_png(chart.drawing, PNG_SCALE)


def reportlab_drawing(chart: Chart) -> Any:
    """The chart as a reportlab Drawing (vector), for the PDF."""
    return chartpaint.to_reportlab(chart.drawing)
