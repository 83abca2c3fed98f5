"""Issue 5 acceptance, end to end against the running PostgreSQL and MariaDB.

Each report runs through the real Engine (a SQLite store, a report config with the output
format and its options, a manual run to the end): rows come from the database through the
connectors in batches, the format writer writes the file, the execution row records it. The file
is read back (openpyxl, json, pypdf) and compared, row by row, with the generator that filled
the table. The tests are few and each covers several points:

- 1,100,000 rows from PostgreSQL to Excel: two sheets, the header on each, every value checked
  (this is also the 1,000,000-row Excel read-back);
- 1,000,000 rows to JSON from MariaDB (array) and PostgreSQL (JSON Lines);
- 10,000 rows to PDF from both.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from reporthubd import domain
from reporthubd.engine import Engine
from reporthubd.formats import values
from reporthubd.formats.excel import MAX_DATA_ROWS
from reporthubd.store import migrate
from reporthubd.store.database import Store
from tests import servers
from tests.engine.conftest import (
    RecordingRunner,
    add_config,
    add_datasource,
    engine_settings,
    run_to_end,
)
from tests.formats import helpers

# Filling 1.1M rows on PostgreSQL and 1M on MariaDB, then an Excel of 1.1M rows: minutes of
# work, run in scripts/test's background process beside the main suite.
pytestmark = pytest.mark.background

EXCEL_ROWS = 1_100_000
JSON_ROWS = 1_000_000
PDF_ROWS = 10_000
BATCH = 5000
BASE_TS = dt.datetime(2026, 1, 1)
BASE_DAY = dt.date(2026, 1, 1)
SUFFIX = " Привет 漢字"
CENT = Decimal("0.01")

# The same rows on both servers: id, amount numeric(12,2), created_at timestamp, day date,
# name varchar (every 10th with Cyrillic and CJK), note text (NULL every 7th), flag boolean.
PG_FILL = """
INSERT INTO sales
SELECT g, (g % 100000) / 100.0, TIMESTAMP '2026-01-01' + g * INTERVAL '1 second',
       DATE '2026-01-01' + (g % 365),
       'cust-' || g || '-' || CASE WHEN g % 10 = 0 THEN ' Привет 漢字' ELSE '' END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE 'note ' || (g % 1000) END,
       g % 3 = 0
FROM generate_series(1, $1) AS g
"""
MY_FILL = """
INSERT INTO sales
SELECT seq, (seq % 100000) / 100.0, TIMESTAMP '2026-01-01 00:00:00' + INTERVAL seq SECOND,
       DATE '2026-01-01' + INTERVAL (seq % 365) DAY,
       CONCAT('cust-', seq, '-', CASE WHEN seq % 10 = 0 THEN ' Привет 漢字' ELSE '' END),
       CASE WHEN seq % 7 = 0 THEN NULL ELSE CONCAT('note ', seq % 1000) END,
       seq % 3 = 0
FROM seq_1_to_{n}
"""
PG_TABLE = """CREATE TABLE sales (id integer PRIMARY KEY, amount numeric(12,2),
created_at timestamp, day date, name varchar(40), note text, flag boolean)"""
MY_TABLE = """CREATE TABLE sales (id integer PRIMARY KEY, amount decimal(12,2),
created_at datetime, day date, name varchar(40), note text, flag boolean)
CHARACTER SET utf8mb4"""
QUERY = "SELECT id, amount, created_at, day, name, note, flag FROM sales WHERE id <= :n ORDER BY id"
NAMES = ("id", "amount", "created_at", "day", "name", "note", "flag")


def expected(i: int, kind: str = "postgresql") -> tuple[Any, ...]:
    """Row `i` as the connector returns it; MySQL's BOOLEAN is TINYINT(1): 0 or 1."""
    mysql = kind == "mysql"
    return (
        i,
        (Decimal(i % 100000) / 100).quantize(CENT),
        BASE_TS + dt.timedelta(seconds=i),
        BASE_DAY + dt.timedelta(days=i % 365),
        f"cust-{i}-" + (SUFFIX if i % 10 == 0 else ""),
        None if i % 7 == 0 else f"note {i % 1000}",
        int(i % 3 == 0) if mysql else i % 3 == 0,
    )


def _connection(backend: str, database: str) -> tuple[str, dict[str, Any]]:
    if backend == "postgresql":
        return "postgresql", {
            "host": servers.POSTGRES_HOST,
            "port": servers.POSTGRES_PORT,
            "database": database,
            "username": "postgres",
        }
    return "mysql", {
        "host": servers.MARIADB_HOST,
        "port": servers.MARIADB_PORT,
        "database": database,
        "username": "root",
        "password": "",
    }


@dataclass(frozen=True)
class SalesSource:
    """A source database holding the `sales` table."""

    kind: str
    config: dict[str, Any]


async def _fill_postgresql(name: str, rows: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        host=servers.POSTGRES_HOST, port=servers.POSTGRES_PORT, user="postgres", database=name
    )
    try:
        await conn.execute(PG_TABLE)
        await conn.execute(PG_FILL, rows)
    finally:
        await conn.close()


