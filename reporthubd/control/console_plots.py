"""The console's plots, drawn as inline SVG on the server: no script, no external fetch.

Each function is a pure function of its series and returns SVG text in which every piece of
text is escaped. Each plot is one image to a screen reader (`role="img"`): its `<title>` is its
name and its `<desc>` the figures in words (a screen reader reads those, not the shapes); the
page's caption under it says what it shows in prose.

The plots have no viewBox: one SVG unit is one CSS pixel, so their text is as large on a
390 px phone as on a wide screen (a viewBox of 600 units scaled 11-unit labels down to 5-6 CSS
px at 390 px). The height is fixed in pixels and every horizontal position is a percentage of
the width, so a plot still fills its box at any width and nothing is stretched: a data point
sits in the middle of its slot (`_slot`), the line joins them with `<line>` segments (which
take percentages, unlike a polyline), and value labels sit above their grid lines at the left,
with a white halo where the line passes under them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

HEIGHT = 160
"""CSS px; the grid spans GRID_TOP..GRID_BOTTOM, the row under it says oldest and newest."""
GRID_TOP = 20
GRID_BOTTOM = 134
MID = (GRID_TOP + GRID_BOTTOM) / 2
TEXT_PX = 12
"""Every label's font size in CSS px (the console's text is 14.4 px; 12 is its small print)."""
NICE_STEPS = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)
"""The grid's top figure is one of these times a power of ten (280 s: a grid of 300 and 150)."""
EMPTY_HEIGHT = 48
"""A plot with nothing to draw is one line of words."""
BAR_ROW = 42
"""A share bar's row in CSS px: its label line above, the bar under it."""

# Colours pass WCAG AA contrast (>= 3:1 for graphics, >= 4.5:1 for text) on the white plot
# background.
INK = "#1d1d1f"
GRID = "#c8c8cc"
LINE = "#1558b0"
GOOD = "#1e7e3c"
BAD = "#b3261e"
WARN = "#8a5a00"


@dataclass(frozen=True, kw_only=True)
class Point:
    value: float | None
    label: str
    """What a hover over the point says (the run, its time)."""
    bad: bool = False
    """Drawn in the failure colour (a failed run, a catch-up fire)."""


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"  # 37.5, 2.5, 0.025: a grid's middle figure is exact


def _nice(top: float) -> float:
    """The grid's top: the smallest round figure at or above `top` whose half is exact too."""
    if top <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(top))
    return next(step * scale for step in NICE_STEPS if step * scale >= top * 0.999999)


def _text(x: str, y: float, words: str, *, anchor: str = "start", halo: bool = False) -> str:
    """A label at `x` (a percentage or px) and baseline `y` px, never scaled; one anchored at
    its end keeps 2 px from the right edge."""
    ring = ' stroke="#fff" stroke-width="4" stroke-linejoin="round" paint-order="stroke"'
    shift = ' dx="-2"' if anchor == "end" else ""
    return (
        f'<text x="{x}"{shift} y="{y:.0f}" font-size="{TEXT_PX}" text-anchor="{anchor}" '
        f'fill="{INK}"{ring if halo else ""}>{escape(words)}</text>'
    )


def _frame(title: str, summary: str, height: int, body: list[str]) -> str:
    return (
        f'<svg class="plot" width="100%" height="{height}" role="img" '
        'xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title><desc>{escape(summary)}</desc>"
        f'<rect x="0" y="0" width="100%" height="100%" fill="#fff"/>' + "".join(body) + "</svg>"
    )


def _empty(title: str, words: str) -> str:
    line = _text("50%", 30, words, anchor="middle")
    return _frame(title, f"{title}: {words}", EMPTY_HEIGHT, [line])


def _slot(index: int, count: int) -> str:
    """The horizontal middle of point `index` of `count`, as a percentage of the width."""
    return f"{(index + 0.5) * 100 / count:.3f}%"


def _grid() -> list[str]:
    return [
        f'<line x1="0" y1="{y:.1f}" x2="100%" y2="{y:.1f}" stroke="{GRID}" stroke-width="1"/>'
        for y in (GRID_TOP, MID, GRID_BOTTOM)
    ]


def _grid_labels(top: float, unit: str) -> list[str]:
    """Drawn over the line and the dots (with a halo), so that the figures stay readable where
    the data passes under them (the first slot lies under them at 390 px)."""
    below = GRID_BOTTOM + 18
    return [
        _text("2", GRID_TOP - 4, f"{_number(top)} {unit}", halo=True),
        _text("2", MID - 4, _number(top / 2), halo=True),
        _text("2", GRID_BOTTOM - 4, "0", halo=True),
        _text("2", below, "oldest"),
        _text("100%", below, "newest", anchor="end"),
    ]


def series(title: str, unit: str, points: Sequence[Point], *, empty: str = "no runs yet") -> str:
    """A line over `points` (oldest first), each point a dot with its label as a tooltip;
    points without a value leave a gap."""
    values = [p.value for p in points if p.value is not None]
    if not values:
        return _empty(title, empty)
    top = _nice(max(values))
    span_y = GRID_BOTTOM - GRID_TOP
    body = _grid()
    segments: list[str] = []
    dots: list[str] = []
    previous: tuple[str, float] | None = None
    for index, point in enumerate(points):
        if point.value is None:
            previous = None
            continue
        x = _slot(index, len(points))
        y = GRID_TOP + span_y * (1 - point.value / top)
        if previous is not None:
            segments.append(
                f'<line x1="{previous[0]}" y1="{previous[1]:.1f}" x2="{x}" y2="{y:.1f}" '
                f'stroke="{LINE}" stroke-width="2" stroke-linecap="round"/>'
            )
        previous = (x, y)
        colour = BAD if point.bad else LINE
        dots.append(
            f'<circle cx="{x}" cy="{y:.1f}" r="{4 if point.bad else 3}" fill="{colour}">'
            f"<title>{escape(point.label)}: {escape(_number(point.value))} {escape(unit)}</title>"
            "</circle>"
        )
    body += segments
    body += dots
    body += _grid_labels(top, unit)
    summary = (
        f"{title}: {len(values)} values, latest {_number(values[-1])} {unit}, "
        f"highest {_number(max(values))} {unit}"
    )
    return _frame(title, summary, HEIGHT, body)


@dataclass(frozen=True, kw_only=True)
class Bar:
    label: str
    share: float | None
    """0..1; None when there is nothing to measure."""
    note: str


def shares(title: str, bars: Sequence[Bar], *, empty: str = "no deliveries yet") -> str:
    """A full-width bar of a share (a success rate) per label, the label and its figures on the
    line above it."""
    if not bars:
        return _empty(title, empty)
    body = []
    words = []
    for index, bar in enumerate(bars):
        y = index * BAR_ROW
        share = min(max(bar.share or 0.0, 0.0), 1.0)
        colour = GOOD if share >= 0.95 else WARN if share >= 0.8 else BAD
        body.append(
            _text("2", y + 16, bar.label)
            + _text("100%", y + 16, bar.note, anchor="end")
            + f'<rect x="0.5" y="{y + 22}" width="99.5%" height="14" fill="none" '
            f'stroke="{GRID}"/>'
            f'<rect x="0.5" y="{y + 22}" width="{share * 99.5:.2f}%" height="14" '
            f'fill="{colour}"/>'
        )
        words.append(f"{bar.label} {bar.note}")
    return _frame(title, f"{title}: " + "; ".join(words), len(bars) * BAR_ROW + 4, body)
