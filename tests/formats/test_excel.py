from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from reporthubd.connectors.base import Column, ColumnKind
from reporthubd.formats.base import FormatError
from reporthubd.formats.excel import MAX_DATA_ROWS, ExcelWriter
from tests import servers
from tests.formats import helpers

COLUMNS = [
    Column(name="id", kind=ColumnKind.INTEGER, source_type="int"),
    Column(name="amount", kind=ColumnKind.DECIMAL, source_type="numeric(12,2)", scale=2),
    Column(name="note", kind=ColumnKind.TEXT, source_type="text"),
]


def rows(start: int, count: int) -> list[tuple[object, ...]]:
    return [(i, Decimal(i) / 4, f"note {i}") for i in range(start, start + count)]


ENGINES = pytest.mark.parametrize("engine", ["stream", "xlsxwriter"])


@ENGINES
async def test_new_sheet_past_rows_per_sheet_with_header_on_each(
    tmp_path: Path, engine: str
) -> None:
    batches = [rows(0, 4), rows(4, 4), rows(8, 3)]
    options = {"sheet_name": "Sales", "rows_per_sheet": 5, "engine": engine}
    written = await helpers.write_file("excel", tmp_path, COLUMNS, batches, options)
    assert written.rows == 11
    sheets = helpers.read_xlsx(written.path)
    assert list(sheets) == ["Sales", "Sales (2)", "Sales (3)"]
    header = ("id", "amount", "note")
    data = []
    for sheet in sheets.values():
        assert sheet[0] == header
        data.extend(sheet[1:])
    assert [len(s) - 1 for s in sheets.values()] == [5, 5, 1]
    assert data == [(i, i / 4, f"note {i}") for i in range(11)]

    import openpyxl

    book = openpyxl.load_workbook(written.path)
    for name, last in (("Sales", 6), ("Sales (2)", 6), ("Sales (3)", 2)):
        sheet = book[name]
        assert sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref == f"A1:C{last}"
        assert sheet["A1"].font.b
        assert sheet["B2"].number_format == "0.00"


@ENGINES
async def test_column_widths_follow_content(tmp_path: Path, engine: str) -> None:
    long_text = "x" * 200
    written = await helpers.write_file(
        "excel",
        tmp_path,
        COLUMNS,
        [[(1, Decimal("1.00"), long_text), (2, None, "cjk 漢字漢字")]],
        {"engine": engine},
    )
    import openpyxl

    book = openpyxl.load_workbook(written.path)
    dims = book.active.column_dimensions
    assert 5 < dims["A"].width < 12
    assert dims["C"].width == pytest.approx(60, abs=1)  # capped


async def test_decimal_overflow_number_option(tmp_path: Path) -> None:
    value = Decimal("1234567890.123456789")
    text = await helpers.write_file("excel", tmp_path, COLUMNS, [[(1, value, None)]])
    assert helpers.read_xlsx(text.path)["Report"][1][1] == "1234567890.123456789"
    number_dir = tmp_path / "n"
    number_dir.mkdir()
    number = await helpers.write_file(
        "excel", number_dir, COLUMNS, [[(1, value, None)]], {"decimal_overflow": "number"}
    )
    assert helpers.read_xlsx(number.path)["Report"][1][1] == pytest.approx(float(value))


async def test_timezone_option_and_old_dates(tmp_path: Path) -> None:
    columns = [
        Column(name="at", kind=ColumnKind.DATETIME_TZ, source_type="timestamptz"),
        Column(name="day", kind=ColumnKind.DATE, source_type="date"),
        Column(name="t", kind=ColumnKind.TIME, source_type="time"),
        Column(name="f", kind=ColumnKind.FLOAT, source_type="float"),
    ]
    at = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)
    written = await helpers.write_file(
        "excel",
        tmp_path,
        columns,
        [[(at, dt.date(1850, 1, 2), dt.time(13, 14, 15), float("nan"))]],
        {"timezone": "Europe/Berlin"},
    )
    sheet = helpers.read_xlsx(written.path)["Report"]
    assert sheet[0][0] == "at (Europe/Berlin)"
    assert sheet[1] == (dt.datetime(2026, 7, 1, 14, 0), "1850-01-02", dt.time(13, 14, 15), "NaN")


