"""Charts (issue 19, item 3): the spec's errors name the key and the column, the aggregation
equals SQL's GROUP BY, memory is bounded by the points, never the rows; every type draws, and its
drawn points are the data."""

from __future__ import annotations

import random
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from reporthubd.connectors.base import Column, ColumnKind
from reporthubd.formats import capture, chartdraw, charts
from reporthubd.formats.base import FormatError
from reporthubd.formats.capture import check_options
from tests.formats import report_samples as samples

COLUMNS = [
    Column(name="month", kind=ColumnKind.TEXT, source_type="text"),
    Column(name="region", kind=ColumnKind.TEXT, source_type="text"),
    Column(name="revenue", kind=ColumnKind.DECIMAL, source_type="numeric", scale=2),
    Column(name="units", kind=ColumnKind.INTEGER, source_type="integer"),
]


def _rows(n: int, seed: int = 19) -> list[tuple[str, str, Decimal, int]]:
    rng = random.Random(seed)
    return [
        (
            f"2026-{rng.randint(1, 12):02d}",
            rng.choice(["North", "South", "East", "West"]),
            Decimal(rng.randint(0, 100_000)) / 100,
            rng.randint(1, 9),
        )
        for _ in range(n)
    ]


def _data(spec: dict[str, object], rows: list[tuple[str, str, Decimal, int]]) -> charts.ChartData:
    parsed = charts.parse(spec)
    assert parsed is not None
    data = charts.ChartData(parsed, COLUMNS, str)
    for start in range(0, len(rows), 500):
        data.add(rows[start : start + 500])
    return data


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "bar", "x": "month", "y": "region"}, "'chart.y': column 'region' is text"),
        ({"type": "bar", "x": "nope", "y": "revenue"}, "'chart.x': the result has no column"),
        ({"type": "bar", "x": "month", "y": ["revenue", "gone"]}, "'chart.y': the result has no"),
        ({"type": "line", "x": "month", "y": "units", "series": "x"}, "'chart.series': the result"),
    ],
)
def test_a_chart_over_a_column_it_cannot_draw_names_the_column_and_key(
    spec: dict[str, object], message: str
) -> None:
    with pytest.raises(FormatError, match="format option " + message.replace("(", r"\(")):
        _data(spec, [])


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"type": "donut", "x": "a", "y": "b"}, "chart.type"),
        ({"type": "pie", "x": "a", "y": ["b", "c"]}, "chart.y"),
        ({"type": "bar", "x": "a", "y": ["b", "c"], "series": "d"}, "chart.series"),
        ({"type": "bar", "x": "a", "y": "b", "colour": "red"}, "chart.colour"),
        ({"type": "bar", "x": "a", "y": "b", "max_points": 1}, "chart.max_points"),
        ({"type": "bar", "x": "a", "y": "b", "aggregate": "median"}, "chart.aggregate"),
    ],
)
def test_check_refuses_a_bad_chart_spec_for_every_format(spec: dict[str, object], key: str) -> None:
    for fmt in ("csv", "excel", "json", "pdf"):
        with pytest.raises(FormatError, match=key.replace(".", r"\.")):
            check_options(fmt, {"chart": spec})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"locale": "xx_QQ"}, "'locale': unknown locale 'xx_QQ'"),
        ({"columns": {"revenue": {"kind": "currency", "currency": "EUX"}}}, "columns.revenue"),
        ({"preview_rows": 1000}, "'preview_rows'"),
    ],
)
def test_check_names_an_unknown_locale_currency_and_preview_size(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(FormatError, match=message):
        check_options("csv", options)


@pytest.mark.parametrize("aggregate", ["sum", "avg", "min", "max", "count"])
def test_the_points_are_sql_group_by_over_the_same_rows(aggregate: str) -> None:
    rows = _rows(5000)
    data = _data(
        {"type": "bar", "x": "month", "y": "revenue", "series": "region", "aggregate": aggregate},
        rows,
    )
    points = data.points()
    sql_fn = {"sum": "SUM", "avg": "AVG", "min": "MIN", "max": "MAX", "count": "COUNT"}[aggregate]
    with sqlite3.connect(":memory:") as db:
        db.execute("CREATE TABLE t (month TEXT, region TEXT, cents INTEGER)")
        db.executemany(
            "INSERT INTO t VALUES (?, ?, ?)", [(m, r, int(v * 100)) for m, r, v, _ in rows]
        )
        found = {
            (m, r): v / 100 if aggregate != "count" else v
            for m, r, v in db.execute(
                f"SELECT month, region, {sql_fn}(cents) FROM t GROUP BY month, region"
            )
        }
    drawn = {
        (label, name): points.values[s][i]
        for s, name in enumerate(points.series)
        for i, label in enumerate(points.labels)
    }
    assert drawn == pytest.approx(found)
    # The x values in the order the rows brought them (the query's ORDER BY decides).
    assert points.labels == list(dict.fromkeys(r[0] for r in rows))


def test_memory_is_bounded_by_the_points_not_the_rows() -> None:
    rows = [(f"day {i}", ["a", "b", "c"][i % 3], Decimal(i), 1) for i in range(200_000)]
    data = _data({"type": "line", "x": "month", "y": "revenue", "max_points": 50}, rows)
    points = data.points()
    assert len(points.labels) == 50 and len(data._acc) == 50
    assert points.omitted_points == 200_000 - 50
    series_rows = [("m", f"series {i}", Decimal(1), 1) for i in range(1000)]
    wide = _data({"type": "bar", "x": "month", "y": "units", "series": "region"}, series_rows)
    assert len(wide.points().series) == charts.MAX_SERIES
    assert wide.points().omitted_series == 1000 - charts.MAX_SERIES


@pytest.mark.parametrize("kind", ["bar", "line", "area", "pie"])
def test_every_type_draws_and_its_drawn_points_are_the_data(kind: str) -> None:
    rows = _rows(400)
    spec: dict[str, object] = {"type": kind, "x": "region", "y": "revenue", "title": kind}
    if kind in ("line", "area"):
        spec = {"type": kind, "x": "month", "y": ["revenue", "units"]}
    points = _data(spec, rows).points()
    chart = chartdraw.draw(points, str)
    values = [v for row in points.values for v in row]
    assert [p["value"] for p in chart.drawn] == values
    png = chartdraw.png(chart)
    assert png.startswith(b"\x89PNG")
    if kind == "pie":
        assert sum(p["share"] for p in chart.drawn) == pytest.approx(1.0)
    else:
        # y is linear in the value: (y - zero) / value is one constant.
        assert chart.zero_y is not None
        ratios = [(p["y"] - chart.zero_y) / p["value"] for p in chart.drawn if p["value"]]
        assert max(ratios) - min(ratios) < 0.02


def test_a_csv_report_with_a_chart_keeps_it_beside_the_file(tmp_path: Path) -> None:
    options = {"chart": {"type": "pie", "x": "region", "y": "revenue"}, "preview_rows": 3}
    rows = _rows(100)
    written = samples.write("csv", options, COLUMNS, rows, tmp_path / "r.csv", samples.context("r"))
    data = capture.load(written.path)
    assert data is not None and len(data["rows"]) == 3
    assert capture.chart_path(written.path).read_bytes().startswith(b"\x89PNG")
    sums: dict[str, Decimal] = {}
    for _, region, revenue, _ in rows:
        sums[region] = sums.get(region, Decimal(0)) + revenue
    got = dict(zip(data["chart"]["labels"], data["chart"]["values"][0], strict=True))
    assert got == pytest.approx({k: float(v) for k, v in sums.items()})


def test_the_xlsxwriter_engine_adds_a_native_excel_chart_over_the_points(tmp_path: Path) -> None:
    import re
    import zipfile

    import openpyxl

    rows = _rows(300)
    options = {
        "engine": "xlsxwriter",
        "chart": {"type": "line", "x": "month", "y": ["revenue", "units"], "title": "By month"},
    }
    written = samples.write(
        "excel", options, COLUMNS, rows, tmp_path / "c.xlsx", samples.context("c")
    )
    with zipfile.ZipFile(written.path) as archive:
        chart_xml = archive.read("xl/charts/chart1.xml").decode()
    assert "<c:lineChart>" in chart_xml and "By month" in chart_xml
    refs = re.findall(r"<c:f>(.*?)</c:f>", chart_xml)
    assert refs[:2] == ["Chart!$A$2:$A$13", "Chart!$B$2:$B$13"]
    sheet = openpyxl.load_workbook(written.path)["Chart"]
    table = {r[0]: r[1:] for r in sheet.iter_rows(min_row=2, values_only=True)}
    units: dict[str, int] = {}
    for month, _, _, unit in rows:
        units[month] = units.get(month, 0) + unit
    assert {m: v[1] for m, v in table.items()} == units
    # The default stream engine writes the same chart (tests/formats/test_xlsx_native_chart.py).
    plain = samples.write(
        "excel",
        {"chart": options["chart"]},
        COLUMNS,
        rows,
        tmp_path / "s.xlsx",
        samples.context("s"),
    )
    with zipfile.ZipFile(plain.path) as archive:
        stream_xml = archive.read("xl/charts/chart1.xml").decode()
    assert "<c:lineChart>" in stream_xml and "By month" in stream_xml
    assert re.findall(r"<c:f>(.*?)</c:f>", stream_xml) == refs
