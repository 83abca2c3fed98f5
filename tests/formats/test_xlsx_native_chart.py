"""The default (stream) Excel engine's native chart (formats.xlsxstreamchart): a "Chart" sheet
with the chart's points and an Excel chart over those cells, beside formatted columns. Read
back by openpyxl (the chart's type and references, the table against the rows' sums) and drawn
by LibreOffice (the bars in the PDF's colour, the title and axis labels as text)."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

from reporthubd.formats import xlsxstreamchart
from tests import servers
from tests.formats import report_samples as samples
from tests.formats.test_charts import COLUMNS, _rows

FORMATTED = {"columns": [{"name": "revenue", "kind": "currency", "currency": "EUR"}]}
OPENPYXL_TYPES = {"bar": "BarChart", "line": "LineChart", "area": "AreaChart", "pie": "PieChart"}


@pytest.mark.parametrize("kind", ["bar", "line", "area", "pie"])
def test_the_stream_engine_writes_a_native_chart_over_the_points(tmp_path: Path, kind: str) -> None:
    import openpyxl

    rows = _rows(400)
    chart = {"type": kind, "x": "region", "y": "revenue", "title": "Revenue by region"}
    written = samples.write(
        "excel",
        FORMATTED | {"chart": chart},
        COLUMNS,
        rows,
        tmp_path / "c.xlsx",
        samples.context("c"),
    )
    book = openpyxl.load_workbook(written.path)
    assert book.sheetnames == ["Report", "Chart"]
    assert book["Report"]["C2"].number_format.endswith('"€"') or "€" in str(
        book["Report"]["C2"].number_format
    )
    sheet = book["Chart"]
    table = list(sheet.iter_rows(values_only=True))
    assert table[0] == ("region", "revenue")
    sums: dict[str, Decimal] = {}
    for _, region, revenue, _ in rows:
        sums[region] = sums.get(region, Decimal(0)) + revenue
    assert {label: value for label, value in table[1:]} == pytest.approx(
        {k: float(v) for k, v in sums.items()}
    )
    (drawn,) = sheet._charts
    assert type(drawn).__name__ == OPENPYXL_TYPES[kind]
    (series,) = drawn.series
    last = len(sums) + 1
    assert series.cat.strRef.f == f"Chart!$A$2:$A${last}"
    assert series.val.numRef.f == f"Chart!$B$2:$B${last}"
    cached = [float(p.v) for p in series.val.numRef.numCache.pt]
    assert cached == pytest.approx([v for _, v in table[1:]])
    with zipfile.ZipFile(written.path) as archive:
        types = archive.read("[Content_Types].xml").decode()
    assert "/xl/charts/chart1.xml" in types and "/xl/drawings/drawing1.xml" in types


def test_the_chart_sheet_takes_a_free_name() -> None:
    assert xlsxstreamchart.sheet_name({"Report"}) == "Chart"
    assert xlsxstreamchart.sheet_name({"Report", "chart"}) == "Chart 2"


def test_libreoffice_draws_the_stream_engines_chart(tmp_path: Path) -> None:
    """A second, independent reader draws the chart: its bars in the PDF's first colour
    (formats.chartdraw.PALETTE[0], #2563eb) on the Chart sheet's page, its title as text."""
    from PIL import Image

    soffice = shutil.which("soffice")
    if soffice is None or shutil.which("pdftoppm") is None:
        servers.unavailable("LibreOffice (libreoffice-calc-nogui) or poppler-utils missing")
        return
    chart = {"type": "bar", "x": "region", "y": "revenue", "title": "Revenue"}
    chart |= {"width": 240, "height": 180}  # beside the table, within one printed page
    written = samples.write(
        "excel", {"chart": chart}, COLUMNS, _rows(40), tmp_path / "c.xlsx", samples.context("c")
    )
    profile = tmp_path / "lo-profile"
    subprocess.run(
        [
            soffice,
            f"-env:UserInstallation=file://{profile}",
            "--headless",
            "--norestore",
            "--convert-to",
            "pdf",
            "--outdir",
            str(tmp_path),
            str(written.path),
        ],
        check=True,
        timeout=110,
        capture_output=True,
    )
    pdf = tmp_path / "c.pdf"
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    # The Chart sheet's page: its table, and the chart beside it (titles may wrap).
    pages = text.split("\f")
    number = next(
        i for i, page in enumerate(pages, start=1) if page.split()[:2] == ["region", "revenue"]
    )
    words = pages[number - 1].split()
    assert "Revenue" in words  # the chart's title (the table's header is "revenue")
    # Each region twice: in the table and under the chart's axis.
    assert all(words.count(region) == 2 for region in ("North", "South", "East", "West"))
    page = str(number)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", "-f", page, "-l", page, str(pdf), str(tmp_path / "page")],
        check=True,
    )
    (png,) = tmp_path.glob("page-*.png")
    with Image.open(png) as image:
        rgb = image.convert("RGB")
        pixels = [rgb.getpixel((x, y)) for y in range(rgb.height) for x in range(rgb.width)]
        blue = sum(1 for r, g, b in pixels if abs(r - 37) < 30 and abs(g - 99) < 30 and b > 200)
    assert blue > 500, blue  # four bars of the chart's colour


@pytest.mark.parametrize("engine", ["stream", "xlsxwriter"])
def test_the_chart_table_holds_what_excel_shows_and_no_nan(tmp_path: Path, engine: str) -> None:
    """A float sum is written to 15 significant digits (0.1 + 0.2 is 0.3, as Excel shows it);
    a NaN sum, which no cell can hold, is an empty cell and no point of the chart's cache."""
    import openpyxl

    from reporthubd.connectors.base import Column, ColumnKind

    columns = [
        Column(name="region", kind=ColumnKind.TEXT, source_type="text"),
        Column(name="share", kind=ColumnKind.FLOAT, source_type="double"),
    ]
    rows = [("North", 0.1), ("North", 0.2), ("South", float("nan")), ("East", 2.5)]
    written = samples.write(
        "excel",
        {"engine": engine, "chart": {"type": "bar", "x": "region", "y": "share"}},
        columns,
        rows,
        tmp_path / "f.xlsx",
        samples.context("f"),
    )
    with zipfile.ZipFile(written.path) as archive:
        chart_xml = archive.read("xl/charts/chart1.xml").decode()
    sheet = openpyxl.load_workbook(written.path)["Chart"]
    table = list(sheet.iter_rows(min_row=2, values_only=True))
    assert table == [("North", pytest.approx(0.3)), ("South", None), ("East", 2.5)]
    if engine == "xlsxwriter":
        return  # XlsxWriter writes the chart's cache itself
    assert '<c:pt idx="0"><c:v>0.3</c:v></c:pt>' in chart_xml
    assert '<c:pt idx="1">' not in chart_xml.split("<c:val>")[1]
    assert "nan" not in chart_xml.lower()
