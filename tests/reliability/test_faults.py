"""Data source and delivery faults against a real daemon: a source that accepts and never
answers, a source whose connection is killed mid-stream, a webhook receiver that flaps."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from reporthubd.store import schema
from reporthubd.store.database import Store
from tests import servers
from tests.engine.conftest import Source, add_config, add_datasource
from tests.reliability.conftest import Daemon, WebhookReceiver


class SilentListener:
    """Accepts TCP connections and never sends or reads a byte (a hung server or a black hole)."""

    def __init__(self) -> None:
        self.connections: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections.append(writer)

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.connections:
            writer.close()
        await self.server.wait_closed()


@pytest.fixture
async def silent() -> AsyncIterator[SilentListener]:
    listener = SilentListener()
    await listener.start()
    yield listener
    await listener.stop()


def sqlite_source(tmp_path: Path) -> Path:
    path = tmp_path / "good.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    conn.close()
    return path


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
async def test_a_source_that_never_answers_times_out_and_frees_its_slot(
    tmp_path: Path, rstore: Store, silent: SilentListener, kind: str
) -> None:
    hung = await add_datasource(
        rstore,
        kind,
        {
            "host": "127.0.0.1",
            "port": silent.port,
            "username": "nobody",
            "password": "x",
            "database": "none",
            "options": {"connect_timeout_seconds": 1},
        },
        max_concurrent_queries=1,
    )
    hung_report = await add_config(rstore, hung, "SELECT 1", timeout_seconds=2)
    good = await add_datasource(rstore, "sqlite", {"path": str(sqlite_source(tmp_path))})
    good_report = await add_config(rstore, good, "SELECT id FROM t")
    daemon = Daemon(tmp_path, execution={"max_concurrent_executions": 1})
    try:
        await daemon.ready()
        # Three in a row on a one-slot datasource and a one-slot engine: a slot kept by a hung
        # run would leave the next one PENDING for ever.
        ids = [await daemon.execute(hung_report) for _ in range(3)]
        after = await daemon.execute(good_report)
        for execution_id in ids:
            data = await daemon.wait_status(execution_id)
            assert data["status"] in {"FAILED", "TIMEOUT"}, data
            message = (data["error_message"] or "").lower()
            assert "time" in message, data  # "timed out" / "timeout", not a bare traceback
            assert "Traceback" not in (data["error_message"] or "")
        assert len(silent.connections) >= 3
        done = await daemon.wait_status(after)
        assert done["status"] == "COMPLETED" and done["row_count"] == 10, done
    finally:
        await daemon.close()


async def _pg_backends(source: Source, marker: str) -> list[int]:
    import asyncpg

    conn = await asyncpg.connect(
        host=servers.POSTGRES_HOST, port=servers.POSTGRES_PORT, user="postgres", database="postgres"
    )
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
            f"%{marker}%",
        )
        return [int(row["pid"]) for row in rows]
    finally:
        await conn.close()


async def _pg_kill(pids: list[int]) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        host=servers.POSTGRES_HOST, port=servers.POSTGRES_PORT, user="postgres", database="postgres"
    )
    try:
        for pid in pids:
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


def _my_threads(marker: str) -> list[int]:
    import pymysql

    conn = pymysql.connect(
        host=servers.MARIADB_HOST, port=servers.MARIADB_PORT, user="root", password=""
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM information_schema.processlist WHERE info LIKE %s "
                "AND id <> CONNECTION_ID()",
                (f"%{marker}%",),
            )
            return [int(row[0]) for row in cursor.fetchall()]
    finally:
        conn.close()


def _my_kill(ids: list[int]) -> None:
    import pymysql

    conn = pymysql.connect(
        host=servers.MARIADB_HOST, port=servers.MARIADB_PORT, user="root", password=""
    )
    try:
        with conn.cursor() as cursor:
            for thread in ids:
                cursor.execute(f"KILL CONNECTION {int(thread)}")
    finally:
        conn.close()


@pytest.mark.parametrize("output_format", ["csv", "excel"])
async def test_a_connection_killed_mid_stream_fails_the_run_and_removes_the_partial_file(
    tmp_path: Path,
    rstore: Store,
    source: Source,
    output_format: str,
) -> None:
    kind = source.type
    marker = f"midstream_{kind}_{output_format}"
    if kind == "postgresql":
        query = (
            f"SELECT g AS n, repeat('x', 200) AS pad /* {marker} */ FROM generate_series(1, "
            "50000000) g WHERE pg_sleep(0) IS NOT NULL"
        )
    else:
        query = (
            f"SELECT seq AS n, REPEAT('x', 200) AS pad /* {marker} */ FROM seq_1_to_50000000 "
            "WHERE SLEEP(0) = 0"
        )
    ds = await add_datasource(rstore, kind, source.config)
    report = await add_config(rstore, ds, query, output_format=output_format, timeout_seconds=300)
    good = await add_datasource(rstore, "sqlite", {"path": str(sqlite_source(tmp_path))})
    good_report = await add_config(rstore, good, "SELECT id FROM t")
    daemon = Daemon(tmp_path)
    try:
        await daemon.ready()
        execution_id = await daemon.execute(report)
        partial = daemon.workspace / execution_id
        for _ in range(600):  # until rows have reached the file
            data = await daemon.execution(execution_id)
            progress = data.get("progress") or {}
            streamed = progress.get("rows", 0) > 0 or progress.get("bytes", 0) > 0
            # a writer that renders in its own thread (Excel) counts rows before it has
            # opened its file: wait for the file too
            if streamed and any(partial.rglob("*")):
                break
            assert data["status"] in {"PENDING", "RUNNING"}, data["error_message"]
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("no rows streamed")
        assert any(partial.rglob("*")), "no partial file to remove"
        if kind == "postgresql":
            victims = await _pg_backends(source, marker)
            assert victims
            await _pg_kill(victims)
        else:
            victims = await asyncio.to_thread(_my_threads, marker)
            assert victims
            await asyncio.to_thread(_my_kill, victims)
        data = await daemon.wait_status(execution_id)
        assert data["status"] == "FAILED", data
        message = data["error_message"] or ""
        assert message and "Traceback" not in message and len(message) < 2000, message
        assert not message.startswith("internal error"), message  # a crash, not a clean failure
        assert data["file_path"] is None, data
        leftovers = list((daemon.workspace / execution_id).rglob("*"))
        assert leftovers == [], leftovers
        # The daemon and its pool carry on.
        after = await daemon.wait_status(await daemon.execute(good_report))
        assert after["status"] == "COMPLETED", after
    finally:
        await daemon.close()


class FlappingReceiver(WebhookReceiver):
    """A webhook receiver that fails (503, or reads the body and drops the connection without
    answering), then answers 200, then fails for ever after. It keeps one copy per
    Idempotency-Key, as docs/deliveries.md tells receivers to."""

    def __init__(self, first: int) -> None:
        super().__init__()
        self.answers = [first, 200]
        self.requests: list[dict[str, Any]] = []
        self.delivered: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        status = self.answers.pop(0) if self.answers else 503
        key = request.headers.get("Idempotency-Key", "")
        self.requests.append({"key": key, "status": status})
        if status == 0:  # the body arrived; the answer never does
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if status == 200 and key not in self.delivered:
            self.delivered.append(key)
        return web.Response(status=status, text="flap")


@pytest.mark.parametrize("first", [503, 0], ids=["503", "dropped-after-body"])
async def test_a_flapping_webhook_is_retried_and_gets_exactly_one_copy(
    tmp_path: Path, rstore: Store, first: int
) -> None:
    receiver = FlappingReceiver(first)
    await receiver.start()
    good = await add_datasource(rstore, "sqlite", {"path": str(sqlite_source(tmp_path))})
    report = await add_config(rstore, good, "SELECT id FROM t")
    async with rstore.engine.begin() as conn:
        result = await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=report,
                name="flapping hook",
                method="webhook",
                delivery_config={"url": f"http://127.0.0.1:{receiver.port}/hook"},
                max_retry=5,
                retry_interval_minutes=1,
            )
        )
        delivery_id = int(result.inserted_primary_key[0])
    daemon = Daemon(tmp_path, execution={"retry_time_scale": 0.01})
    try:
        await daemon.ready()
        execution_id = await daemon.execute(report)
        assert (await daemon.wait_status(execution_id))["status"] == "COMPLETED"
        rows: list[Any] = []
        for _ in range(600):
            async with rstore.engine.connect() as conn:
                rows = list(
                    await conn.execute(
                        sa.select(schema.delivery_logs)
                        .where(schema.delivery_logs.c.execution_id == execution_id)
                        .order_by(schema.delivery_logs.c.attempt)
                    )
                )
            if any(row.status == "SUCCESS" for row in rows):
                break
            await asyncio.sleep(0.1)
        # Give a spurious extra retry time to show up before counting copies.
        await asyncio.sleep(2)
        async with rstore.engine.connect() as conn:
            rows = list(
                await conn.execute(
                    sa.select(schema.delivery_logs)
                    .where(schema.delivery_logs.c.execution_id == execution_id)
                    .order_by(schema.delivery_logs.c.attempt)
                )
            )
    finally:
        await daemon.close()
        await receiver.stop()
    assert receiver.delivered == [f"{execution_id}:{delivery_id}"], receiver.requests
    assert [r["status"] for r in receiver.requests] == [first, 200], receiver.requests
    # Both attempts carried the same key, so the receiver kept exactly one copy.
    assert len({r["key"] for r in receiver.requests}) == 1, receiver.requests
    statuses = [row.status for row in rows]
    assert statuses[-1] == "SUCCESS" and statuses.count(statuses[-1]) == 1, statuses
    assert len(rows) == 2, [(r.attempt, r.status, r.error_message) for r in rows]
    assert rows[0].error_message, rows[0]
    if first == 503:
        assert "503" in rows[0].error_message, rows[0]
