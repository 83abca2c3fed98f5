"""The engine keeps what the email shows while a run's rows stream (issue 19): the first rows in
the column formats, the totals and the chart's points, beside the file, for each output format;
a chart over a column it cannot draw fails the run naming the key and the column."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reporthubd import domain
from reporthubd.engine import Engine
from reporthubd.formats import capture
from tests.engine.conftest import add_config, add_datasource, run_to_end

Status = domain.ExecutionStatus
OPTIONS = {
    "locale": "de_DE",
    "preview_rows": 3,
    "columns": {
        "amount": {"label": "Betrag", "kind": "currency", "currency": "EUR", "total": "sum"}
    },
    "chart": {"type": "bar", "x": "region", "y": "amount"},
}


@pytest.fixture
def sales_db(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "sales.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE s (id INTEGER, region TEXT, amount REAL)")
        conn.executemany(
            "INSERT INTO s VALUES (?, ?, ?)",
            [(i, ["North", "South", "East"][i % 3], i * 10.25) for i in range(1, 301)],
        )
    conn.close()
    return {"path": str(path)}


@pytest.mark.parametrize("output_format", ["csv", "excel", "json", "pdf"])
async def test_a_run_keeps_the_preview_totals_and_chart_beside_its_file(
    engine: Engine, sales_db: dict[str, str], output_format: str
) -> None:
    ds = await add_datasource(engine.store, "sqlite", sales_db)
    config = await add_config(
        engine.store,
        ds,
        "SELECT id, region, amount FROM s ORDER BY id",
        output_format=output_format,
        format_options=OPTIONS,
    )
    execution = await run_to_end(engine, config)
    assert execution.status is Status.COMPLETED, execution.error_message
    file = Path(execution.file_path)
    data = capture.load(file)
    assert data is not None
    assert [c["label"] for c in data["columns"]] == ["id", "region", "Betrag"]
    assert data["rows"] == [
        ["1", "South", "10,25\xa0€"],
        ["2", "East", "20,50\xa0€"],
        ["3", "North", "30,75\xa0€"],
    ]
    with sqlite3.connect(sales_db["path"]) as conn:
        total = conn.execute("SELECT SUM(amount) FROM s").fetchone()[0]
        sums = dict(conn.execute("SELECT region, SUM(amount) FROM s GROUP BY region").fetchall())
    assert data["totals"][2] == f"{total:,.2f}\xa0€".replace(",", "X").replace(".", ",").replace(
        "X", "."
    )
    chart = data["chart"]
    assert dict(zip(chart["labels"], chart["values"][0], strict=True)) == pytest.approx(sums)
    assert capture.chart_path(file).read_bytes().startswith(b"\x89PNG")


async def test_a_chart_over_a_text_column_fails_the_run_naming_key_and_column(
    engine: Engine, sales_db: dict[str, str]
) -> None:
    ds = await add_datasource(engine.store, "sqlite", sales_db)
    config = await add_config(
        engine.store,
        ds,
        "SELECT region, amount FROM s",
        output_format="pdf",
        format_options={"chart": {"type": "pie", "x": "amount", "y": "region"}},
    )
    execution = await run_to_end(engine, config)
    assert execution.status is Status.FAILED
    assert "'chart.y': column 'region' is text" in (execution.error_message or "")
