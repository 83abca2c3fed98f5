"""`reporthubd check --connect`: column formats and charts against the real columns of each
report's query, described by the data source without running it (Connector.describe), on the
running MariaDB and PostgreSQL and on a SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd.config import StoreSettings
from reporthubd.connectors import base
from reporthubd.connectors.base import ColumnKind, ConnectorError, QueryRequest
from reporthubd.domain import Datasource, DatasourceType
from reporthubd.store import migrate, schema
from reporthubd.store.database import Store
from tests import servers
from tests.connectors.sources import mariadb_admin
from tests.daemon_process import write_config

TABLE = "CREATE TABLE sales (region varchar(20), revenue decimal(12,2), day date)"
ROWS = "INSERT INTO sales VALUES ('North', 1234.50, '2026-11-02'), ('South', 99.00, '2026-11-03')"
FAILS_WHEN_RUN = {
    # Each fails only when the statement runs: describing it must not run it.
    "mysql": "SELECT (SELECT 1 UNION SELECT 2) AS two, region FROM sales",
    "postgresql": "SELECT (SELECT 1 UNION SELECT 2) AS two, region FROM sales",
    "sqlite": "SELECT json('not json') AS two, region FROM sales",
}


async def _pg(name: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        host=servers.POSTGRES_HOST, port=servers.POSTGRES_PORT, user="postgres", database=name
    )
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Datasource]]:
    """A `sales` table on each of the three sources, as report_datasources would name them."""
    folder = tmp_path_factory.mktemp("sources")
    path = folder / "sales.db"
    with sqlite3.connect(path) as conn:
        conn.execute(TABLE)
        conn.execute(ROWS)
    conn.close()
    maria = servers.create_database("mariadb", folder)
    pg = servers.create_database("postgresql", folder)
    try:
        mariadb_admin(TABLE, maria.name)
        mariadb_admin(ROWS, maria.name)
        asyncio.run(_pg(pg.name, TABLE, ROWS))
        yield {
            "sqlite": Datasource(
                id=1,
                name="files",
                type=DatasourceType.SQLITE,
                connection_config={"path": str(path)},
            ),
            "mysql": Datasource(
                id=2,
                name="shop",
                type=DatasourceType.MYSQL,
                connection_config={
                    "host": servers.MARIADB_HOST,
                    "port": servers.MARIADB_PORT,
                    "database": maria.name,
                    "username": "root",
                },
            ),
            "postgresql": Datasource(
                id=3,
                name="ledger",
                type=DatasourceType.POSTGRESQL,
                connection_config={
                    "host": servers.POSTGRES_HOST,
                    "port": servers.POSTGRES_PORT,
                    "database": pg.name,
                    "username": "postgres",
                },
            ),
        }
    finally:
        maria.drop()
        pg.drop()


@pytest.mark.parametrize("kind", ["mysql", "postgresql", "sqlite"])
async def test_describe_gives_the_streams_columns_without_running_the_query(
    sources: dict[str, Datasource], kind: str
) -> None:
    connector = base.create(sources[kind])
    await connector.open()
    try:
        query = QueryRequest(
            sql="SELECT region, revenue, day FROM sales WHERE day >= :since ORDER BY region",
            parameters={"since": None},
        )
        described = await connector.describe(query)
        assert described is not None
        async with connector.stream(
            QueryRequest(sql=query.sql, parameters={"since": "2026-01-01"})
        ) as result:
            streamed = list(result.columns)
            assert [len(b) async for b in result.batches()] == [2]
        assert [c.name for c in described.columns] == ["region", "revenue", "day"]
        if kind == "sqlite":
            assert not described.kinds_known
        else:
            assert described.kinds_known
            assert [(c.kind, c.source_type) for c in described.columns] == [
                (c.kind, c.source_type) for c in streamed
            ]
            assert [c.kind for c in described.columns] == [
                ColumnKind.TEXT,
                ColumnKind.DECIMAL,
                ColumnKind.DATE,
            ]

        runtime = QueryRequest(sql=FAILS_WHEN_RUN[kind])
        described = await connector.describe(runtime)
        assert described is not None
        assert [c.name for c in described.columns] == ["two", "region"]
        with pytest.raises(ConnectorError):
            async with connector.stream(runtime) as result:
                [b async for b in result.batches()]

        with pytest.raises(ConnectorError, match="nope"):
            await connector.describe(QueryRequest(sql="SELECT nope FROM sales"))
        # The connector is still usable after a refused statement.
        again = await connector.describe(QueryRequest(sql="SELECT region FROM sales"))
        assert again is not None and [c.name for c in again.columns] == ["region"]
    finally:
        await connector.close()


def _report(name: str, source_id: int, query: str, **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "datasource_id": source_id,
        "query_text": query,
        "output_format": "pdf",
        "format_options": options,
    }


REVENUE = [{"name": "revenue", "kind": "currency", "currency": "EUR"}]
CHART = {"type": "bar", "x": "region", "y": "revenue"}
QUERY = "SELECT region, revenue, day FROM sales WHERE day >= :since"


async def _seed(store_url: str, sources: dict[str, Datasource]) -> dict[str, int]:
    store = Store(StoreSettings(url=store_url))
    await store.start()
    ids: dict[str, int] = {}
    try:
        await migrate.upgrade(store)
        async with store.engine.begin() as conn:
            source_ids = {}
            for kind, source in sources.items():
                source_ids[kind] = (
                    await conn.execute(
                        sa.insert(schema.datasources).values(
                            name=source.name,
                            type=source.type.value,
                            connection_config=dict(source.connection_config),
                        )
                    )
                ).inserted_primary_key[0]
            reports = []
            for kind in sources:
                sid = source_ids[kind]
                reports += [
                    _report(f"{kind}-good", sid, QUERY, columns=REVENUE, chart=CHART),
                    _report(
                        f"{kind}-runtime", sid, FAILS_WHEN_RUN[kind], columns=[{"name": "two"}]
                    ),
                    _report(f"{kind}-typo", sid, QUERY, columns=[{"name": "revenu"}]),
                    _report(
                        f"{kind}-text-chart",
                        sid,
                        QUERY,
                        chart={"type": "bar", "x": "day", "y": "region"},
                    ),
                    _report(f"{kind}-broken", sid, "SELECT nope FROM sales", columns=REVENUE),
                    _report(
                        f"{kind}-sheet",
                        sid,
                        QUERY,
                        sheets=[
                            {
                                "name": "Days",
                                "query": "SELECT day FROM sales",
                                "columns": [{"name": "dya", "kind": "date"}],
                            }
                        ],
                    ),
                ]
            for report in reports:
                defaults = (
                    {"parameters": {"since": "2026-01-01"}} if "good" in report["name"] else {}
                )
                ids[report["name"]] = (
                    await conn.execute(sa.insert(schema.configs).values(**report, **defaults))
                ).inserted_primary_key[0]
    finally:
        await store.stop()
    return ids


def _check(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reporthubd", "check", "-c", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_check_connect_names_the_report_the_key_and_the_column(
    sources: dict[str, Datasource], tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    ids = await _seed(store_url, sources)
    config, _ = write_config(tmp_path, store_url)

    offline = await asyncio.to_thread(_check, config)
    assert offline.returncode == 0, offline.stdout + offline.stderr  # nothing to see offline

    done = await asyncio.to_thread(_check, config, "--connect")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    lines = [line for line in out.splitlines() if line.startswith("  - ")]

    def problem(name: str) -> list[str]:
        return [line for line in lines if f"report_configs id={ids[name]}:" in line]

    for kind in sources:
        assert problem(f"{kind}-good") == [], out
        assert problem(f"{kind}-runtime") == [], out
        (typo,) = problem(f"{kind}-typo")
        assert (
            f"'{kind}-typo': pdf format option 'columns.revenu': the result has no column "
            "'revenu' (its columns: region, revenue, day)" in typo
        )
        (broken,) = problem(f"{kind}-broken")
        assert f"'{kind}-broken': query_text:" in broken and "nope" in broken
        (sheet,) = problem(f"{kind}-sheet")
        assert (
            f"'{kind}-sheet': format option 'sheets[1].columns': pdf format option "
            "'columns.dya': the result has no column 'dya' (its columns: day)" in sheet
        )
    for kind in ("mysql", "postgresql"):
        (text_chart,) = problem(f"{kind}-text-chart")
        assert (
            f"'{kind}-text-chart': format option 'chart.y': column 'region' is text" in text_chart
        )
        assert "a chart needs a numeric column" in text_chart
    # SQLite types values, not columns: its names are checked, its kinds cannot be.
    assert problem("sqlite-text-chart") == [], out
    assert (
        "note: datasource 'files': the column names of 5 queries checked, not their kinds "
        "(sqlite types values, not columns)" in out
    )
    assert f"problems: {3 * 3 + 2} invalid active rows" in out
