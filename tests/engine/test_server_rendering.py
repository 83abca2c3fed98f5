"""The CSV fast paths (PostgreSQL COPY, MySQL raw text) render exactly what the Python writer
renders from the generic row stream, on a table of awkward values."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from reporthubd import domain
from reporthubd.connectors import base as connectors
from reporthubd.formats.base import RenderContext
from reporthubd.formats.csv import CSVWriter
from tests.engine.conftest import Source

PG_TABLE = [
    """CREATE TABLE odd (id int, t text, v varchar(20), b boolean, ts timestamp,
       tz timestamptz, d date, n numeric(30,10), small numeric(5,2), big bigint, u uuid)""",
    """INSERT INTO odd VALUES
      (1, 'plain', 'a', true, '2024-01-02 03:04:05', '2024-01-02 03:04:05+02', '2024-01-02',
       0.0000001, 1.5, 9223372036854775807, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
      (2, 'comma, "quote"', '', false, '2024-01-02 03:04:05.123456', '2024-06-30 23:59:59.5+00',
       '0001-01-01', -12345678901234567890.1234567890, -0.01, -1, NULL),
      (3, E'line\\nbreak\\rcr', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (4, 'ünïcödé ✓ 日本', ' spaced ', true, '1999-12-31 23:59:59', '1999-12-31 23:59:59-05:30',
       '2038-01-19', 100, 0, 0, NULL)""",
]
MY_TABLE = [
    """CREATE TABLE odd (id int, t text, v varchar(20), b boolean, ts datetime(6), d date,
       n decimal(30,10), small decimal(5,2), big bigint, f double, bin varbinary(10),
       tm time, bits bit(8))""",
    """INSERT INTO odd VALUES
      (1, 'plain', 'a', true, '2024-01-02 03:04:05', '2024-01-02', 0.0000001, 1.5,
       9223372036854775807, 0.1, 0x00ff10, '10:11:12', b'00000101'),
      (2, 'comma, "quote"', '', false, '2024-01-02 03:04:05.123456', '1000-01-01',
       -12345678901234567890.1234567890, -0.01, -1, 1e20, '', '-838:59:59', b'0'),
      (3, 'line\\nbreak\\rcr', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (4, 'ünïcödé ✓ 日本', ' spaced ', true, '1999-12-31 23:59:59', '2038-01-19', 100, 0, 0,
       -2.5e-7, 'x', '00:00:00', b'11111111')""",
]

MY_PLAIN = [
    """CREATE TABLE odd (id int, t text, ts datetime, d date, n decimal(12,2), v varchar(300))""",
    """INSERT INTO odd VALUES
      (1, 'plain', '2024-01-02 03:04:05', '2024-01-02', 1.50, REPEAT('long ', 60)),
      (2, 'comma, "quote"', NULL, NULL, NULL, ''),
      (3, NULL, '1999-12-31 23:59:59', '2038-01-19', -0.01, 'line\nbreak'),
      (4, 'x', '2000-01-01 00:00:00', '2000-01-01', 0, NULL)""",
]


async def _render(
    source: Source,
    tmp_path: Path,
    options: dict[str, object],
    fast: bool,
    sql: str = "SELECT * FROM odd ORDER BY id",
    parameters: dict[str, object] | None = None,
    rows: int = 4,
) -> bytes:
    kind = domain.DatasourceType(source.type)
    datasource = domain.Datasource(id=1, name="odd", type=kind, connection_config=source.config)
    connector = connectors.create(datasource)
    writer = CSVWriter(options, RenderContext(report_name="odd", execution_id="x"))
    path = tmp_path / f"{'fast' if fast else 'slow'}.csv"
    request = connectors.QueryRequest(sql=sql, parameters=parameters or {}, batch_size=2)
    await connector.open()
    try:
        if fast:
            spec = writer.server_csv()
            assert spec is not None
            async with connector.stream_csv(request, spec) as rendered:
                assert rendered is not None, "the fast path did not apply"
                await writer.open(path, rendered.columns)
                await rendered.copy_to(writer.write_rendered)
        else:
            async with connector.stream(request) as result:
                await writer.open(path, result.columns)
                async for batch in result.batches():
                    await writer.write_batch(batch)
        written = await writer.close()
    finally:
        await connector.close()
    assert written.rows == rows
    return path.read_bytes()


@pytest.mark.parametrize(
    "options",
    [{}, {"delimiter": ";", "null_text": "NULL", "line_ending": "crlf"}, {"header": False}],
    ids=["defaults", "semicolon-null-crlf", "no-header"],
)
@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
async def test_fast_path_equals_python_rendering(
    source: Source, tmp_path: Path, options: dict[str, object]
) -> None:
    await source.execute(*(PG_TABLE if source.type == "postgresql" else MY_TABLE))
    if source.type == "mysql":  # plain types: the in-place row path, then every type
        await source.execute("ALTER TABLE odd RENAME TO odd_all", *MY_PLAIN)
        plain = await _render(source, tmp_path, options, fast=False)
        assert await _render(source, tmp_path, options, fast=True) == plain
        await source.execute("DROP TABLE odd", "ALTER TABLE odd_all RENAME TO odd")
    if source.type == "postgresql" and options.get("line_ending") == "crlf":
        spec = CSVWriter(options, RenderContext(report_name="o", execution_id="x")).server_csv()
        assert spec is not None and spec.line_ending == "\r\n"  # COPY cannot: generic path
        return
    slow = await _render(source, tmp_path, options, fast=False)
    fast = await _render(source, tmp_path, options, fast=True)
    delimiter = str(options.get("delimiter", ","))
    if source.type == "postgresql":
        # COPY quotes empty strings ("") to tell them from NULL; parsed, the files are equal.
        parse = lambda data: list(csv.reader(io.StringIO(data.decode()), delimiter=delimiter))  # noqa: E731
        assert parse(fast) == parse(slow)
        assert fast.replace(b'""', b"") == slow.replace(b'""', b"")
    else:
        assert fast == slow
    text = slow.decode()
    assert "0.0000001000" in text  # decimals exact, never 1E-7
    assert "2024-01-02 03:04:05.123456" in text


async def test_copy_binds_parameters_through_settings(pg_source: Source, tmp_path: Path) -> None:
    """COPY takes no bind parameters: values travel through set_config() and current_setting()
    casts, NULL included, and the result equals the generic path's."""
    await pg_source.execute(*PG_TABLE)
    sql = (
        "SELECT id, t, d FROM odd WHERE (:since::date IS NULL OR d >= :since) AND id > :n "
        "AND t <> :tricky ORDER BY id"
    )
    values = {"since": None, "n": "1", "tricky": "x'; DROP TABLE odd; --"}
    slow = await _render(pg_source, tmp_path, {}, False, sql, values, rows=3)
    fast = await _render(pg_source, tmp_path, {}, True, sql, values, rows=3)
    assert fast.replace(b'""', b"") == slow.replace(b'""', b"")
    values["since"] = "2024-01-03"
    slow = await _render(pg_source, tmp_path, {}, False, sql, values, rows=1)
    fast = await _render(pg_source, tmp_path, {}, True, sql, values, rows=1)
    assert fast == slow and b"2038-01-19" in fast
    assert (await pg_source.fetch("SELECT count(*) FROM odd"))[0][0] == 4