@pytest.mark.parametrize(
    "options",
    [
        {"sheet_name": "a/b"},
        {"sheet_name": "x" * 32},
        {"rows_per_sheet": MAX_DATA_ROWS + 1},
        {"rows_per_sheet": 0},
        {"decimal_overflow": "round"},
        {"timezone": "Mars/Base"},
        {"engine": "openpyxl"},
        {"sheet_nmae": "typo"},
    ],
)
def test_bad_options_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(FormatError):
        ExcelWriter(options, helpers.CONTEXT)


@ENGINES
async def test_abort_removes_partial_file(tmp_path: Path, engine: str) -> None:
    writer = helpers.make_writer("excel", {"engine": engine})
    path = tmp_path / "partial.xlsx"
    await writer.open(path, COLUMNS)
    await writer.write_batch(rows(0, 10))
    await writer.abort()
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary files left either


@ENGINES
async def test_empty_result_and_text_edge_cases(tmp_path: Path, engine: str) -> None:
    empty = await helpers.write_file("excel", tmp_path, COLUMNS, [], {"engine": engine})
    assert helpers.read_xlsx(empty.path) == {"Report": [("id", "amount", "note")]}
    other = tmp_path / "edge"
    other.mkdir()
    tricky = [
        (1, None, "  padded  "),
        (2, None, "a < b & c > d \"q\" 'a'"),
        (3, None, "ctrl \x01\x02 _x0041_ end"),
        (4, None, "=1+1"),
        (5, None, "line1\nline2"),
        (6, None, "y" * 40_000),
    ]
    written = await helpers.write_file("excel", other, COLUMNS, [tricky], {"engine": engine})
    got = [r[2] for r in helpers.read_xlsx(written.path)["Report"][1:]]
    assert got[:2] == ["  padded  ", "a < b & c > d \"q\" 'a'"]
    # Control characters travel as Excel's _xHHHH_ escapes (Excel decodes them; openpyxl shows
    # them as they are), and a literal _xHHHH_ is protected by _x005F_.
    assert got[2] == "ctrl _x0001__x0002_ _x005F_x0041_ end"
    assert got[3:5] == ["=1+1", "line1\nline2"]
    assert got[5] == "y" * 32_767


@ENGINES
async def test_libreoffice_opens_the_file(tmp_path: Path, engine: str) -> None:
    """A second, independent reader of the files (optional: Debian libreoffice-calc-nogui)."""
    import shutil
    import subprocess

    soffice = shutil.which("soffice")
    if soffice is None:
        servers.unavailable("LibreOffice (Debian libreoffice-calc-nogui) is not installed")
        return
    options = {"rows_per_sheet": 2, "engine": engine}
    written = await helpers.write_file("excel", tmp_path, COLUMNS, [rows(0, 3)], options)
    profile = tmp_path / "lo-profile"
    subprocess.run(
        [
            soffice,
            f"-env:UserInstallation=file://{profile}",
            "--headless",
            "--norestore",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1",
            "--outdir",
            str(tmp_path),
            str(written.path),
        ],
        check=True,
        timeout=110,
        capture_output=True,
    )
    first = (tmp_path / "out-Report.csv").read_text(encoding="utf-8").splitlines()
    second = (tmp_path / "out-Report (2).csv").read_text(encoding="utf-8").splitlines()
    assert first == ["id,amount,note", "0,0,note 0", "1,0.25,note 1"]
    assert second == ["id,amount,note", "2,0.5,note 2"]


@ENGINES
async def test_without_header(tmp_path: Path, engine: str) -> None:
    options = {"header": False, "rows_per_sheet": 2, "engine": engine}
    written = await helpers.write_file("excel", tmp_path, COLUMNS, [rows(0, 3)], options)
    sheets = helpers.read_xlsx(written.path)
    assert sheets == {
        "Report": [(0, 0, "note 0"), (1, 0.25, "note 1")],
        "Report (2)": [(2, 0.5, "note 2")],
    }
