"""The native Excel chart of the stream engine (formats.xlsxstream): the DrawingML parts that
XlsxWriter writes for the same chart (formats.xlsxchart), part for part, so that Excel,
LibreOffice and openpyxl read both alike.

The chart's points (formats.charts, aggregated while the rows streamed) go to a sheet of their
own, "Chart": the x labels in column A, one column per series, a bold header row. The chart
refers to those cells (`Chart!$B$2:$B$13`) and carries their values as its cache, so a reader
that does not recalculate still draws it; the reader can restyle it, or change the numbers.

Parts: `xl/charts/chartN.xml` (c:chartSpace: a bar, line, area or pie chart), `xl/drawings/
drawingN.xml` (one anchor holding the chart, at the chart's size), their relationships, and the
sheet's `<drawing r:id>` (xlsxstream.Workbook.add_drawing).
"""

from __future__ import annotations

import math
from typing import Final
from xml.sax.saxutils import escape

from reporthubd.formats.chartdraw import PALETTE
from reporthubd.formats.charts import ChartPoints, ChartType
from reporthubd.formats.xlsxstream import (
    STYLE_BOLD,
    XML_DECL,
    Workbook,
    column_letter,
    inline_string,
    sheet_ref,
)

C_NS: Final = "http://schemas.openxmlformats.org/drawingml/2006/chart"
A_NS: Final = "http://schemas.openxmlformats.org/drawingml/2006/main"
R_NS: Final = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
XDR_NS: Final = "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing"
EMU_PER_POINT: Final = 12700
CAT_AXIS: Final = 50010001
VAL_AXIS: Final = 50010002
SHEET: Final = "Chart"


def sheet_name(taken: set[str]) -> str:
    """ "Chart", or "Chart 2", ... where a sheet of the workbook already has the name."""
    folded = {name.casefold() for name in taken}
    name, n = SHEET, 1
    while name.casefold() in folded:
        n += 1
        name = f"{SHEET} {n}"
    return name


def _ref(sheet: str, column: str, first: int, last: int) -> str:
    return f"{sheet_ref(sheet)}!${column}${first}:${column}${last}"


def _text(value: str) -> str:
    return escape(value)


def _number(value: float) -> str | None:
    """A value as Excel shows it (15 significant digits: `47158.58`, not a float sum's
    `47158.579999999994`); None for NaN and the infinities, which a cell cannot hold."""
    number = float(value)
    return format(number, ".15g") if math.isfinite(number) else None


def _fill(index: int) -> str:
    color = PALETTE[index % len(PALETTE)].lstrip("#").upper()
    return f'<a:solidFill><a:srgbClr val="{color}"/></a:solidFill>'


def _shape(kind: ChartType, index: int) -> str:
    """A series' colours, the PDF's and the email's (formats.chartdraw.PALETTE): a reader
    without the workbook theme's accents (LibreOffice on this package) draws nothing without."""
    if kind is ChartType.LINE:
        return f'<c:spPr><a:ln w="22225" cap="rnd">{_fill(index)}</a:ln></c:spPr>'
    return f"<c:spPr>{_fill(index)}</c:spPr>"


