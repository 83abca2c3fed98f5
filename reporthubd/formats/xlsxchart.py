"""A native Excel chart of the report's chart (formats.charts) for the `xlsxwriter` engine: a
sheet "Chart" holding the chart's points as a small table (labels, one column per series) and an
Excel chart over those cells, which Excel redraws and lets the reader restyle. XlsxWriter emits
the chart parts itself; the default `stream` engine writes the same parts with
formats.xlsxstreamchart.
"""

from __future__ import annotations

import math
from typing import Any, Final

from reporthubd.formats.charts import ChartPoints, ChartType

SHEET: Final = "Chart"
EXCEL_TYPES: Final = {
    ChartType.BAR: {"type": "column"},
    ChartType.LINE: {"type": "line"},
    ChartType.AREA: {"type": "area"},
    ChartType.PIE: {"type": "pie"},
}


def add(book: Any, points: ChartPoints) -> None:
    """The chart's sheet and chart in `book` (an xlsxwriter Workbook, before it closes)."""
    sheet = book.add_worksheet(SHEET)
    bold = book.add_format({"bold": True})
    spec = points.spec
    sheet.write_row(0, 0, [spec.x, *points.series], bold)
    for i, label in enumerate(points.labels):
        sheet.write_string(i + 1, 0, label)
        for s, row in enumerate(points.values):
            if math.isfinite(row[i]):  # NaN and infinities: an empty cell (no cell holds them)
                sheet.write_number(i + 1, s + 1, row[i])
    chart = book.add_chart(EXCEL_TYPES[spec.type])
    last = len(points.labels)
    for s, name in enumerate(points.series):
        chart.add_series(
            {
                "name": name,
                "categories": [SHEET, 1, 0, max(last, 1), 0],
                "values": [SHEET, 1, s + 1, max(last, 1), s + 1],
            }
        )
    if spec.title:
        chart.set_title({"name": spec.title})
    if len(points.series) <= 1 and spec.type is not ChartType.PIE:
        chart.set_legend({"none": True})
    chart.set_size({"width": spec.width * 4 / 3, "height": spec.height * 4 / 3})  # points → px
    sheet.insert_chart(1, len(points.series) + 2, chart)