def _fill_mariadb(name: str, rows: int) -> None:
    import pymysql

    conn = pymysql.connect(
        host=servers.MARIADB_HOST,
        port=servers.MARIADB_PORT,
        user="root",
        password="",
        database=name,
        charset="utf8mb4",
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(MY_TABLE)
            cursor.execute(MY_FILL.format(n=int(rows)))
        conn.commit()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def pg_sales(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesSource]:
    database = servers.create_database("postgresql", tmp_path_factory.mktemp("pg"))
    try:
        asyncio.run(_fill_postgresql(database.name, EXCEL_ROWS))
        yield SalesSource(*_connection("postgresql", database.name))
    finally:
        database.drop()


@pytest.fixture(scope="module")
def my_sales(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesSource]:
    database = servers.create_database("mariadb", tmp_path_factory.mktemp("my"))
    try:
        _fill_mariadb(database.name, JSON_ROWS)
        yield SalesSource(*_connection("mariadb", database.name))
    finally:
        database.drop()


@pytest.fixture
def sales(request: pytest.FixtureRequest) -> SalesSource:
    """`pg_sales` or `my_sales`, by the test's parameter (resolved before the test's loop)."""
    source: SalesSource = request.getfixturevalue(request.param)
    return source


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    settings = engine_settings(tmp_path)
    store = Store(settings.store)
    await store.start()
    await migrate.upgrade(store)
    eng = Engine(settings, store, node_id="formats-acceptance", deliveries=RecordingRunner())
    await eng.start()
    yield eng
    await eng.stop()
    await store.stop()


async def run_report(
    engine: Engine, source: SalesSource, rows: int, output_format: str, options: dict[str, Any]
) -> tuple[domain.Execution, Path]:
    """One report run through the engine, to the end; the execution row and its file."""
    datasource = await add_datasource(engine.store, source.kind, source.config)
    config = await add_config(
        engine.store,
        datasource,
        QUERY,
        output_format=output_format,
        format_options=options,
        parameters={"n": rows},
        timeout_seconds=900,
    )
    execution = await run_to_end(engine, config)
    assert execution.status is domain.ExecutionStatus.COMPLETED, execution.error_message
    assert execution.row_count == rows
    assert execution.file_path is not None
    path = Path(execution.file_path)
    assert execution.file_size == path.stat().st_size
    return execution, path


def _excel_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time())
    return value


@pytest.mark.timeout(900)
async def test_excel_1_100_000_rows_two_sheets_from_postgresql(
    pg_sales: SalesSource, engine: Engine
) -> None:
    import openpyxl

    _, path = await run_report(engine, pg_sales, EXCEL_ROWS, "excel", {"sheet_name": "Sales"})
    assert path.suffix == ".xlsx"
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        assert book.sheetnames == ["Sales", "Sales (2)"]
        i = 0
        for sheet in book.worksheets:
            rows = sheet.iter_rows(values_only=True)
            assert next(rows) == NAMES
            for row in rows:
                i += 1
                want = tuple(_excel_value(v) for v in expected(i))
                assert row == want, (i, row, want)
            assert i == (MAX_DATA_ROWS if sheet.title == "Sales" else EXCEL_ROWS)
    finally:
        book.close()
    assert i == EXCEL_ROWS


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return values.decimal_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("sales", "layout"),
    [("my_sales", "array"), ("pg_sales", "lines")],
    ids=["mariadb", "pg"],
    indirect=["sales"],
)
async def test_json_1_000_000_rows(sales: SalesSource, layout: str, engine: Engine) -> None:
    _, path = await run_report(engine, sales, JSON_ROWS, "json", {"layout": layout})
    assert path.suffix == (".jsonl" if layout == "lines" else ".json")
    count = 0
    with path.open(encoding="utf-8") as handle:
        objects = (json.loads(line) for line in handle) if layout == "lines" else json.load(handle)
        for count, obj in enumerate(objects, start=1):
            want = dict(
                zip(NAMES, (_json_value(v) for v in expected(count, sales.kind)), strict=True)
            )
            assert obj == want, (count, obj, want)
            assert type(obj["flag"]) is type(want["flag"])
    assert count == JSON_ROWS


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sales", ["pg_sales", "my_sales"], ids=["pg", "mariadb"], indirect=True)
async def test_pdf_10_000_rows(sales: SalesSource, engine: Engine) -> None:
    _, path = await run_report(engine, sales, PDF_ROWS, "pdf", {"orientation": "landscape"})
    text = helpers.squash("".join(helpers.pdf_text(path)))
    position = 0
    for i in range(1, PDF_ROWS + 1):
        row = expected(i, sales.kind)
        cells = "".join(helpers.squash(values.text(v)) for v in row)
        found = text.find(cells, position)
        assert found >= 0, (i, cells, text[position : position + 300])
        position = found + len(cells)
    assert "Привет漢字" in text


async def test_pdf_row_cap_fails_the_run_with_a_clear_error(
    pg_sales: SalesSource, engine: Engine
) -> None:
    datasource = await add_datasource(engine.store, pg_sales.kind, pg_sales.config)
    config = await add_config(
        engine.store,
        datasource,
        QUERY,
        output_format="pdf",
        format_options={"max_rows": 12_000},
        parameters={"n": 20_000},
    )
    execution = await run_to_end(engine, config)
    assert execution.status is domain.ExecutionStatus.FAILED
    assert "more than 12,000 rows, the PDF row cap" in (execution.error_message or "")
    assert execution.file_path is None
