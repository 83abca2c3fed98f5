"""Workbooks and multi-section PDFs (formats.workbook, engine.sections) through the engine: three
queries, two on MariaDB and one on PostgreSQL, with the report's parameter, in three named
sheets read back by openpyxl and opened by LibreOffice headless; three PDF sections read back by
pdftotext; bad sheets refused naming the key."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd.engine import Engine
from reporthubd.formats import workbook
from reporthubd.formats.base import FormatError
from reporthubd.formats.capture import check_options
from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.engine.conftest import Source, add_config, add_datasource, run_to_end

ORDERS, CUSTOMERS, STOCK = 120, 35, 17


async def _name(store: Store, datasource_id: int) -> str:
    async with store.engine.connect() as conn:
        name = await conn.scalar(
            sa.select(schema.datasources.c.name).where(schema.datasources.c.id == datasource_id)
        )
    return str(name)


async def _sources(store: Store, my: Source, pg: Source) -> tuple[int, str]:
    await my.execute(
        "CREATE TABLE orders (id INT PRIMARY KEY, amount DECIMAL(10,2), day DATE)",
        "INSERT INTO orders SELECT seq, seq * 1.25, DATE '2026-01-01' + INTERVAL seq DAY "
        f"FROM seq_1_to_{ORDERS}",
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40), since DATE)",
        "INSERT INTO customers SELECT seq, CONCAT('Customer ', seq), "
        f"DATE '2020-06-01' + INTERVAL seq DAY FROM seq_1_to_{CUSTOMERS}",
    )
    await pg.execute(
        "CREATE TABLE stock (sku int, qty numeric(8,1), checked timestamptz)",
        "INSERT INTO stock SELECT g, g * 2.5, "
        "timestamptz '2026-02-01 10:00+00' + g * interval '1 h' "
        f"FROM generate_series(1, {STOCK}) g",
    )
    my_id = await add_datasource(store, "mysql", my.config)
    pg_id = await add_datasource(store, "postgresql", pg.config)
    return my_id, await _name(store, pg_id)


def _options(pg_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "sheet_name": "Orders",
        "sheets": [
            {
                "name": "Customers",
                "query": "SELECT id, name, since FROM customers WHERE id > :min_id ORDER BY id",
            },
            {
                "name": "Stock",
                "datasource": pg_name,
                "query": "SELECT sku, qty, checked FROM stock WHERE sku > :min_id ORDER BY sku",
                "columns": [{"name": "qty", "kind": "number", "decimals": 1}],
            },
        ],
        **extra,
    }


ORDERS_SQL = "SELECT id, amount, day FROM orders WHERE id > :min_id ORDER BY id"


async def test_three_queries_three_sheets(
    engine: Engine, engine_store: Store, my_source: Source, pg_source: Source, tmp_path: Path
) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    my_id, pg_name = await _sources(engine_store, my_source, pg_source)
    config = await add_config(
        engine_store,
        my_id,
        ORDERS_SQL,
        output_format="excel",
        parameters={"min_id": 0},
        format_options=_options(pg_name),
    )

    run = await run_to_end(engine, config)

    assert run.status.value == "COMPLETED", run.error_message
    assert run.row_count == ORDERS + CUSTOMERS + STOCK
    book = openpyxl.load_workbook(run.file_path, read_only=True)
    assert book.sheetnames == ["Orders", "Customers", "Stock"]
    orders = list(book["Orders"].iter_rows(values_only=True))
    customers = list(book["Customers"].iter_rows(values_only=True))
    stock = list(book["Stock"].iter_rows(values_only=True))
    assert orders[0] == ("id", "amount", "day")
    assert customers[0] == ("id", "name", "since")
    assert stock[0] == ("sku", "qty", "checked (UTC)")
    assert (len(orders) - 1, len(customers) - 1, len(stock) - 1) == (ORDERS, CUSTOMERS, STOCK)
    assert orders[1] == (1, 1.25, dt.datetime(2026, 1, 2))
    assert isinstance(orders[-1][1], float) and orders[-1][1] == ORDERS * 1.25
    assert customers[3] == (3, "Customer 3", dt.datetime(2020, 6, 4))
    assert stock[2] == (2, 5, dt.datetime(2026, 2, 1, 12, 0))
    book.close()
    # The per-sheet column format is a real number format on the Stock sheet's cells.
    full = openpyxl.load_workbook(run.file_path)
    assert full["Stock"]["B2"].number_format != "General"
    assert full["Orders"]["C2"].is_date and full["Customers"]["C2"].is_date
    full.close()

    soffice = shutil.which("soffice")
    if soffice is None:
        pytest.skip("LibreOffice (soffice) is not installed")
    out = tmp_path / "lo"
    done = subprocess.run(
        [
            soffice,
            f"-env:UserInstallation=file://{tmp_path}/lo-profile",
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
            str(out),
            run.file_path,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    converted = out / (Path(run.file_path).stem + ".pdf")
    assert converted.exists(), done.stdout + done.stderr
    text = subprocess.run(
        ["pdftotext", "-layout", str(converted), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Customer 35" in text  # the second sheet was read
    assert "42.5" in text  # and the third (sku 17, qty 42.5)


async def test_three_sections_in_a_pdf(
    engine: Engine, engine_store: Store, my_source: Source, pg_source: Source
) -> None:
    my_id, pg_name = await _sources(engine_store, my_source, pg_source)
    config = await add_config(
        engine_store,
        my_id,
        ORDERS_SQL,
        name="Month end",
        output_format="pdf",
        parameters={"min_id": 30},
        format_options=_options(pg_name),
    )

    run = await run_to_end(engine, config)

    assert run.status.value == "COMPLETED", run.error_message
    assert run.row_count == (ORDERS - 30) + (CUSTOMERS - 30) + 0
    text = subprocess.run(
        ["pdftotext", "-layout", run.file_path, "-"], capture_output=True, text=True, check=True
    ).stdout
    for heading in ("Month end — Orders", "Month end — Customers", "Month end — Stock"):
        assert heading in text
    orders_at = text.index("Month end — Orders")
    customers_at = text.index("Month end — Customers")
    stock_at = text.index("Month end — Stock")
    assert orders_at < customers_at < stock_at
    assert "Customer 31" in text[customers_at:stock_at]
    assert "Customer 30" not in text
    assert "(no rows)" in text[stock_at:]  # no sku above 30: the section says so


@pytest.mark.parametrize(
    ("sheets", "expected"),
    [
        ([{"name": "x" * 32, "query": "SELECT 1"}], "'sheets[1].name' must be 1 to 31"),
        ([{"name": "a/b", "query": "SELECT 1"}], "'sheets[1].name' must not contain '/'"),
        ([{"name": "Q[1]", "query": "SELECT 1"}], "must not contain '[]'"),
        ([{"name": "history", "query": "SELECT 1"}], "'sheets[1].name' must not be 'History'"),
        (
            [{"name": "Two", "query": "SELECT 1"}, {"name": "two", "query": "SELECT 2"}],
            "'sheets[2].name': 'two' is already the name of 'sheets[1].name'",
        ),
        ([{"name": "report", "query": "SELECT 1"}], "already the name of 'sheet_name'"),
        ([{"name": "Two"}], "'sheets[2].query'".replace("2", "1")),
        ([{"name": "Two", "query": "SELECT 1", "sql": "x"}], "'sheets[1]': unknown key 'sql'"),
        ([{"name": "Two", "query": "SELECT 1", "datasource": 3}], "'sheets[1].datasource'"),
        ([], "'sheets' must be a non-empty list"),
    ],
)
def test_bad_sheets_are_refused_naming_the_key(sheets: list[Any], expected: str) -> None:
    with pytest.raises(FormatError) as caught:
        check_options("excel", {"sheets": sheets})
    assert expected in str(caught.value)


def test_sheets_need_a_format_that_holds_them() -> None:
    with pytest.raises(FormatError, match="the csv format holds one table"):
        check_options("csv", {"sheets": [{"name": "A", "query": "SELECT 1"}]})
    with pytest.raises(FormatError, match="'sheets' needs the stream engine"):
        check_options("excel", {"engine": "xlsxwriter", "sheets": [{"name": "A", "query": "x"}]})
    plan = workbook.split("pdf", {"sheet_name": "First", "sheets": [{"name": "A", "query": "x"}]})
    assert plan is not None and plan.first_name == "First"
    check_options("pdf", {"sheet_name": "First", "sheets": [{"name": "A/B", "query": "x"}]})


@pytest.mark.parametrize(
    ("sheet", "expected"),
    [
        (
            {"name": "Lost", "datasource": "no-such-source", "query": "SELECT 1"},
            "format option 'sheets[1].datasource': no datasource is named 'no-such-source'",
        ),
        (
            {"name": "Region", "query": "SELECT id FROM customers WHERE region = :region"},
            "format option 'sheets[1].query' ('Region'):",
        ),
    ],
)
async def test_a_bad_sheet_fails_the_run_before_connecting(
    engine: Engine, engine_store: Store, tmp_path: Path, sheet: dict[str, Any], expected: str
) -> None:
    ds = await add_datasource(engine_store, "sqlite", {"path": str(tmp_path / "none.db")})
    config = await add_config(
        engine_store,
        ds,
        "SELECT 1 AS one WHERE 1 > :min_id",
        output_format="excel",
        parameters={"min_id": 0},
        format_options={"sheets": [sheet]},
    )

    run = await run_to_end(engine, config)

    assert run.status.value == "FAILED"
    assert expected in (run.error_message or "")
    if "query" in expected:
        assert "region" in (run.error_message or "")
    assert not (tmp_path / "none.db").exists()  # nothing connected


async def test_check_names_a_sheets_unknown_datasource_and_untaken_parameter(
    engine_store: Store, tmp_path: Path
) -> None:
    from reporthubd.commands import section_checks
    from reporthubd.store.definitions import load_definitions

    ds = await add_datasource(engine_store, "sqlite", {"path": str(tmp_path / "d.db")})
    good = await add_config(
        engine_store,
        ds,
        "SELECT 1 AS one WHERE 1 > :min_id",
        output_format="excel",
        format_options={"sheets": [{"name": "B", "query": "SELECT :min_id AS x"}]},
    )
    bad = await add_config(
        engine_store,
        ds,
        "SELECT 1 AS one",
        output_format="pdf",
        parameters={"day": "{{ yesterday }}"},
        format_options={
            "sheets": [
                {"name": "A", "datasource": "warehouse", "query": "SELECT 1"},
                {"name": "B", "query": "SELECT :day, :region"},
            ]
        },
    )
    found = await load_definitions(engine_store, default_timezone="UTC")

    problems = section_checks.problems(found)

    assert [p.row_id for p in problems] == [bad], problems
    text = str(problems[0])
    assert "format_options.sheets[1].datasource: no active datasource named 'warehouse'" in text
    assert "format_options.sheets[2].query ('B') uses 'region'" in text
    assert "'day'" not in text
    assert good not in [p.row_id for p in problems]


async def test_check_leaves_a_driven_reports_sheet_parameters_to_the_run(
    engine_store: Store, tmp_path: Path
) -> None:
    from reporthubd.commands import section_checks
    from reporthubd.store.definitions import load_definitions

    ds = await add_datasource(engine_store, "sqlite", {"path": str(tmp_path / "d.db")})
    config = await add_config(
        engine_store,
        ds,
        "SELECT 1 AS one",
        output_format="excel",
        format_options={"sheets": [{"name": "B", "query": "SELECT :branch AS b"}]},
    )
    async with engine_store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.audience_drivers).values(
                config_id=config, datasource_id=ds, query_text="SELECT 'x' AS branch"
            )
        )
    found = await load_definitions(engine_store, default_timezone="UTC")

    assert section_checks.problems(found) != []
    assert section_checks.problems(found, await section_checks.driven(engine_store)) == []


async def test_a_sheet_that_fails_mid_workbook_fails_the_run_and_leaves_no_file(
    engine: Engine, engine_store: Store, tmp_path: Path
) -> None:
    import sqlite3

    data = tmp_path / "d.db"
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE t (n INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50)])
    conn.close()
    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config = await add_config(
        engine_store,
        ds,
        "SELECT n FROM t",
        output_format="excel",
        format_options={
            "sheets": [
                {"name": "Fine", "query": "SELECT n * 2 AS m FROM t"},
                {"name": "Broken", "query": "SELECT nope FROM t"},
            ]
        },
    )

    run = await run_to_end(engine, config)

    assert run.status.value == "FAILED"
    assert "nope" in (run.error_message or "")
    assert run.file_path is None
    workspace = tmp_path / "workspace" / run.id
    assert not workspace.exists() or not any(workspace.iterdir())