def chart_xml(points: ChartPoints, sheet: str) -> str:
    """The chart over the table `table_rows` writes on `sheet`."""
    spec = points.spec
    count = len(points.labels)
    last = max(count, 1) + 1
    labels = "".join(
        f'<c:pt idx="{i}"><c:v>{_text(label)}</c:v></c:pt>' for i, label in enumerate(points.labels)
    )
    series = []
    for s, name in enumerate(points.series):
        values = "".join(
            f'<c:pt idx="{i}"><c:v>{text}</c:v></c:pt>'
            for i, v in enumerate(points.values[s])
            if (text := _number(v)) is not None
        )
        shape = _shape(spec.type, s)
        marker = ""
        if spec.type is ChartType.LINE:
            marker = '<c:marker><c:symbol val="none"/></c:marker>'
        elif spec.type is ChartType.PIE:  # one colour per slice
            shape = ""
            marker = "".join(
                f'<c:dPt><c:idx val="{i}"/><c:bubble3D val="0"/>{_shape(spec.type, i)}</c:dPt>'
                for i in range(count)
            )
        series.append(
            f'<c:ser><c:idx val="{s}"/><c:order val="{s}"/><c:tx><c:v>{_text(name)}</c:v></c:tx>'
            f"{shape}{marker}"
            f"<c:cat><c:strRef><c:f>{_text(_ref(sheet, 'A', 2, last))}</c:f>"
            f'<c:strCache><c:ptCount val="{count}"/>{labels}</c:strCache></c:strRef></c:cat>'
            f"<c:val><c:numRef><c:f>{_text(_ref(sheet, column_letter(s + 1), 2, last))}</c:f>"
            f'<c:numCache><c:formatCode>General</c:formatCode><c:ptCount val="{count}"/>'
            f"{values}</c:numCache></c:numRef></c:val></c:ser>"
        )
    body = "".join(series)
    axes_ids = f'<c:axId val="{CAT_AXIS}"/><c:axId val="{VAL_AXIS}"/>'
    if spec.type is ChartType.PIE:
        plot = f'<c:pieChart><c:varyColors val="1"/>{body}<c:firstSliceAng val="0"/></c:pieChart>'
    elif spec.type is ChartType.BAR:
        plot = (
            f'<c:barChart><c:barDir val="col"/><c:grouping val="clustered"/>{body}{axes_ids}'
            "</c:barChart>"
        )
    elif spec.type is ChartType.LINE:
        plot = (
            f'<c:lineChart><c:grouping val="standard"/>{body}<c:marker val="1"/>{axes_ids}'
            "</c:lineChart>"
        )
    else:
        plot = f'<c:areaChart><c:grouping val="standard"/>{body}{axes_ids}</c:areaChart>'
    if spec.type is not ChartType.PIE:
        # From zero, as the PDF's chart: bars over an axis that starts at the smallest value
        # exaggerate their differences.
        lowest = min((v for row in points.values for v in row), default=0.0)
        floor = '<c:min val="0"/>' if lowest >= 0 else ""
        plot += (
            f'<c:catAx><c:axId val="{CAT_AXIS}"/><c:scaling><c:orientation val="minMax"/>'
            '</c:scaling><c:axPos val="b"/><c:tickLblPos val="nextTo"/>'
            f'<c:crossAx val="{VAL_AXIS}"/><c:crosses val="autoZero"/><c:auto val="1"/>'
            '<c:lblAlgn val="ctr"/><c:lblOffset val="100"/></c:catAx>'
            f'<c:valAx><c:axId val="{VAL_AXIS}"/><c:scaling><c:orientation val="minMax"/>'
            f'{floor}</c:scaling><c:axPos val="l"/><c:majorGridlines><c:spPr><a:ln w="6350">'
            '<a:solidFill><a:srgbClr val="E5E7EB"/></a:solidFill></a:ln></c:spPr>'
            "</c:majorGridlines>"
            '<c:numFmt formatCode="General" sourceLinked="1"/><c:tickLblPos val="nextTo"/>'
            f'<c:crossAx val="{CAT_AXIS}"/><c:crosses val="autoZero"/>'
            '<c:crossBetween val="between"/></c:valAx>'
        )
    title = ""
    if spec.title:
        title = (
            "<c:title><c:tx><c:rich><a:bodyPr/><a:lstStyle/><a:p><a:pPr><a:defRPr/></a:pPr>"
            f'<a:r><a:rPr lang="en-US"/><a:t>{_text(spec.title)}</a:t></a:r></a:p></c:rich>'
            '</c:tx><c:layout/></c:title><c:autoTitleDeleted val="0"/>'
        )
    else:
        title = '<c:autoTitleDeleted val="1"/>'
    legend = (
        '<c:legend><c:legendPos val="r"/><c:layout/></c:legend>'
        if len(points.series) > 1 or spec.type is ChartType.PIE
        else ""
    )
    return (
        f'{XML_DECL}<c:chartSpace xmlns:c="{C_NS}" xmlns:a="{A_NS}" xmlns:r="{R_NS}">'
        f'<c:lang val="en-US"/><c:chart>{title}<c:plotArea><c:layout/>{plot}</c:plotArea>'
        f'{legend}<c:plotVisOnly val="1"/></c:chart></c:chartSpace>'
    )


def table_rows(points: ChartPoints) -> list[list[str | float]]:
    """The chart's sheet: a header (x column, series names), then one row per x label."""
    rows: list[list[str | float]] = [[points.spec.x, *points.series]]
    for i, label in enumerate(points.labels):
        rows.append([label, *(float(row[i]) for row in points.values)])
    return rows


def drawing_xml(column: int, row: int, width: float, height: float) -> str:
    """One anchor at the 0-based cell (column, row) holding chart rId1, `width` × `height`
    points."""
    cx, cy = round(width * EMU_PER_POINT), round(height * EMU_PER_POINT)
    return (
        f'{XML_DECL}<xdr:wsDr xmlns:xdr="{XDR_NS}" xmlns:a="{A_NS}"><xdr:oneCellAnchor>'
        f"<xdr:from><xdr:col>{column}</xdr:col><xdr:colOff>0</xdr:colOff><xdr:row>{row}"
        f'</xdr:row><xdr:rowOff>0</xdr:rowOff></xdr:from><xdr:ext cx="{cx}" cy="{cy}"/>'
        '<xdr:graphicFrame macro=""><xdr:nvGraphicFramePr><xdr:cNvPr id="2" name="Chart 1"/>'
        '<xdr:cNvGraphicFramePr/></xdr:nvGraphicFramePr><xdr:xfrm><a:off x="0" y="0"/>'
        '<a:ext cx="0" cy="0"/></xdr:xfrm><a:graphic>'
        f'<a:graphicData uri="{C_NS}"><c:chart xmlns:c="{C_NS}" xmlns:r="{R_NS}" r:id="rId1"/>'
        "</a:graphicData></a:graphic></xdr:graphicFrame><xdr:clientData/></xdr:oneCellAnchor>"
        "</xdr:wsDr>"
    )


def add(book: Workbook, points: ChartPoints, taken: set[str]) -> str:
    """The chart's sheet (its table, then the chart beside it) as the last sheet of `book`,
    after the report's sheets ended; its name."""
    name = sheet_name(taken)
    rows = table_rows(points)
    widths = [max(12.0, min(40.0, max(len(str(r[0])) for r in rows) + 2.0))]
    widths += [14.0] * len(points.series)
    book.add_sheet(name, widths, freeze_header=True)
    parts = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{column_letter(c)}{r}"
            if isinstance(value, str):
                cells.append(inline_string(ref, value, STYLE_BOLD if r == 1 else 0))
            elif (text := _number(value)) is not None:
                cells.append(f'<c r="{ref}"><v>{text}</v></c>')
        parts.append(f'<row r="{r}">{"".join(cells)}</row>')
    book.write("".join(parts))
    spec = points.spec
    book.add_drawing(
        chart_xml(points, name), drawing_xml(len(rows[0]) + 1, 1, spec.width, spec.height)
    )
    book.end_sheet(f"A1:{column_letter(len(rows[0]) - 1)}{len(rows)}", None)
    return name
