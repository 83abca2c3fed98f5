"""Issue 19 acceptance, the type × format matrix read back: one column spec (number, integer,
currency, percent, date, datetime, duration, text, with totals) written as Excel, PDF and CSV for
de_DE and en_US; Excel through openpyxl (each cell's number_format and a numeric value), the PDF
through pdftotext, the email's HTML body and its text alternative built for each file: the same
strings, and totals equal to an SQL SUM over the same rows."""

from __future__ import annotations

import datetime as dt
import html
import shutil
import sqlite3
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from reporthubd.connectors.base import Column, ColumnKind
from tests.formats import report_samples as samples

COLUMNS = [
    Column(name="amount", kind=ColumnKind.DECIMAL, source_type="numeric(12,2)", scale=2),
    Column(name="ratio", kind=ColumnKind.FLOAT, source_type="double"),
    Column(name="qty", kind=ColumnKind.INTEGER, source_type="integer"),
    Column(name="weight", kind=ColumnKind.FLOAT, source_type="double"),
    Column(name="day", kind=ColumnKind.DATE, source_type="date"),
    Column(name="at", kind=ColumnKind.DATETIME, source_type="timestamptz"),
    Column(name="took", kind=ColumnKind.INTEGER, source_type="integer"),
    Column(name="note", kind=ColumnKind.TEXT, source_type="text"),
]
ROWS = [
    (
        Decimal("1234.56"),
        0.256,
        1234567,
        1234.5,
        dt.date(2026, 12, 3),
        dt.datetime(2026, 12, 3, 14, 5, tzinfo=dt.UTC),
        3725,
        "Zürich",
    ),
    (
        Decimal("99.99"),
        0.5,
        3,
        0.125,
        dt.date(2026, 1, 31),
        dt.datetime(2026, 1, 31, 23, 30, tzinfo=dt.UTC),
        59,
        "Ålesund",
    ),
    (
        Decimal("10000.01"),
        1.0,
        42,
        7.0,
        dt.date(2026, 6, 15),
        dt.datetime(2026, 6, 15, 8, 0, tzinfo=dt.UTC),
        86400,
        "São Paulo",
    ),
]
CURRENCY = {"de_DE": "EUR", "en_US": "USD"}
# What the locale's reader expects (CLDR through Babel), written out, not computed.
EXPECTED = {
    "de_DE": [
        "1.234,56 €",
        "25,6 %",
        "1.234.567",
        "1.234,500",
        "03.12.2026",
        "03.12.2026, 15:05:00",
        "1:02:05",
        "Zürich",
        "99,99 €",
        "31.01.2026",
        "01.02.2026, 00:30:00",  # 23:30 UTC is the next day in Berlin
    ],
    "en_US": [
        "$1,234.56",
        "25.6%",
        "1,234,567",
        "1,234.500",
        "Dec 3, 2026",
        "Dec 3, 2026, 3:05:00 PM",
        "1:02:05",
        "Zürich",
        "$99.99",
        "Jan 31, 2026",
        "Feb 1, 2026, 12:30:00 AM",
    ],
}
TOTALS = {"de_DE": ("11.334,56 €", "1.234.612"), "en_US": ("$11,334.56", "1,234,612")}

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils")


def _options(locale: str) -> dict[str, Any]:
    return {
        "locale": locale,
        "timezone": "Europe/Berlin",
        "columns": {
            "amount": {
                "label": "Amount",
                "kind": "currency",
                "currency": CURRENCY[locale],
                "total": "sum",
            },
            "ratio": {"kind": "percent", "decimals": 1},
            "qty": {"kind": "integer", "total": "sum"},
            "weight": {"kind": "number", "decimals": 3},
            "day": {"kind": "date"},
            "at": {"kind": "datetime"},
            "took": {"kind": "duration"},
            "note": {"kind": "text"},
        },
    }


def _plain(text: str) -> str:
    return " ".join(html.unescape(text).replace("\xa0", " ").replace("\u202f", " ").split())


def _sql_sums() -> tuple[Decimal, int]:
    with sqlite3.connect(":memory:") as db:
        db.execute("CREATE TABLE t (amount TEXT, qty INTEGER)")
        db.executemany("INSERT INTO t VALUES (?, ?)", [(str(r[0]), r[2]) for r in ROWS])
        # Cents as integers: the SQL SUM exact, as a DECIMAL column's would be.
        cents, qty = db.execute(
            "SELECT SUM(CAST(ROUND(CAST(amount AS REAL) * 100) AS INTEGER)), SUM(qty) FROM t"
        ).fetchone()
    return Decimal(cents) / 100, int(qty)


def _email_text(written: Any, fmt: str, options: dict[str, Any]) -> tuple[str, str]:
    file = samples.produced(written)
    message = samples.message(samples.config("matrix", fmt, options), file, {})
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    assert html_part is not None and text_part is not None
    return _plain(html_part.get_content()), _plain(text_part.get_content())


@pytest.mark.parametrize("locale", ["de_DE", "en_US"])
def test_one_spec_reads_back_the_same_in_excel_pdf_and_the_email(
    locale: str, tmp_path: Path
) -> None:
    options = _options(locale)
    ctx = samples.context("matrix")
    amount_sum, qty_sum = _sql_sums()
    assert amount_sum == sum(r[0] for r in ROWS)

    # Excel: real numbers with number formats, never text; the totals row is the SQL SUM.
    xlsx = samples.write("excel", options, COLUMNS, ROWS, tmp_path / "m.xlsx", ctx)
    sheet = openpyxl.load_workbook(xlsx.path).worksheets[0]
    header = [c.value for c in sheet[1]]
    assert header[:3] == ["Amount", "ratio", "qty"]
    symbol = "€" if locale == "de_DE" else "$"
    for r, row in enumerate(ROWS, start=2):
        amount, ratio, qty, weight, day, at = (sheet.cell(r, c) for c in range(1, 7))
        assert isinstance(amount.value, int | float) and symbol in amount.number_format
        assert float(amount.value) == float(row[0])
        assert isinstance(ratio.value, float) and "%" in ratio.number_format
        assert qty.value == row[2] and "#,##0" in qty.number_format
        assert weight.value == row[3] and "0.000" in weight.number_format
        assert isinstance(day.value, dt.datetime) and day.number_format != "General"
        assert isinstance(at.value, dt.datetime) and at.number_format != "General"
    total = len(ROWS) + 2
    assert Decimal(str(sheet.cell(total, 1).value)) == amount_sum
    assert sheet.cell(total, 3).value == qty_sum

    # PDF: the locale's text, read back by poppler.
    pdf = samples.write("pdf", options, COLUMNS, ROWS, tmp_path / "m.pdf", ctx)
    text = _plain(
        subprocess.run(
            ["pdftotext", "-layout", str(pdf.path), "-"], capture_output=True, text=True, check=True
        ).stdout
    )
    for expected in EXPECTED[locale] + list(TOTALS[locale]):
        assert expected in text, f"PDF ({locale}) lacks {expected!r}"

    # The email of each file: the same strings in the HTML and the text part, the totals too.
    csv = samples.write("csv", options, COLUMNS, ROWS, tmp_path / "m.csv", ctx)
    for fmt, written in (("pdf", pdf), ("excel", xlsx), ("csv", csv)):
        body, alternative = _email_text(written, fmt, options)
        for expected in EXPECTED[locale] + list(TOTALS[locale]):
            assert expected in body, f"HTML of the {fmt} email ({locale}) lacks {expected!r}"
            assert expected in alternative, f"text of the {fmt} email lacks {expected!r}"
