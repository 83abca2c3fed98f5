"""The PostgreSQL, MySQL/MariaDB and SQLite connectors on their own, against real servers."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from reporthubd import domain
from reporthubd.connectors import base as connectors
from tests import servers
from tests.engine.conftest import Source


def _connector(kind: str, config: dict[str, Any]) -> connectors.Connector:
    datasource = domain.Datasource(
        id=1, name="t", type=domain.DatasourceType(kind), connection_config=config
    )
    return connectors.create(datasource)


async def _collect(connector: connectors.Connector, sql: str, **parameters: Any) -> Any:
    request = connectors.QueryRequest(sql=sql, parameters=parameters, batch_size=3)
    async with connector.stream(request) as result:
        batches = [batch async for batch in result.batches()]
    return result.columns, batches


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
async def test_stream_types_batches_and_parameters(source: Source) -> None:
    await source.execute(
        "CREATE TABLE t (id int, name varchar(20), amount decimal(10,2), day date, at timestamp)",
        "INSERT INTO t VALUES (1, 'a😀', 1.50, '2026-01-02', '2026-01-02 03:04:05'), "
        "(2, 'b', NULL, '2026-01-03', '2026-01-03 00:00:00'), "
        "(3, 'c', 3.00, '2026-01-04', '2026-01-04 00:00:00'), "
        "(4, 'd', 4.25, '2026-01-05', '2026-01-05 00:00:00')",
    )
    connector = _connector(source.type, source.config)
    await connector.open()
    try:
        checked = await connector.test()
        assert checked.ok and checked.server_version
        # A date parameter given as text (JSON triggers, the CLI) binds to the date column.
        columns, batches = await _collect(
            connector, "SELECT * FROM t WHERE day >= :since ORDER BY id", since="2026-01-02"
        )
        assert [len(b) for b in batches] == [3, 1]
        kinds = [c.kind for c in columns]
        assert kinds[:4] == [
            connectors.ColumnKind.INTEGER,
            connectors.ColumnKind.TEXT,
            connectors.ColumnKind.DECIMAL,
            connectors.ColumnKind.DATE,
        ]
        first = batches[0][0]
        assert first[:4] == (1, "a😀", Decimal("1.50"), date(2026, 1, 2))
        assert first[4].replace(tzinfo=None) == datetime(2026, 1, 2, 3, 4, 5)
        assert batches[0][1][2] is None
        # The connection is reusable, and read-only.
        _, again = await _collect(connector, "SELECT count(*) AS n FROM t")
        assert again == [[(4,)]]
        with pytest.raises(connectors.ConnectorError, match=r"(?i)read.only"):
            await _collect(connector, "DELETE FROM t")
        with pytest.raises(connectors.ConnectorError, match="nope"):
            await _collect(connector, "SELECT nope FROM t")
    finally:
        await connector.close()
    assert (await source.fetch("SELECT count(*) FROM t"))[0][0] == 4


async def test_mysql_session_is_utc(my_source: Source) -> None:
    connector = _connector("mysql", my_source.config)
    await connector.open()
    try:
        _, batches = await _collect(
            connector, "SELECT @@session.time_zone, @@session.character_set_results"
        )
        assert batches == [[("+00:00", "utf8mb4")]]
    finally:
        await connector.close()


async def test_postgresql_timestamptz_is_aware(pg_source: Source) -> None:
    connector = _connector("postgresql", pg_source.config)
    await connector.open()
    try:
        columns, batches = await _collect(
            connector,
            "SELECT timestamptz '2026-01-02 03:04:05+02' AS at, :flag::boolean AS f",
            flag="yes",
        )
        assert columns[0].kind is connectors.ColumnKind.DATETIME_TZ
        assert batches == [[(datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC), True)]]
    finally:
        await connector.close()


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
async def test_connect_errors_name_the_host_not_the_secret(kind: str) -> None:
    port = servers.free_port()
    connector = _connector(
        kind,
        {
            "host": "127.0.0.1",
            "port": port,
            "username": "u",
            "password": "pw-s3cret",
            "database": "db",
        },
    )
    with pytest.raises(connectors.ConnectorError) as error:
        await connector.open()
    assert f"127.0.0.1:{port}/db" in str(error.value) and "pw-s3cret" not in str(error.value)
    await connector.close()


async def test_sqlite_stream_read_only_and_interrupt(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER, v REAL, s TEXT, b BLOB)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?, ?)", [(i, i / 2, f"s{i}", b"\x01") for i in range(7)]
        )
    conn.close()
    connector = _connector("sqlite", {"path": str(path)})
    await connector.open()
    try:
        columns, batches = await _collect(connector, "SELECT * FROM t WHERE id >= :n", n=2)
        assert [len(b) for b in batches] == [3, 2]
        assert [c.kind.value for c in columns] == ["integer", "float", "text", "binary"]
        with pytest.raises(connectors.ConnectorError, match="readonly"):
            await _collect(connector, "DELETE FROM t")
        slow = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 1000000000) SELECT max(x) FROM c"
        )
        task = asyncio.create_task(_collect(connector, slow))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        _, after = await _collect(connector, "SELECT count(*) FROM t")  # still usable
        assert after == [[(7,)]]
    finally:
        await connector.close()


async def test_server_side_backstop_postgresql(
    pg_source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the daemon die before it can cancel, the server's own statement timeout stops the
    query (here with no margin, so it fires at the query timeout)."""
    from reporthubd.connectors import postgresql

    monkeypatch.setattr(postgresql, "SERVER_BACKSTOP_SECONDS", 0.0)
    connector = _connector("postgresql", pg_source.config)
    await connector.open()
    try:
        request = connectors.QueryRequest(sql="SELECT pg_sleep(5)", timeout_seconds=0.5)
        with pytest.raises(connectors.ConnectorError, match="statement timeout"):
            async with connector.stream(request) as result:
                async for _ in result.batches():
                    pass
    finally:
        await connector.close()


async def test_server_side_backstop_mariadb(my_source: Source) -> None:
    connector = _connector("mysql", my_source.config)
    await connector.open()
    try:
        request = connectors.QueryRequest(
            sql="SELECT @@session.max_statement_time AS limit_seconds", timeout_seconds=3
        )
        async with connector.stream(request) as result:
            batches = [batch async for batch in result.batches()]
        assert float(batches[0][0][0]) == 13.0  # the timeout plus the margin
    finally:
        await connector.close()
