"""Column formats (issue 19, item 1): one spec, read back from every format.

- Excel through openpyxl: each formatted cell keeps a numeric value and carries the number
  format built from the locale's CLDR pattern; highlights are conditional formatting; hidden
  columns are hidden; the totals row holds the totals.
- PDF through pdftotext: the locale's text for numbers, currencies, percents, dates and
  timestamps (de_DE and en_US), the labels, no hidden column, the totals row.
- Totals equal the database's own SUM (SQLite, rows streamed from it in batches).
- Bad specs: each error names the column and the key.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import sqlite3
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from reporthubd.connectors.base import Column, ColumnKind
from reporthubd.formats import columns as colfmt
from reporthubd.formats.base import FormatError
from tests.formats.helpers import make_writer, read_csv, write_file

COLUMNS = [
    Column(name="region", kind=ColumnKind.TEXT, source_type="text"),
    Column(name="revenue", kind=ColumnKind.DECIMAL, source_type="numeric(12,2)", scale=2),
    Column(name="orders", kind=ColumnKind.INTEGER, source_type="integer"),
    Column(name="share", kind=ColumnKind.FLOAT, source_type="double"),
    Column(name="day", kind=ColumnKind.DATE, source_type="date"),
    Column(name="closed_at", kind=ColumnKind.DATETIME_TZ, source_type="timestamptz"),
    Column(name="handling", kind=ColumnKind.INTEGER, source_type="integer"),
    Column(name="secret", kind=ColumnKind.TEXT, source_type="text"),
]
ROWS = [
    (
        "north",
        Decimal("1234.56"),
        1234,
        0.125,
        dt.date(2026, 12, 31),
        dt.datetime(2026, 12, 31, 22, 30, tzinfo=dt.UTC),
        93784,
        "s1",
    ),
    (
        "south",
        Decimal("-50.00"),
        7,
        0.5,
        dt.date(2026, 1, 2),
        dt.datetime(2026, 1, 2, 8, 0, tzinfo=dt.UTC),
        60,
        "s2",
    ),
]
SPEC: dict[str, Any] = {
    "region": {"label": "Region"},
    "revenue": {
        "label": "Revenue",
        "kind": "currency",
        "currency": "EUR",
        "total": "sum",
        "highlight": [{"op": "lt", "value": 0, "fill": "#FDE2E2", "color": "#9C0006"}],
    },
    "orders": {"kind": "integer", "total": "sum", "width": 9},
    "share": {"kind": "percent", "decimals": 1, "total": "max"},
    "day": {"kind": "date", "total": "min"},
    "closed_at": {"kind": "datetime"},
    "handling": {"kind": "duration", "total": "sum"},
    "secret": {"hidden": True, "total": "count"},
}


def options(locale: str) -> dict[str, Any]:
    return {"columns": SPEC, "locale": locale, "timezone": "Europe/Berlin"}


def pdftotext(path: Path) -> str:
    exe = shutil.which("pdftotext")
    if exe is None:
        from tests import servers

        servers.unavailable("pdftotext (Debian poppler-utils) is not installed")
    out = subprocess.run(
        [exe, "-layout", str(path), "-"], check=True, capture_output=True, timeout=60
    ).stdout.decode("utf-8")
    return out.replace("\xa0", " ").replace("\u202f", " ")


@pytest.mark.parametrize(
    ("locale", "currency_code", "percent_code"),
    [("de_DE", '#,##0.00 "€"', "#,##0.0 %"), ("en_US", '"€"#,##0.00', "#,##0.0%")],
)
async def test_excel_number_formats_on_numeric_cells(
    locale: str, currency_code: str, percent_code: str, tmp_path: Path
) -> None:
    import openpyxl

    written = await write_file("excel", tmp_path, COLUMNS, [ROWS], options(locale))
    book = openpyxl.load_workbook(written.path)
    sheet = book.active
    assert sheet is not None
    header = [c.value for c in sheet[1]]
    assert header == [
        "Region",
        "Revenue",
        "orders",
        "share",
        "day",
        "closed_at (Europe/Berlin)",
        "handling",
        "secret",
    ]
    row = sheet[2]
    expected = {
        "B": (1234.56, currency_code),
        "C": (1234, "#,##0"),
        "D": (0.125, percent_code),
    }
    for letter, (value, code) in expected.items():
        cell = sheet[f"{letter}2"]
        assert cell.data_type == "n", letter
        assert cell.value == pytest.approx(value), letter
        assert cell.number_format == code, letter
    # a duration is a number of days under [h]:mm:ss (openpyxl reads it back as a timedelta)
    assert row[6].number_format == "[h]:mm:ss"
    assert row[6].value == dt.timedelta(seconds=93784)
    assert row[4].value == dt.datetime(2026, 12, 31)
    assert row[4].number_format == "yyyy-mm-dd"
    assert row[5].number_format == "yyyy-mm-dd hh:mm:ss"
    # hidden column, custom width, the highlight as conditional formatting
    assert sheet.column_dimensions["H"].hidden is True
    assert sheet.column_dimensions["C"].width == 9
    rules = sheet.conditional_formatting
    found = [(str(cf.sqref), r.operator, r.formula) for cf in rules for r in cf.rules]
    assert found == [("B2:B3", "lessThan", ["0"])]
    dxf = book._differential_styles[0]  # the rule's fill and font
    assert dxf.fill.bgColor.rgb == "FFFDE2E2"
    assert dxf.font.color.rgb == "FF9C0006"
    # the totals row, below the data, outside the autofilter
    totals = sheet[4]
    assert totals[0].value == "Total" and totals[0].font.b
    assert totals[1].value == pytest.approx(1184.56)
    assert totals[1].number_format == currency_code and totals[1].font.b
    assert totals[2].value == 1241
    assert totals[3].value == pytest.approx(0.5)
    assert totals[4].value == dt.datetime(2026, 1, 2)
    assert totals[6].value == dt.timedelta(seconds=93784 + 60)
    assert totals[7].value == 2 and totals[7].number_format == "#,##0"
    assert sheet.auto_filter.ref == "A1:H3"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        (
            "de_DE",
            [
                "1.234,56 €",
                "-50,00 €",
                "1.234",
                "12,5 %",
                "31.12.2026",
                "31.12.2026, 23:30:00",
                "26:03:04",
                "1.184,56 €",
                "1.241",
                "50,0 %",
                "02.01.2026",
                "26:04:04",
            ],
        ),
        (
            "en_US",
            [
                "€1,234.56",
                "-€50.00",
                "1,234",
                "12.5%",
                "Dec 31, 2026",
                "Dec 31, 2026, 11:30:00 PM",
                "26:03:04",
                "€1,184.56",
                "1,241",
                "50.0%",
                "Jan 2, 2026",
                "26:04:04",
            ],
        ),
    ],
)
async def test_pdf_locale_text(locale: str, expected: list[str], tmp_path: Path) -> None:
    written = await write_file("pdf", tmp_path, COLUMNS, [ROWS], options(locale))
    text = pdftotext(written.path)
    for piece in expected:
        assert piece in text, (piece, text)
    assert "Region" in text and "Revenue" in text
    assert "secret" not in text and "s1" not in text  # hidden
    assert "Total" in text
    assert "1234.56" not in text  # never the raw value


async def test_pdf_highlight_paints_the_cell(tmp_path: Path) -> None:
    from pypdf import PdfReader

    written = await write_file("pdf", tmp_path, COLUMNS, [ROWS], options("en_US"))
    content = PdfReader(written.path).pages[0].get_contents()
    assert content is not None
    stream = content.get_data().decode("latin-1")
    assert ".992157 .886275 .886275 rg" in stream  # the fill #FDE2E2
    assert ".611765 0 .023529 rg" in stream  # the text colour #9C0006


async def test_csv_and_json_stay_raw(tmp_path: Path) -> None:
    written = await write_file("csv", tmp_path, COLUMNS, [ROWS], options("de_DE"))
    rows = read_csv(written.path)
    assert rows[0][:2] == ["region", "revenue"]
    assert rows[1][1] == "1234.56"
    raw = {"columns": SPEC, "locale": "de_DE"}
    json_file = await write_file("json", tmp_path, COLUMNS, [ROWS], raw)
    assert '"revenue":"1234.56"' in json_file.path.read_text().replace(" ", "")


async def test_totals_equal_the_databases_sum(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "sales.db")
    db.execute("CREATE TABLE sales (region TEXT, amount_cents INTEGER, price REAL, qty INTEGER)")
    db.executemany(
        "INSERT INTO sales VALUES (?, ?, ?, ?)",
        (
            (f"r{i % 7}", i * 7907 % 1_000_000 - 20_000, (i * 31 % 10_000) / 100, i % 50 + 1)
            for i in range(12_345)
        ),
    )
    db.commit()
    cols = [
        Column(name="region", kind=ColumnKind.TEXT, source_type="TEXT"),
        Column(name="amount_cents", kind=ColumnKind.INTEGER, source_type="INTEGER"),
        Column(name="price", kind=ColumnKind.FLOAT, source_type="REAL"),
        Column(name="qty", kind=ColumnKind.INTEGER, source_type="INTEGER"),
    ]
    spec = {
        "columns": {
            "amount_cents": {"total": "sum"},
            "price": {"kind": "currency", "currency": "USD", "total": "sum"},
            "qty": {"total": "avg"},
            "region": {"total": "count"},
        }
    }
    cursor = db.execute("SELECT region, amount_cents, price, qty FROM sales ORDER BY rowid")
    batches = []
    while batch := cursor.fetchmany(1000):
        batches.append(batch)
    written = await write_file("excel", tmp_path, cols, batches, spec)
    sums = db.execute("SELECT COUNT(region), SUM(amount_cents), SUM(price), AVG(qty) FROM sales")
    count, amount, price, qty = sums.fetchone()
    import openpyxl

    db.close()
    book = openpyxl.load_workbook(written.path, read_only=True)
    try:
        sheet = book.active
        assert sheet is not None
        last = list(sheet.iter_rows(values_only=True))[-1]
    finally:
        book.close()
    assert last[0] == count == 12_345
    assert last[1] == amount
    assert last[2] == pytest.approx(price, rel=1e-12)
    assert last[3] == pytest.approx(qty, rel=1e-12)


def test_totals_stream_in_bounded_memory() -> None:
    bound: list[colfmt.ColumnFormat | None] = [
        colfmt.ColumnFormat(name="a", total="sum"),
        colfmt.ColumnFormat(name="b", total="min"),
    ]
    totals = colfmt.Totals(bound)
    for start in range(0, 100_000, 5000):
        totals.add([(Decimal(i) / 100, i) for i in range(start, start + 5000)])
    assert totals.values(2) == [Decimal(sum(range(100_000))) / 100, 0]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"revenue": {"kind": "money"}}, "'columns.revenue.kind': 'money' is not one of"),
        ({"revenue": {"kind": "currency", "currency": "XYZ"}}, "'columns.revenue.currency'"),
        ({"revenue": {"kind": "currency"}}, "'columns.revenue.currency': kind 'currency' needs"),
        ({"revenue": {"decimal": 2}}, "'columns.revenue.decimal': unknown key"),
        ({"revenue": {"total": "median"}}, "'columns.revenue.total'"),
        (
            {"revenue": {"highlight": [{"op": "lt", "value": 0, "fill": "red"}]}},
            "'columns.revenue.highlight[0].fill': a colour as #RRGGBB",
        ),
    ],
)
def test_bad_spec_names_column_and_key(spec: dict[str, Any], message: str) -> None:
    for fmt in ("excel", "pdf", "csv", "json"):
        with pytest.raises(FormatError, match=re.escape(message)):
            make_writer(fmt, {"columns": spec})


def test_unknown_locale() -> None:
    with pytest.raises(FormatError, match=re.escape("'locale': unknown locale 'xx_QQ'")):
        make_writer("pdf", {"locale": "xx_QQ"})


async def test_unknown_column_and_wrong_kind_at_open(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=re.escape("'columns.revnue': the result has no column")):
        await write_file("excel", tmp_path, COLUMNS, [ROWS], {"columns": {"revnue": {}}})
    with pytest.raises(
        FormatError, match=re.escape("'columns.region.kind': 'currency' cannot format")
    ):
        await write_file(
            "pdf",
            tmp_path,
            COLUMNS,
            [ROWS],
            {"columns": {"region": {"kind": "currency", "currency": "EUR"}}},
        )


def test_check_reports_the_bad_column_spec() -> None:
    from reporthubd import domain
    from reporthubd.commands.check import format_problems

    def config(config_id: int, fmt: str, options: dict[str, Any]) -> domain.ReportConfig:
        return domain.ReportConfig(
            id=config_id,
            name=f"report {config_id}",
            description=None,
            datasource_id=1,
            query_text="SELECT 1",
            parameters={},
            output_format=domain.OutputFormat(fmt),
            format_options=options,
            file_name_template=None,
            timeout_seconds=None,
            max_rows=None,
            empty_result_policy=domain.EmptyResultPolicy.DELIVER,
        )

    good = config(1, "pdf", {"columns": SPEC, "locale": "de_DE", "truncate": True})
    currency = config(2, "excel", {"columns": {"amount": {"kind": "currency", "currency": "EUX"}}})
    locale = config(3, "csv", {"locale": "zz_ZZ"})
    problems = format_problems([good, currency, locale])
    assert [p.row_id for p in problems] == [2, 3]
    assert "'columns.amount.currency': unknown currency code 'EUX'" in str(problems[0])
    assert "'report 2'" in str(problems[0])
    assert "unknown locale 'zz_ZZ'" in str(problems[1])


def test_the_openapi_schema_describes_the_spec() -> None:
    import jsonschema

    from reporthubd.control import openapi

    document = openapi.spec()
    schema = {"$ref": "#/components/schemas/ColumnFormats", "components": document["components"]}
    jsonschema.validate(SPEC, schema)
    jsonschema.validate([{"name": "revenue", **SPEC["revenue"]}], schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"revenue": {"kind": "money"}}, schema)


async def test_csv_and_json_formatted_when_asked(tmp_path: Path) -> None:
    asked = {**options("de_DE"), "formatted": True}
    written = await write_file("csv", tmp_path, COLUMNS, [ROWS], asked)
    rows = read_csv(written.path)
    assert rows[0] == ["Region", "Revenue", "orders", "share", "day", "closed_at", "handling"]
    assert rows[1] == [
        "north",
        "1.234,56\xa0€",  # CLDR's no-break space
        "1.234",
        "12,5\xa0%",
        "31.12.2026",
        "31.12.2026, 23:30:00",
        "26:03:04",
    ]
    assert make_writer("csv", asked).server_csv() is None  # the database cannot render it
    assert make_writer("csv", {"columns": SPEC, "locale": "de_DE"}).server_csv() is not None
    json_opts = {"columns": SPEC, "locale": "en_US", "formatted": True}
    written = await write_file("json", tmp_path, COLUMNS, [ROWS], json_opts)
    first = json.loads(written.path.read_text(encoding="utf-8"))[1]
    assert first["Revenue"] == "-€50.00"
    assert first["orders"] == "7" and first["day"] == "Jan 2, 2026"
    assert "secret" not in first


async def test_excel_sheets_each_get_the_highlight_and_the_last_the_totals(tmp_path: Path) -> None:
    import openpyxl

    rows = [(f"r{i}", Decimal(i) - 2, i) for i in range(5)]
    cols = COLUMNS[:3]
    spec = {
        "rows_per_sheet": 2,
        "columns": {
            "revenue": {"total": "sum", "highlight": {"op": "lt", "value": 0, "color": "#FF0000"}},
            "orders": {"total": "max"},
        },
    }
    written = await write_file("excel", tmp_path, cols, [rows[:3], rows[3:]], spec)
    book = openpyxl.load_workbook(written.path)
    assert book.sheetnames == ["Report", "Report (2)", "Report (3)"]
    refs = [[str(cf.sqref) for cf in sheet.conditional_formatting] for sheet in book.worksheets]
    assert refs == [["B2:B3"], ["B2:B3"], ["B2"]]
    last = book.worksheets[-1]
    assert [c.value for c in last[3]] == ["Total", 0, 4]
    assert last["B2"].number_format == "#,##0.00"  # numeric(12,2): 2 decimals by default
    empty = await write_file("excel", tmp_path, cols, [], spec)
    sheet = openpyxl.load_workbook(empty.path).active
    assert sheet is not None
    assert [c.value for c in sheet[2]] == ["Total", None, None]
