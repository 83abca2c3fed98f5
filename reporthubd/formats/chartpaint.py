"""The shapes a chart is made of (formats.chartdraw lays them out), and their two renderings:
reportlab graphics for the PDF (vector, embedded in the page), Pillow for the email's PNG.

Why two renderers: reportlab 5's bitmap renderer (renderPM) needs rlPyCairo and pycairo, which
has no wheel here and builds only against the cairo development headers; Pillow is already
installed as a dependency of reportlab and draws these few shapes and TrueType text. The PNG is
drawn at SUPERSAMPLE times its size and scaled down, for smooth edges.

Coordinates are PDF-like: points, origin at the bottom left.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

from reporthubd.formats import pdffonts

SUPERSAMPLE: Final = 2
_FONT_FILES: Final = {
    pdffonts.REGULAR: pdffonts.FONT_DIR / "DejaVuSans.ttf",
    pdffonts.BOLD: pdffonts.FONT_DIR / "DejaVuSans-Bold.ttf",
    pdffonts.CJK: pdffonts.FONT_DIR / "wqy-microhei.ttc",
    pdffonts.EMOJI: pdffonts.FONT_DIR / "Symbola.ttf",
}
"""Pillow's files of the PDF's fonts (pdffonts): a label's runs are drawn with the same fonts in
the PNG as in the PDF, Chinese, Japanese and Korean from WenQuanYi Micro Hei, emoji from
Symbola (a label in one font would show their characters as empty boxes)."""


@cache
def _family(name: str, size: float) -> pdffonts.FontFamily:
    return pdffonts.FontFamily(name, size)


def runs(s: String) -> list[pdffonts.Run]:
    """The label in visual order, split into runs of one font each (the PDF table's fallback:
    the base font, then CJK, then emoji; a character none has is a visible [U+XXXX])."""
    return _family(s.fontName, s.fontSize).runs(pdffonts.visual(s.text))


@dataclass
class Rect:
    x: float
    y: float
    width: float
    height: float
    fillColor: str | None = None
    strokeColor: str | None = None


@dataclass
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    strokeColor: str = "#000000"
    strokeWidth: float = 1.0


@dataclass
class PolyLine:
    points: list[float]
    strokeColor: str = "#000000"
    strokeWidth: float = 1.0


@dataclass
class Polygon:
    points: list[float]
    fillColor: str = "#000000"
    fillOpacity: float = 1.0
    strokeColor: str | None = None


@dataclass
class String:
    x: float
    y: float
    text: str
    fontName: str = pdffonts.REGULAR
    fontSize: float = 7.0
    fillColor: str = "#000000"
    textAnchor: str = "start"
    rotate: float = 0.0


@dataclass
class Wedge:
    cx: float
    cy: float
    radius: float
    start: float
    end: float
    """Degrees, counter-clockwise from three o'clock."""
    fillColor: str = "#000000"
    strokeColor: str | None = None
    strokeWidth: float = 0.8


Shape = Rect | Line | PolyLine | Polygon | String | Wedge


@dataclass
class Drawing:
    width: float
    height: float
    shapes: list[Shape] = field(default_factory=list)

    def add(self, shape: Shape) -> None:
        self.shapes.append(shape)


# -- reportlab (PDF) ----------------------------------------------------------------------------


def to_reportlab(drawing: Drawing) -> Any:
    """A reportlab Drawing of the same shapes, for renderPDF.draw onto a page."""
    from reportlab.graphics import shapes as rl
    from reportlab.lib.colors import HexColor

    def color(value: str | None) -> Any:
        return HexColor(value) if value else None

    out = rl.Drawing(drawing.width, drawing.height)
    for s in drawing.shapes:
        if isinstance(s, Rect):
            out.add(
                rl.Rect(
                    s.x,
                    s.y,
                    s.width,
                    s.height,
                    fillColor=color(s.fillColor),
                    strokeColor=color(s.strokeColor),
                )
            )
        elif isinstance(s, Line):
            out.add(
                rl.Line(
                    s.x1,
                    s.y1,
                    s.x2,
                    s.y2,
                    strokeColor=color(s.strokeColor),
                    strokeWidth=s.strokeWidth,
                )
            )
        elif isinstance(s, PolyLine):
            out.add(
                rl.PolyLine(
                    s.points,
                    strokeColor=color(s.strokeColor),
                    strokeWidth=s.strokeWidth,
                    strokeLineJoin=1,
                )
            )
        elif isinstance(s, Polygon):
            out.add(
                rl.Polygon(
                    s.points,
                    fillColor=color(s.fillColor),
                    fillOpacity=s.fillOpacity,
                    strokeColor=color(s.strokeColor),
                )
            )
        elif isinstance(s, Wedge):
            out.add(
                rl.Wedge(
                    s.cx,
                    s.cy,
                    s.radius,
                    s.start,
                    s.end,
                    fillColor=color(s.fillColor),
                    strokeColor=color(s.strokeColor),
                    strokeWidth=s.strokeWidth,
                )
            )
        else:
            parts = runs(s)
            for name, _ in parts:
                pdffonts.font(name)  # registered before a String uses it
            if len(parts) == 1:
                texts = [
                    rl.String(
                        0 if s.rotate else s.x,
                        0 if s.rotate else s.y,
                        parts[0][1],
                        fontName=parts[0][0],
                        fontSize=s.fontSize,
                        fillColor=color(s.fillColor),
                        textAnchor=s.textAnchor,
                    )
                ]
                moved = bool(s.rotate)
            else:  # one String per font, one after another from the anchor
                widths = [pdffonts.font(n).stringWidth(t, s.fontSize) for n, t in parts]
                total = sum(widths)
                x = {"end": -total, "middle": -total / 2}.get(s.textAnchor, 0.0)
                texts = []
                for (name, part), width in zip(parts, widths, strict=True):
                    texts.append(
                        rl.String(
                            x,
                            0,
                            part,
                            fontName=name,
                            fontSize=s.fontSize,
                            fillColor=color(s.fillColor),
                        )
                    )
                    x += width
                moved = True
            if moved:
                group = rl.Group(*texts)
                group.translate(s.x, s.y)
                if s.rotate:
                    group.rotate(s.rotate)
                out.add(group)
            else:
                out.add(texts[0])
    return out


