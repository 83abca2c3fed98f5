"""Issue 4 acceptance against the running PostgreSQL and MariaDB: a 1,000,000-row CSV end to end,
timeouts and API cancels that really stop the query on the server, and bad input recorded as a
clear error on the execution row."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import secrets
import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from reporthubd import domain
from reporthubd.control.app import build_app
from reporthubd.engine import Engine
from reporthubd.store import executions
from tests import servers
from tests.engine.conftest import Source, add_config, add_datasource, run_to_end

Status = domain.ExecutionStatus
ROWS = 1_000_000

PG_SALES = f"""
CREATE TABLE sales AS
SELECT g AS id,
       timestamp '2024-01-01' + g * interval '17 seconds' AS created_at,
       date '2024-01-01' + (g % 700) AS sale_date,
       'customer ' || g AS customer_name,
       (ARRAY['North','South','East','West'])[1 + g % 4] AS region,
       round((g % 100000) * 1.37, 2)::numeric(12,2) AS amount,
       g % 50 AS quantity,
       g % 20 = 0 AS is_returned,
       'note ' || g || CASE WHEN g % 10 = 0 THEN ', "x"' ELSE '' END AS note,
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'DC-' || g END AS discount_code
FROM generate_series(1, {ROWS}) g
"""
MY_SALES = [
    """CREATE TABLE sales (id int PRIMARY KEY, created_at datetime, sale_date date,
       customer_name varchar(40), region varchar(20), amount decimal(12,2), quantity int,
       is_returned boolean, note text, discount_code varchar(16) NULL)""",
    f"""INSERT INTO sales
    SELECT seq, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq * 17 SECOND,
           DATE '2024-01-01' + INTERVAL (seq % 700) DAY,
           concat('customer ', seq), ELT(1 + seq % 4, 'North', 'South', 'East', 'West'),
           ROUND((seq % 100000) * 1.37, 2), seq % 50, seq % 20 = 0,
           concat('note ', seq, IF(seq % 10 = 0, ', "x"', '')),
           IF(seq % 3 = 0, NULL, concat('DC-', seq))
    FROM seq_1_to_{ROWS}""",
]
COLUMNS = (
    "id, created_at, sale_date, customer_name, region, amount, quantity, is_returned, note, "
    "discount_code"
)


async def _wait_gone(source: Source, tag: str) -> int:
    """Rows of the server's process list still running a query tagged `tag` (polled a while:
    the server removes a cancelled backend asynchronously)."""
    if source.type == "postgresql":
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            f"WHERE query LIKE '%{tag}%' AND pid <> pg_backend_pid()"
        )
    else:
        query = (
            "SELECT count(*) FROM information_schema.PROCESSLIST "
            f"WHERE INFO LIKE '%{tag}%' AND ID <> CONNECTION_ID()"
        )
    left = -1
    for _ in range(50):
        left = int((await source.fetch(query))[0][0])
        if left == 0:
            return 0
        await asyncio.sleep(0.1)
    return left


def _assert_complete_row(execution: domain.Execution, rows: int) -> None:
    assert execution.status is Status.COMPLETED, execution.error_message
    assert execution.error_message is None
    assert execution.row_count == rows
    assert execution.node_id == "test-node"
    assert execution.started_at is not None and execution.finished_at is not None
    assert execution.created_at is not None and execution.heartbeat_at is not None
    assert execution.started_at <= execution.finished_at
    assert (
        execution.file_name
        and execution.file_path
        and execution.file_path.endswith(execution.file_name)
    )
    path = Path(execution.file_path)
    assert path.parent.name == execution.id  # its own workspace directory
    assert execution.file_size == path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    assert execution.file_sha256 == digest.hexdigest()
    assert isinstance(execution.parameters, dict)


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
async def test_million_rows_csv_end_to_end(engine: Engine, source: Source) -> None:
    if source.type == "postgresql":
        await source.execute(PG_SALES, "ANALYZE sales")
    else:
        await source.execute(*MY_SALES)
    ds = await add_datasource(engine.store, source.type, source.config)
    config = await add_config(
        engine.store,
        ds,
        f"SELECT {COLUMNS} FROM sales WHERE id >= :first ORDER BY id",
        parameters={"first": 1},
        file_name_template="sales_{{ today | fmt('%Y%m%d') }}",
    )
    execution = await run_to_end(engine, config)
    _assert_complete_row(execution, ROWS)
    assert execution.parameters == {"first": 1}

    expected = (
        await source.fetch(
            "SELECT count(*), sum(id), sum(amount), count(discount_code), sum(quantity) FROM sales"
        )
    )[0]
    count = id_sum = quantity_sum = codes = returned = 0
    amount_sum = Decimal(0)
    with Path(execution.file_path or "").open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        assert next(reader) == [c.strip() for c in COLUMNS.split(",")]
        for row in reader:
            count += 1
            id_sum += int(row[0])
            amount_sum += Decimal(row[5])
            quantity_sum += int(row[6])
            codes += row[9] != ""
            returned += row[7] in {"true", "1"}
            if row[0] == "10":
                sample = row
    assert (count, id_sum, amount_sum, codes, quantity_sum) == (
        expected[0],
        expected[1],
        Decimal(expected[2]),
        expected[3],
        expected[4],
    )
    assert returned == ROWS // 20
    # Types render canonically: ISO timestamps and dates, exact decimals, quoted text.
    assert sample[1] == "2024-01-01 00:02:50"
    assert sample[2] == "2024-01-11"
    assert sample[5] == "13.70"
    assert sample[8] == 'note 10, "x"'


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
async def test_timeout_stops_the_query_on_the_server(engine: Engine, source: Source) -> None:
    tag = f"rh-timeout-{secrets.token_hex(4)}"
    sleep = "pg_sleep(3)" if source.type == "postgresql" else "SLEEP(3)"
    ds = await add_datasource(engine.store, source.type, source.config)
    config = await add_config(
        engine.store, ds, f"SELECT {sleep} AS slept, '{tag}' AS tag", timeout_seconds=1
    )
    started = time.monotonic()
    execution = await run_to_end(engine, config)
    waited = time.monotonic() - started
    assert execution.status is Status.TIMEOUT
    assert "timeout of 1 s" in (execution.error_message or "")
    # Ended by the timeout, not by the 3-second query finishing.
    assert waited < 3.0, waited
    assert execution.finished_at and execution.started_at
    assert (execution.finished_at - execution.started_at).total_seconds() < 3.0
    assert execution.file_path is None
    assert not (engine.workspace / execution.id).exists()
    assert await _wait_gone(source, tag) == 0


class _Runtime(SimpleNamespace):
    pass


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
async def test_cancel_through_the_api_during_a_long_export(engine: Engine, source: Source) -> None:
    tag = f"rh-cancel-{secrets.token_hex(4)}"
    if source.type == "postgresql":
        # Two small series joined: function scans materialise, so one huge series would not
        # stream its first row for a long time.
        query = (
            f"SELECT a * 100000 + b AS g, md5(b::text) AS h, '{tag}' AS tag "
            "FROM generate_series(1, 100000) a, generate_series(1, 100000) b"
        )
    else:
        query = f"SELECT seq, md5(seq) AS h, '{tag}' AS tag FROM seq_1_to_500000000"
    ds = await add_datasource(engine.store, source.type, source.config)
    config = await add_config(engine.store, ds, query, timeout_seconds=600)
    runtime = _Runtime(
        node_id="test-node",
        started_at=None,
        store=engine.store,
        draining=False,
        engine=engine,
        scheduler=None,
    )
    app = build_app(runtime, max_body_bytes=1 << 20)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    port = servers.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/api/execute/{config}", json={}) as response:
                assert response.status == 202
                execution_id = (await response.json())["data"]["execution_id"]
            progress: dict[str, Any] = {}
            for _ in range(300):
                async with http.get(f"{base}/api/execution/{execution_id}") as response:
                    data = (await response.json())["data"]
                progress = data.get("progress") or {}
                if data["status"] == "RUNNING" and (progress.get("bytes") or progress.get("rows")):
                    break
                await asyncio.sleep(0.05)
            assert progress.get("bytes") or progress.get("rows"), data
            assert any((engine.workspace / execution_id).iterdir())  # a partial file exists
            async with http.post(
                f"{base}/api/execution/{execution_id}/cancel", json={"reason": "test says stop"}
            ) as response:
                body = await response.json()
                assert response.status == 200, body
                assert body["data"]["status"] == "CANCELLED"
            async with http.post(f"{base}/api/execution/{execution_id}/cancel") as response:
                assert response.status == 409  # already finished
            async with http.get(f"{base}/api/execution/unknown-id") as response:
                assert response.status == 404
            async with http.post(f"{base}/api/execute/999999") as response:
                assert response.status == 404
    finally:
        await runner.cleanup()
    execution = await executions.get_execution(engine.store, execution_id)
    assert execution is not None
    assert execution.status is Status.CANCELLED
    assert "test says stop" in (execution.error_message or "")
    assert execution.finished_at is not None
    assert not (engine.workspace / execution_id).exists()  # partial file removed
    assert await _wait_gone(source, tag) == 0


BAD_INPUT = {
    # case: (query, config values, expected words in error_message)
    "missing parameter": ("SELECT * FROM t WHERE region = :region", {}, [":region"]),
    "syntax error": ("SELEC id FROM t", {}, ["syntax"]),
    "unknown column": ("SELECT nope_column FROM t", {}, ["nope_column"]),
    "delete": ("DELETE FROM t", {}, ["read"]),
    "ddl": ("CREATE TABLE t2 (a int)", {}, ["read"]),
    "template raises": (
        "SELECT * FROM t WHERE id > :n",
        {"parameters": {"n": "{{ 1 // 0 }}"}},
        ["parameter 'n'", "ZeroDivisionError"],
    ),
    "undefined template variable": (
        "SELECT * FROM t WHERE id > :n",
        {"parameters": {"n": "{{ no_such_thing }}"}},
        ["no_such_thing"],
    ),
    "unknown output format": ("SELECT * FROM t", {"output_format": "xml"}, ["output_format"]),
    "bad format option": (
        "SELECT * FROM t",
        {"format_options": {"delimeter": ";"}},
        ["delimeter"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
async def test_bad_input_is_a_clear_error_on_the_row(
    engine: Engine, source: Source, case: str
) -> None:
    await source.execute(
        "CREATE TABLE t (id int, region varchar(10))", "INSERT INTO t VALUES (1, 'a'), (2, 'b')"
    )
    query, values, words = BAD_INPUT[case]
    ds = await add_datasource(engine.store, source.type, source.config)
    config = await add_config(engine.store, ds, query, **values)
    execution = await run_to_end(engine, config)
    assert execution.status is Status.FAILED
    message = execution.error_message or ""
    for word in words:
        assert word.lower() in message.lower(), message
    assert execution.finished_at is not None and execution.file_path is None
    assert not (engine.workspace / execution.id).exists()
    # Nothing else harmed: the table is intact and a good report still runs.
    assert (await source.fetch("SELECT count(*) FROM t"))[0][0] == 2
    if case == "ddl":
        tables = await source.fetch(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 't2'"
        )
        assert tables[0][0] == 0
    good = await add_config(engine.store, ds, "SELECT id FROM t ORDER BY id")
    assert (await run_to_end(engine, good)).status is Status.COMPLETED


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
async def test_unreachable_host(engine: Engine, kind: str) -> None:
    port = servers.free_port()
    config_json = {"host": "127.0.0.1", "port": port, "username": "u", "database": "d"}
    ds = await add_datasource(engine.store, kind, config_json)
    config = await add_config(engine.store, ds, "SELECT 1")
    execution = await run_to_end(engine, config)
    assert execution.status is Status.FAILED
    assert "cannot connect" in (execution.error_message or "")
    assert f"127.0.0.1:{port}/d" in (execution.error_message or "")


async def test_wrong_password_mariadb(engine: Engine, my_source: Source) -> None:
    user = f"rh_pw_{secrets.token_hex(3)}"
    for host in ("127.0.0.1", "localhost", "%"):
        servers._mariadb_admin(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY 'right-secret-1'")
    try:
        config_json = dict(my_source.config, username=user, password="wrong-secret-99")
        ds = await add_datasource(engine.store, "mysql", config_json)
        config = await add_config(engine.store, ds, "SELECT 1")
        execution = await run_to_end(engine, config)
        message = execution.error_message or ""
        assert execution.status is Status.FAILED
        assert "Access denied" in message and "cannot connect" in message
        assert "wrong-secret-99" not in message
    finally:
        for host in ("127.0.0.1", "localhost", "%"):
            servers._mariadb_admin(f"DROP USER IF EXISTS '{user}'@'{host}'")


async def test_unknown_role_postgresql(engine: Engine, pg_source: Source) -> None:
    """The test server trusts every local login, so a wrong password cannot be shown here; an
    unknown role is the authentication failure it can produce."""
    config_json = dict(pg_source.config, username="no_such_role_rh", password="secret-pw-42")
    ds = await add_datasource(engine.store, "postgresql", config_json)
    config = await add_config(engine.store, ds, "SELECT 1")
    execution = await run_to_end(engine, config)
    message = execution.error_message or ""
    assert execution.status is Status.FAILED
    assert "no_such_role_rh" in message and "secret-pw-42" not in message
