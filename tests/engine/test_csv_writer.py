"""The CSV writer and its format options (no server needed)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zipfile
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from reporthubd.connectors.base import Column, ColumnKind
from reporthubd.formats.base import FormatError, RenderContext, writer_class
from reporthubd.formats.csv import CSVWriter

COLUMNS = [
    Column(name="id", kind=ColumnKind.INTEGER, source_type="int"),
    Column(name="name", kind=ColumnKind.TEXT, source_type="text"),
    Column(name="ok", kind=ColumnKind.BOOLEAN, source_type="bool"),
    Column(name="amount", kind=ColumnKind.DECIMAL, source_type="numeric"),
    Column(name="day", kind=ColumnKind.DATE, source_type="date"),
    Column(name="at", kind=ColumnKind.DATETIME, source_type="timestamp"),
    Column(name="at_tz", kind=ColumnKind.DATETIME_TZ, source_type="timestamptz"),
    Column(name="t", kind=ColumnKind.TIME, source_type="time"),
    Column(name="f", kind=ColumnKind.FLOAT, source_type="float8"),
    Column(name="doc", kind=ColumnKind.JSON, source_type="jsonb"),
    Column(name="raw", kind=ColumnKind.BINARY, source_type="bytea"),
]
PLUS2 = timezone(timedelta(hours=2))
ROWS = [
    (
        1,
        "plain",
        True,
        Decimal("1E-7"),
        date(2026, 1, 2),
        datetime(2026, 1, 2, 3, 4, 5),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=PLUS2),
        time(10, 11, 12),
        0.1,
        {"a": [1, "é"]},
        b"\x00\xff",
    ),
    (2, 'comma, "q"\nline', False, Decimal("-12.50"), None, None, None, None, 1e20, None, None),
    (3, None, None, None, None, None, None, None, None, None, None),
]


async def _write(
    tmp_path: Path,
    options: dict[str, Any],
    rows: list[tuple[Any, ...]] = ROWS,
    truncated: int | None = None,
) -> tuple[CSVWriter, Path, Any]:
    writer = CSVWriter(options, RenderContext(report_name="r", execution_id="e"))
    path = tmp_path / f"out.{writer.file_extension}"
    await writer.open(path, COLUMNS)
    await writer.write_batch(rows[:2])
    await writer.write_batch(rows[2:])
    if truncated:
        await writer.note_truncated(truncated)
    return writer, path, await writer.close()


async def test_defaults_are_canonical(tmp_path: Path) -> None:
    _, path, written = await _write(tmp_path, {})
    data = path.read_bytes()
    assert written.rows == 3 and written.size == len(data)
    assert written.sha256 == hashlib.sha256(data).hexdigest()
    lines = data.decode().split("\n")
    assert lines[0] == "id,name,ok,amount,day,at,at_tz,t,f,doc,raw"
    assert lines[1] == (
        "1,plain,true,0.0000001,2026-01-02,2026-01-02 03:04:05,2026-01-02 03:04:05+02:00,"
        '10:11:12,0.1,"{""a"":[1,""é""]}",AP8='
    )
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert rows[2][1] == 'comma, "q"\nline' and rows[2][2] == "false" and rows[2][8] == "1e+20"
    assert rows[3] == ["3"] + [""] * 10


async def test_options(tmp_path: Path) -> None:
    options = {
        "delimiter": "tab",
        "quoting": "all",
        "header": False,
        "null_text": "NULL",
        "true_text": "Y",
        "false_text": "N",
        "date_format": "%d.%m.%Y",
        "datetime_format": "%Y%m%d %H%M",
        "time_format": "%H.%M",
        "timezone": "UTC",
        "line_ending": "crlf",
    }
    _, path, _ = await _write(tmp_path, options)
    lines = path.read_bytes().decode().split("\r\n")
    first = lines[0].split("\t")
    assert first[:9] == [
        '"1"',
        '"plain"',
        '"Y"',
        '"0.0000001"',
        '"02.01.2026"',
        '"20260102 0304"',
        '"20260102 0104"',
        '"10.11"',
        '"0.1"',
    ]
    assert lines[-2].split("\t")[1] == '"NULL"'


async def test_bom_and_other_encodings(tmp_path: Path) -> None:
    _, path, _ = await _write(tmp_path, {"encoding": "utf-8-bom"})
    assert path.read_bytes().startswith(b"\xef\xbb\xbfid,")
    rows = [(1, "café", None, None, None, None, None, None, None, None, None)]
    _, path, _ = await _write(tmp_path, {"encoding": "latin-1"}, rows)
    assert "café".encode("latin-1") in path.read_bytes()
    rows = [(1, "日本", None, None, None, None, None, None, None, None, None)]
    with pytest.raises(FormatError, match="cannot represent"):
        await _write(tmp_path, {"encoding": "latin-1"}, rows)
    _, path, _ = await _write(tmp_path, {"encoding": "latin-1", "encoding_errors": "replace"}, rows)
    assert b"1,??" in path.read_bytes()


async def test_gzip_and_zip(tmp_path: Path) -> None:
    writer, path, written = await _write(tmp_path, {"compression": "gzip"})
    assert writer.file_extension == "csv.gz" and written.media_type == "application/gzip"
    plain = gzip.decompress(path.read_bytes()).decode()
    assert plain.startswith("id,name") and plain.count("\n") == 5
    writer, path, _ = await _write(tmp_path / ".." / tmp_path.name, {"compression": "zip"})
    assert writer.file_extension == "zip"
    with zipfile.ZipFile(path) as archive:
        (name,) = archive.namelist()
        assert name == "out.csv"
        assert archive.read(name).decode() == plain
        assert archive.infolist()[0].compress_type == zipfile.ZIP_DEFLATED


def test_timestamp_text() -> None:
    from reporthubd.formats.csv import csv_datetime

    assert csv_datetime(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05"
    assert csv_datetime(datetime(2026, 1, 2, 3, 4, 5, 500000)) == "2026-01-02 03:04:05.5"
    assert csv_datetime(datetime(2026, 1, 2, 3, 4, 10, 120, tzinfo=UTC)) == (
        "2026-01-02 03:04:10.00012+00:00"
    )


async def test_truncation_note(tmp_path: Path) -> None:
    _, path, _ = await _write(tmp_path, {}, truncated=3)
    assert path.read_text().splitlines()[-1] == "# truncated: the result had more than 3 rows"


async def test_abort_removes_the_partial_file(tmp_path: Path) -> None:
    writer = CSVWriter({"compression": "zip"}, RenderContext(report_name="r", execution_id="e"))
    path = tmp_path / "x.zip"
    await writer.open(path, COLUMNS)
    await writer.write_batch(ROWS)
    await writer.abort()
    assert not path.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delimeter": ";"}, "unknown csv format option"),
        ({"delimiter": ";;"}, "one character"),
        ({"delimiter": '"'}, "must differ"),
        ({"quoting": "some"}, "quoting"),
        ({"quoting": "none"}, "escape_char"),
        ({"encoding": "klingon"}, "unknown encoding"),
        ({"line_ending": "cr"}, "line_ending"),
        ({"compression": "rar"}, "gzip or zip"),
        ({"compression_level": 12}, "1-9"),
        ({"timezone": "Mars/Base"}, "unknown time zone"),
        ({"header": "yes"}, "true or false"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        CSVWriter(options, RenderContext(report_name="r", execution_id="e"))


def test_registry_and_server_rendering_eligibility() -> None:
    assert writer_class("csv") is CSVWriter
    context = RenderContext(report_name="r", execution_id="e", generated_at=datetime.now(UTC))
    assert CSVWriter({}, context).server_csv() is not None
    assert CSVWriter({"date_format": "%d"}, context).server_csv() is None
    assert CSVWriter({"quoting": "nonnumeric"}, context).server_csv() is None
    assert CSVWriter({"quoting": "all"}, context).server_csv() is None
