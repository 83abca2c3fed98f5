"""The console's plots, drawn as inline SVG on the server: no script, no external fetch.

Each function is a pure function of its series and returns SVG text in which every piece of
text is escaped. Each plot has a `<title>` and an `aria-label` that say what it shows in words
(a screen reader reads the summary, not the shapes), and a table view of the same figures
beside it on the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 600
HEIGHT = 160
PAD_LEFT = 48
PAD_RIGHT = 8
PAD_TOP = 10
PAD_BOTTOM = 22

# Colours pass WCAG AA contrast (>= 3:1 for graphics) on the white plot background.
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
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}".rstrip("0").rstrip(".") or "0"


def _frame(title: str, summary: str, body: list[str]) -> str:
    return (
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(summary)}" xmlns="http://www.w3.org/2000/svg" '
        f'preserveAspectRatio="xMinYMin meet"><title>{escape(title)}</title>'
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>'
        + "".join(body)
        + "</svg>"
    )


def _axis(top: float, unit: str) -> list[str]:
    bottom_y = HEIGHT - PAD_BOTTOM
    mid_y = (PAD_TOP + bottom_y) / 2
    parts = []
    for y, value in ((PAD_TOP, top), (mid_y, top / 2), (bottom_y, 0.0)):
        parts.append(
            f'<line x1="{PAD_LEFT}" y1="{y:.1f}" x2="{WIDTH - PAD_RIGHT}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{PAD_LEFT - 4}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="{INK}">{escape(_number(value))}</text>'
        )
    parts.append(
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 6}" font-size="11" fill="{INK}">{escape(unit)}</text>'
    )
    return parts


def series(title: str, unit: str, points: Sequence[Point], *, empty: str = "no runs yet") -> str:
    """A line over `points` (oldest first), each point a dot with its label as a tooltip;
    points without a value leave a gap."""
    values = [p.value for p in points if p.value is not None]
    if not values:
        return _frame(
            title,
            f"{title}: {empty}",
            [
                f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" font-size="13" text-anchor="middle" '
                f'fill="{INK}">{escape(empty)}</text>'
            ],
        )
    top = max(values) or 1.0
    span_x = WIDTH - PAD_LEFT - PAD_RIGHT
    span_y = HEIGHT - PAD_TOP - PAD_BOTTOM
    step = span_x / max(len(points) - 1, 1)
    body = _axis(top, unit)
    path: list[str] = []
    dots: list[str] = []
    for index, point in enumerate(points):
        if point.value is None:
            path.append("")
            continue
        x = PAD_LEFT + index * step if len(points) > 1 else PAD_LEFT + span_x / 2
        y = PAD_TOP + span_y * (1 - point.value / top)
        path.append(f"{x:.1f},{y:.1f}")
        colour = BAD if point.bad else LINE
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
            f"<title>{escape(point.label)}: {escape(_number(point.value))} {escape(unit)}</title>"
            "</circle>"
        )
    for run in " ".join(path).split("  "):
        if run.strip().count(",") > 1:
            body.append(
                f'<polyline points="{run.strip()}" fill="none" stroke="{LINE}" stroke-width="2"/>'
            )
    body += dots
    summary = (
        f"{title}: {len(values)} values, latest {_number(values[-1])} {unit}, "
        f"highest {_number(max(values))} {unit}"
    )
    return _frame(title, summary, body)


@dataclass(frozen=True, kw_only=True)
class Bar:
    label: str
    share: float | None
    """0..1; None when there is nothing to measure."""
    note: str


def shares(title: str, bars: Sequence[Bar], *, empty: str = "no deliveries yet") -> str:
    """Horizontal bars of a share (a success rate) per label, each with its figures."""
    if not bars:
        return _frame(
            title,
            f"{title}: {empty}",
            [
                f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" font-size="13" text-anchor="middle" '
                f'fill="{INK}">{escape(empty)}</text>'
            ],
        )
    row = min(28.0, (HEIGHT - PAD_TOP - 4) / len(bars))
    left = 96
    span = WIDTH - left - 150
    body = []
    words = []
    for index, bar in enumerate(bars):
        y = PAD_TOP + index * row
        share = bar.share or 0.0
        colour = GOOD if share >= 0.95 else WARN if share >= 0.8 else BAD
        body.append(
            f'<text x="{left - 6}" y="{y + row * 0.6:.1f}" font-size="12" text-anchor="end" '
            f'fill="{INK}">{escape(bar.label)}</text>'
            f'<rect x="{left}" y="{y + 3:.1f}" width="{span}" height="{row - 8:.1f}" '
            f'fill="none" stroke="{GRID}"/>'
            f'<rect x="{left}" y="{y + 3:.1f}" width="{span * share:.1f}" '
            f'height="{row - 8:.1f}" fill="{colour}"/>'
            f'<text x="{left + span + 6}" y="{y + row * 0.6:.1f}" font-size="12" '
            f'fill="{INK}">{escape(bar.note)}</text>'
        )
        words.append(f"{bar.label} {bar.note}")
    return _frame(title, f"{title}: " + "; ".join(words), body)
