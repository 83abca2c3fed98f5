"""The PDF's optional first page (`cover_page = true`: the title, the run, its parameters, the row
count and the chart) and the chart's place on the first page of the table otherwise.

The PDF is drawn while the rows stream, but the chart and the row count are known only at the
end: both are PDF form XObjects, referenced where they appear and defined when the file closes
(the same way as "Page X of Y"'s total).

The functions take the PDF writer (formats.pdf.PDFWriter, typed Any here: that module imports
this one) and draw with its canvas, fonts and page geometry.
"""

from __future__ import annotations

from typing import Any, Final

from reporthubd.formats import columns as colfmt
from reporthubd.formats import localize, pdffonts, values
from reporthubd.formats.pdffonts import visual

CHART_FORM: Final = "rh_chart"
ROWS_FORM: Final = "rh_row_count"


def chart_box(writer: Any) -> tuple[float, float, float]:
    """(scale, width, height) of the chart on the page: its own size, shrunk to the width."""
    spec = writer.chart_spec
    assert spec is not None
    available = writer._page_w - 2 * writer.margin
    scale = min(1.0, available / spec.width)
    return scale, spec.width * scale, spec.height * scale


def place_chart(writer: Any, top: float) -> float:
    """Reference the chart's form below `top`; returns the y under it."""
    scale, _, height = chart_box(writer)
    c = writer._canvas
    c.saveState()
    c.translate(writer.margin, top - height)
    c.scale(scale, scale)
    c.doForm(CHART_FORM)
    c.restoreState()
    writer.chart_placement = (writer.margin, top - height, scale)
    return top - height


def draw_cover(writer: Any) -> None:
    """Page 1: title, generation line, one line per parameter, row count, the chart."""
    w = writer
    c = w._canvas
    w._page += 1
    left, right = writer.margin, w._page_w - writer.margin
    y = w._page_h - writer.margin - 22
    big = pdffonts.FontFamily(pdffonts.BOLD, 18)
    for line in big.wrap(w.title, right - left, max_lines=2):
        w._draw_text(big, left, y, visual(line))
        y -= 22
    y -= 2
    for line in w._meta_lines[:1]:
        w._draw_text(w._meta, left, y, line)
        y -= 14
    body = pdffonts.FontFamily(pdffonts.REGULAR, 10)
    bold = pdffonts.FontFamily(pdffonts.BOLD, 10)
    rows: list[tuple[str, str | None]] = [
        (str(k), values.text(v)) for k, v in w.context.parameters.items()
    ]
    rows.append(("Rows", None))
    key_width = max(bold.width(k) for k, _ in rows) + 14
    y -= 6
    for key, value in rows:
        w._draw_text(bold, left, y, visual(key))
        if value is None:
            c.saveState()
            c.translate(left + key_width, y)
            c.doForm(ROWS_FORM)
            c.restoreState()
        else:
            for line in body.wrap(value, right - left - key_width, max_lines=3):
                w._draw_text(body, left + key_width, y, visual(line))
                y -= 13
            y += 13
        y -= 15
    if w.chart_spec is not None:
        place_chart(w, y - 10)
    w._end_page()


def define_forms(writer: Any) -> None:
    """At close: the chart's drawing and the row count, for the references drawn earlier."""
    c = writer._canvas
    if writer.chart_spec is not None:
        c.beginForm(CHART_FORM)
        if writer.chart is not None:
            from reportlab.graphics import renderPDF

            from reporthubd.formats import chartdraw

            renderPDF.draw(chartdraw.reportlab_drawing(writer.chart), c, 0, 0)
        c.endForm()
    if writer.cover_page:
        c.beginForm(ROWS_FORM)
        family = pdffonts.FontFamily(pdffonts.REGULAR, 10)
        count = localize.text_function(
            colfmt.ColumnFormat(name="", kind=colfmt.Kind.INTEGER), writer.locale, writer.zone
        )
        writer._draw_text(family, 0, 0, count(writer.rows_written))
        c.endForm()
