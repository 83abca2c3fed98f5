"""Split by key, acceptance (issue 18): a report's query on MariaDB (and on PostgreSQL) split
into one file per branch, the rows ordered by branch or not; every file byte for byte equal to
the export of the same query filtered to its branch (MariaDB's raw text, PostgreSQL's COPY); the
daemon's open files bounded while it splits (counted in /proc/self/fd, against a file per key).
100,000 rows into 100 files always; 1,000,000 rows into 1,000 files in the background part. Peak
RSS against the single-file export is measured by bench/split.py (in separate processes: this
process's RSS carries the whole test session)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd import domain
from reporthubd.connectors import base as connectors
from reporthubd.engine import Engine, streaming
from reporthubd.formats import base as formats
from reporthubd.store import audiences as audience_rows
from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.engine.conftest import (
    RecordingRunner,
    Source,
    add_config,
    add_datasource,
    engine_settings,
    run_to_end,
)
from tests.engine.test_audiences import add_driver

COLUMNS = "id, branch, amount, booked, note"
ORDER = {"ordered": "branch, id", "unordered": "id"}


def query(order: str, where: str = "") -> str:
    return f"SELECT {COLUMNS} FROM ledger {where} ORDER BY {ORDER[order]}"


async def fill(source: Source, rows: int, keys: int) -> None:
    """`ledger`: `rows` rows over `keys` branches, interleaved by id (branch = id mod keys, the
    last branch left without rows), NULL notes and amounts with cents; `branches`: the audiences."""
    if source.type == "postgresql":
        await source.execute(
            "CREATE TABLE ledger (id INT PRIMARY KEY, branch VARCHAR(8), amount NUMERIC(12,2), "
            "booked DATE, note VARCHAR(40))",
            "CREATE INDEX ON ledger (branch, id)",
            "CREATE TABLE branches (code VARCHAR(8) PRIMARY KEY, manager VARCHAR(60))",
            f"INSERT INTO ledger SELECT g, 'B' || lpad((g % {keys - 1})::text, 4, '0'), "
            "(g * 37 % 100000) / 100.0, DATE '2026-01-01' + (g % 330), "
            "CASE WHEN g % 3 = 0 THEN NULL WHEN g % 7 = 0 THEN '' "
            "ELSE 'entry \"' || g || '\", ok' END "
            f"FROM generate_series(1, {rows}) AS g",
            "INSERT INTO branches SELECT 'B' || lpad(g::text, 4, '0'), 'm' || g || '@example.com' "
            f"FROM generate_series(0, {keys - 1}) AS g",
        )
        return
    await source.execute(
        "CREATE TABLE ledger (id INT PRIMARY KEY, branch VARCHAR(8), amount DECIMAL(12,2), "
        "booked DATE, note VARCHAR(40), KEY (branch, id))",
        "CREATE TABLE branches (code VARCHAR(8) PRIMARY KEY, manager VARCHAR(60))",
        f"INSERT INTO ledger SELECT seq, CONCAT('B', LPAD(seq MOD {keys - 1}, 4, '0')), "
        "(seq * 37 MOD 100000) / 100, DATE '2026-01-01' + INTERVAL (seq MOD 330) DAY, "
        "IF(seq MOD 3 = 0, NULL, CONCAT('entry \"', seq, '\", ok')) "
        f"FROM seq_1_to_{rows}",
        f"INSERT INTO branches SELECT CONCAT('B', LPAD(seq, 4, '0')), "
        f"CONCAT('m', seq, '@example.com') FROM seq_0_to_{keys - 1}",
    )


class FdWatch:
    """The most descriptors this process held while the run went (sampled every 20 ms)."""

    def __init__(self) -> None:
        self.before = len(os.listdir("/proc/self/fd"))
        self.peak = self.before
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, len(os.listdir("/proc/self/fd")))
            await asyncio.sleep(0.02)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample(), name="fd-watch")

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def engine(tmp_path: Path, engine_store: Store) -> AsyncIterator[Engine]:
    settings = engine_settings(tmp_path, max_concurrent_executions=4)
    eng = Engine(settings, engine_store, node_id="test-node", deliveries=RecordingRunner())
    await eng.start()
    yield eng
    await eng.stop()


async def filtered_export(source: domain.Datasource, sql: str, key: str, path: Path) -> bytes:
    connector = connectors.connector_class(source.type.value)(source)
    writer = formats.writer_class("csv")(
        {}, formats.RenderContext(report_name="r", execution_id="x")
    )
    try:
        await streaming.write_result(
            connector,
            writer,
            path,
            connectors.QueryRequest(sql=sql, parameters={"b": key}),
            max_rows=None,
            truncate=False,
            progress=streaming.Progress(execution_id="x"),
        )
    finally:
        await connector.close()
    return path.read_bytes()


async def split_and_compare(
    engine: Engine, store: Store, source: Source, tmp_path: Path, *, rows: int, keys: int
) -> None:
    await fill(source, rows, keys)
    ds = await add_datasource(store, source.type, source.config)
    datasource = domain.Datasource(
        id=ds, name="src", type=domain.DatasourceType(source.type), connection_config=source.config
    )
    for order in ORDER:
        config = await add_config(
            store, ds, query(order), name=f"ledger {order}", format_options={"split_by": "branch"}
        )
        await add_driver(
            store,
            config,
            ds,
            "SELECT code AS branch, manager AS recipients, 'st_' || code AS file_name "
            "FROM branches ORDER BY code"
            if source.type == "postgresql"
            else "SELECT code AS branch, manager AS recipients, CONCAT('st_', code) AS file_name "
            "FROM branches ORDER BY code",
            key_column="branch",
        )
        watch = FdWatch()
        watch.start()
        try:
            parent = await run_to_end(engine, config)
        finally:
            await watch.stop()
        assert parent.status.value == "COMPLETED", parent.error_message
        last = f"B{keys - 1:04d}"
        assert parent.error_message == (
            f"split by 'branch': {rows} rows, {keys - 1} files; 1 audiences without rows, "
            f"skipped as empty: {last!r}"
        )
        # A file per key would hold `keys` descriptors at once; the spill holds at most 32,
        # each running child (4) a spill reader and its file, plus the store's connections.
        assert watch.peak - watch.before < 64, (watch.before, watch.peak)

        e, a = schema.executions, schema.audiences
        async with store.engine.connect() as conn:
            children = (
                await conn.execute(
                    sa.select(a.c.audience_key, e.c.status, e.c.file_path, e.c.row_count)
                    .join(e, e.c.id == a.c.child_id)
                    .where(a.c.burst_id == parent.id)
                    .order_by(a.c.audience_key)
                )
            ).all()
        assert len(children) == keys
        burst = await audience_rows.get_burst(store, parent.id)
        assert burst is not None
        assert (burst.audiences, burst.delivered, burst.skipped, burst.failed) == (
            keys,
            keys - 1,
            1,
            0,
        )
        total = 0
        filtered = query(order, "WHERE branch = :b")
        for key, status, file_path, row_count in children:
            assert status == "COMPLETED"
            if key == last:
                assert file_path is None and row_count == 0
                continue
            assert Path(file_path).name == f"st_{key}.csv"
            expected = await filtered_export(datasource, filtered, key, tmp_path / "expected.csv")
            assert Path(file_path).read_bytes() == expected, key
            total += row_count
        assert total == rows


async def test_split_100k_rows_into_100_files(
    engine: Engine, engine_store: Store, my_source: Source, tmp_path: Path
) -> None:
    await split_and_compare(engine, engine_store, my_source, tmp_path, rows=100_000, keys=100)


async def test_split_on_postgresql_copy(
    engine: Engine, engine_store: Store, pg_source: Source, tmp_path: Path
) -> None:
    """The COPY path: chunks that may end inside a record, empty texts quoted apart from NULL."""
    await split_and_compare(engine, engine_store, pg_source, tmp_path, rows=30_000, keys=40)


@pytest.mark.background
@pytest.mark.timeout(900)
async def test_split_1m_rows_into_1000_files(
    engine: Engine, engine_store: Store, my_source: Source, tmp_path: Path
) -> None:
    await split_and_compare(engine, engine_store, my_source, tmp_path, rows=1_000_000, keys=1000)