# -- Pillow (PNG) -------------------------------------------------------------------------------


@cache
def _font(name: str, size: int) -> Any:
    from PIL import ImageFont

    path: Path = _FONT_FILES.get(name, _FONT_FILES[pdffonts.REGULAR])
    # BASIC layout: the text arrives shaped and in visual order (pdffonts.visual), as in the PDF.
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)


def to_png(drawing: Drawing, scale: float) -> bytes:
    """The shapes as a PNG of width × scale by height × scale pixels, white background."""
    from PIL import Image, ImageDraw

    k = scale * SUPERSAMPLE
    w, h = round(drawing.width * k), round(drawing.height * k)
    image = Image.new("RGB", (w, h), "#ffffff")
    pen = ImageDraw.Draw(image, "RGBA")

    def p(x: float, y: float) -> tuple[float, float]:
        return x * k, h - y * k

    for s in drawing.shapes:
        if isinstance(s, Rect):
            x0, y0 = p(s.x, s.y + s.height)
            x1, y1 = p(s.x + s.width, s.y)
            if x1 - x0 >= 0.5 and y1 - y0 >= 0.5:
                pen.rectangle((x0, y0, x1, y1), fill=s.fillColor, outline=s.strokeColor)
        elif isinstance(s, Line):
            pen.line(
                (*p(s.x1, s.y1), *p(s.x2, s.y2)),
                fill=s.strokeColor,
                width=max(1, round(s.strokeWidth * k)),
            )
        elif isinstance(s, PolyLine):
            xy = [p(s.points[i], s.points[i + 1]) for i in range(0, len(s.points), 2)]
            pen.line(xy, fill=s.strokeColor, width=max(1, round(s.strokeWidth * k)), joint="curve")
        elif isinstance(s, Polygon):
            xy = [p(s.points[i], s.points[i + 1]) for i in range(0, len(s.points), 2)]
            pen.polygon(xy, fill=_rgba(s.fillColor, s.fillOpacity))
        elif isinstance(s, Wedge):
            box = (*p(s.cx - s.radius, s.cy + s.radius), *p(s.cx + s.radius, s.cy - s.radius))
            pen.pieslice(
                box,
                -s.end,
                -s.start,
                fill=s.fillColor,
                outline=s.strokeColor,
                width=max(1, round(s.strokeWidth * k)),
            )
        else:
            _text(image, pen, s, k, h)
    out = image.resize(
        (round(drawing.width * scale), round(drawing.height * scale)), Image.Resampling.BOX
    )
    buffer = io.BytesIO()
    out.save(buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()


def _rgba(color: str, opacity: float) -> tuple[int, int, int, int]:
    value = color.lstrip("#")
    r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return r, g, b, round(255 * opacity)


def _text(image: Any, pen: Any, s: String, k: float, h: int) -> None:
    from PIL import Image, ImageDraw

    px = max(1, round(s.fontSize * k))
    parts = [(_font(name, px), part) for name, part in runs(s)]
    widths = [pen.textlength(part, font=font) for font, part in parts]
    length = sum(widths)
    x, y = s.x * k, h - s.y * k
    if not s.rotate:
        if s.textAnchor == "end":
            x -= length
        elif s.textAnchor == "middle":
            x -= length / 2
        for (font, part), width in zip(parts, widths, strict=True):
            pen.text((x, y), part, font=font, fill=s.fillColor, anchor="ls")
            x += width
        return
    # Rotated: drawn on its own transparent tile, turned, and pasted with its anchor kept.
    ascent = max(font.getmetrics()[0] for font, _ in parts)
    descent = max(font.getmetrics()[1] for font, _ in parts)
    tile = Image.new("RGBA", (math.ceil(length) + 2, ascent + descent + 2), (0, 0, 0, 0))
    tile_pen = ImageDraw.Draw(tile)
    tx = 1.0
    for (font, part), width in zip(parts, widths, strict=True):
        tile_pen.text((tx, 1 + ascent), part, font=font, fill=s.fillColor, anchor="ls")
        tx += width
    turned = tile.rotate(s.rotate, expand=True, resample=Image.Resampling.BICUBIC)
    angle = math.radians(s.rotate)
    # The anchor is the baseline's end ("end") or start; its place in the turned tile:
    ax = length + 1 if s.textAnchor == "end" else 1
    ay = 1 + ascent
    cx, cy = tile.width / 2, tile.height / 2
    dx, dy = ax - cx, ay - cy
    rx = dx * math.cos(angle) + dy * math.sin(angle) + turned.width / 2
    ry = -dx * math.sin(angle) + dy * math.cos(angle) + turned.height / 2
    image.paste(turned, (round(x - rx), round(y - ry)), turned)
