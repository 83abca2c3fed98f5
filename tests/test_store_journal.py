"""The store journal (reporthubd/store/journal.py): writes that record what happened wait out a
store outage on local disk and reach the store, in order, when it answers again — also after the
process died during the outage.

The store is a fresh PostgreSQL database reached through a TCP proxy this test can cut: "down"
closes every connection and refuses new ones, as a stopped or unreachable server does."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd import domain
from reporthubd.config import StoreSettings
from reporthubd.store import delivery_logs, executions, migrate, schema
from reporthubd.store.database import Store
from reporthubd.store.journal import Journal, JournalBusy, conflict, unreachable
from tests import servers

Status = domain.ExecutionStatus


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to the PostgreSQL server until cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = servers.free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            sink.transport.abort()
            self.writers.discard(sink)


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[Store, CuttableProxy]]:
    database = await asyncio.to_thread(servers.create_database, "postgresql", tmp_path)
    proxy = CuttableProxy(5432)
    await proxy.up()
    url = database.url.replace(":5432/", f":{proxy.port}/")
    assert url != database.url
    store = Store(StoreSettings(url=url, connect_timeout_seconds=2))
    await store.start()
    await migrate.upgrade(store)
    try:
        yield store, proxy
    finally:
        await proxy.down()
        await store.stop()
        await asyncio.to_thread(database.drop)


async def _running_execution(store: Store) -> str:
    async with store.engine.begin() as conn:
        config_id = await _config(conn)
    execution_id = await executions.insert_execution(
        store,
        config_id=config_id,
        trigger_type=domain.TriggerType.MANUAL,
        status=Status.RUNNING,
        node_id="node-a",
    )
    assert execution_id is not None
    return execution_id


async def _config(conn: sa.ext.asyncio.AsyncConnection) -> int:
    existing = (await conn.execute(sa.select(schema.configs.c.id))).scalar()
    if existing is not None:
        return int(existing)
    source = await conn.execute(
        sa.insert(schema.datasources).values(
            name="src", type="postgresql", connection_config={"host": "localhost"}
        )
    )
    config = await conn.execute(
        sa.insert(schema.configs).values(
            name="report",
            datasource_id=source.inserted_primary_key[0],
            query_text="SELECT 1",
            output_format="csv",
        )
    )
    await conn.execute(
        sa.insert(schema.deliveries).values(
            config_id=config.inserted_primary_key[0],
            method="file_share",
            name="share",
            delivery_config={"path": "/srv/share"},
        )
    )
    return int(config.inserted_primary_key[0])


async def _delivery_id(store: Store) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(sa.select(schema.deliveries.c.id))).scalar_one())


def _log(execution_id: str, delivery_id: int, attempt: int) -> delivery_logs.NewLog:
    now = datetime.now(UTC)
    return delivery_logs.NewLog(
        execution_id=execution_id,
        delivery_id=delivery_id,
        attempt=attempt,
        status=domain.DeliveryStatus.SUCCESS,
        target="/srv/share/report.csv",
        started_at=now,
        finished_at=now,
        details={"bytes": 12},
    )


async def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


async def test_writes_during_an_outage_wait_in_the_journal_and_reach_the_store_in_order(
    proxied: tuple[Store, CuttableProxy], tmp_path: Path
) -> None:
    store, proxy = proxied
    execution_id = await _running_execution(store)
    delivery_id = await _delivery_id(store)
    journal = Journal(store, tmp_path / "journal.jsonl")
    assert await journal.open() == 0
    try:
        # Reachable: a plain write, nothing journaled.
        assert await executions.update_execution(
            store, execution_id, durable=True, parameters={"region": "EU"}
        )
        assert journal.pending == 0

        await proxy.down()
        finished = datetime.now(UTC)
        assert await executions.update_execution(
            store, execution_id, durable=True, row_count=7, file_name="r.csv"
        )
        assert await delivery_logs.insert_logs(store, [_log(execution_id, delivery_id, 1)])
        assert await executions.update_execution(
            store,
            execution_id,
            only_if_status=(Status.RUNNING,),
            durable=True,
            status=Status.COMPLETED,
            finished_at=finished,
        )
        assert journal.pending == 3
        assert len(await _lines(journal.path)) == 3
        assert oct(os.stat(journal.path).st_mode & 0o777) == "0o600"
        # A write that is not durable still fails: the caller needs the store's answer.
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            await executions.update_execution(store, execution_id, row_count=8)

        flushing = asyncio.create_task(journal.flush())
        await asyncio.sleep(1.5)
        assert not flushing.done(), "the flush must wait for the store, not give up"
        assert journal.pending == 3
        await proxy.up()
        assert await asyncio.wait_for(flushing, 30) == 3
    finally:
        await journal.close()

    assert journal.pending == 0
    assert await _lines(journal.path) == []
    row = await executions.get_execution(store, execution_id)
    assert row is not None
    assert (row.status, row.row_count, row.file_name) == (Status.COMPLETED, 7, "r.csv")
    assert row.parameters == {"region": "EU"}
    assert row.finished_at == finished
    logs = await delivery_logs.logs_for_execution(store, execution_id)
    assert [(log.attempt, log.status, log.details) for log in logs] == [
        (1, domain.DeliveryStatus.SUCCESS, {"bytes": 12})
    ]


async def test_a_process_that_dies_during_the_outage_flushes_at_the_next_start(
    proxied: tuple[Store, CuttableProxy], tmp_path: Path
) -> None:
    store, proxy = proxied
    execution_id = await _running_execution(store)
    delivery_id = await _delivery_id(store)
    path = tmp_path / "journal.jsonl"
    first = Journal(store, path)
    await first.open()
    await proxy.down()
    for attempt in (1, 2):
        await delivery_logs.insert_logs(store, [_log(execution_id, delivery_id, attempt)])
    await executions.update_execution(
        store,
        execution_id,
        only_if_status=(Status.RUNNING,),
        durable=True,
        status=Status.FAILED,
        error_message="2 of 2 deliveries failed",
    )
    # The process dies: no close, no flush; the kernel drops its lock.
    assert first._lock_fd is not None
    os.close(first._lock_fd)
    store.journal = None
    # A torn last line, as a kill in the middle of an append leaves it.
    with path.open("a") as handle:
        handle.write('{"seq":4,"op":"update_exec')

    await proxy.up()
    second = Journal(store, path)
    assert await second.open() == 3
    try:
        assert await second.flush() == 3
    finally:
        await second.close()
    row = await executions.get_execution(store, execution_id)
    assert row is not None and row.status is Status.FAILED
    assert row.error_message == "2 of 2 deliveries failed"
    logs = await delivery_logs.logs_for_execution(store, execution_id)
    assert sorted(log.attempt for log in logs) == [1, 2]


async def test_replaying_what_the_store_already_has_changes_nothing(
    proxied: tuple[Store, CuttableProxy], tmp_path: Path
) -> None:
    """A crash between applying a record and marking it done replays it: harmless."""
    store, proxy = proxied
    execution_id = await _running_execution(store)
    delivery_id = await _delivery_id(store)
    path = tmp_path / "journal.jsonl"
    journal = Journal(store, path)
    await journal.open()
    await proxy.down()
    await delivery_logs.insert_logs(store, [_log(execution_id, delivery_id, 1)])
    await executions.update_execution(
        store,
        execution_id,
        only_if_status=(Status.RUNNING,),
        durable=True,
        status=Status.COMPLETED,
    )
    saved = path.read_text()
    await proxy.up()
    await journal.flush()
    await journal.close()
    # Another node moved the row on since; the replayed conditional update must not undo that.
    await executions.update_execution(store, execution_id, status=Status.CANCELLED)
    path.write_text(saved)

    again = Journal(store, path)
    assert await again.open() == 2
    try:
        await again.flush()
    finally:
        await again.close()
    assert again.dropped == 0
    row = await executions.get_execution(store, execution_id)
    assert row is not None and row.status is Status.CANCELLED
    assert len(await delivery_logs.logs_for_execution(store, execution_id)) == 1


async def test_a_record_the_store_refuses_is_dropped_and_the_rest_flushed(
    proxied: tuple[Store, CuttableProxy], tmp_path: Path
) -> None:
    store, proxy = proxied
    execution_id = await _running_execution(store)
    journal = Journal(store, tmp_path / "journal.jsonl")
    await journal.open()
    await proxy.down()
    await executions.update_execution(store, execution_id, durable=True, file_name="x" * 5000)
    await executions.update_execution(store, execution_id, durable=True, row_count=3)
    await proxy.up()
    try:
        assert await journal.flush() == 2
    finally:
        await journal.close()
    assert journal.dropped == 1
    row = await executions.get_execution(store, execution_id)
    assert row is not None and row.row_count == 3 and row.file_name is None


async def test_one_journal_file_serves_one_process(tmp_path: Path) -> None:
    store = Store(StoreSettings(url=f"sqlite:///{tmp_path}/store.db"))
    await store.start()
    other = Store(StoreSettings(url=f"sqlite:///{tmp_path}/store.db"))
    await other.start()
    journal = Journal(store, tmp_path / "j" / "journal.jsonl")
    await journal.open()
    try:
        with pytest.raises(JournalBusy, match="held by another reporthubd process"):
            await Journal(other, tmp_path / "j" / "journal.jsonl").open()
    finally:
        await journal.close()
        with contextlib.suppress(Exception):
            await other.stop()
        await store.stop()
    # Released on close: the next process takes it.
    later = Journal(store, tmp_path / "j" / "journal.jsonl")
    await store.start()
    await later.open()
    await later.close()
    await store.stop()


async def test_only_writes_about_a_waiting_execution_queue_behind_it(
    proxied: tuple[Store, CuttableProxy], tmp_path: Path
) -> None:
    store, proxy = proxied
    stuck = await _running_execution(store)
    other = await _running_execution(store)
    journal = Journal(store, tmp_path / "journal.jsonl")
    await journal.open()
    try:
        await proxy.down()
        await executions.update_execution(store, stuck, durable=True, row_count=1)
        await proxy.up()
        # The store is back, the flusher has not run yet: the other execution's write goes
        # straight through; the stuck one's next write waits behind its first.
        await executions.update_execution(store, other, durable=True, row_count=2)
        assert journal.pending == 1
        await executions.update_execution(
            store, stuck, only_if_status=(Status.RUNNING,), durable=True, status=Status.COMPLETED
        )
        assert journal.pending == 2
        row = await executions.get_execution(store, stuck)
        assert row is not None and (row.status, row.row_count) == (Status.RUNNING, None)
        assert await journal.flush() == 2
    finally:
        await journal.close()
    rows = {r: await executions.get_execution(store, r) for r in (stuck, other)}
    assert rows[other] is not None and rows[other].row_count == 2
    assert rows[stuck] is not None
    assert (rows[stuck].status, rows[stuck].row_count) == (Status.COMPLETED, 1)


def test_deadlocks_and_lock_timeouts_count_as_conflicts_to_retry() -> None:
    import asyncpg
    import pymysql

    def wrapped(orig: Exception) -> sa.exc.OperationalError:
        return sa.exc.OperationalError("UPDATE report_executions ...", {}, orig)

    deadlock = wrapped(pymysql.err.OperationalError(1213, "Deadlock found"))
    lock_wait = wrapped(pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"))
    refused = wrapped(pymysql.err.OperationalError(2003, "Can't connect to MySQL server"))
    pg_deadlock = wrapped(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))
    assert conflict(deadlock) and conflict(lock_wait) and conflict(pg_deadlock)
    assert not conflict(refused) and unreachable(refused)
    assert unreachable(deadlock)
    assert not unreachable(sa.exc.IntegrityError("INSERT ...", {}, Exception("duplicate")))
