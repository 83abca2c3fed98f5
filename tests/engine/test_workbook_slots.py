"""A workbook's sheets run under their own datasource's limit (engine/sections.py, pool.py
`Slot.move`): four runs of a report on SQLite, each with a sheet on a MariaDB datasource whose
`max_concurrent_queries` is 1, all in flight at once. MariaDB's own PROCESSLIST, polled while
they run, never lists more than one connection to that database, and the engine never counts
more than one running there; every workbook still has both sheets."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd.domain import TriggerType
from reporthubd.engine import Engine
from reporthubd.store import executions, schema
from reporthubd.store.database import Store
from tests import servers
from tests.engine.conftest import (
    RecordingRunner,
    Source,
    _my_source,
    add_config,
    add_datasource,
    engine_settings,
)

RUNS = 4


@pytest.fixture
def mariadb() -> Iterator[Source]:
    yield from _my_source()


@pytest.fixture
async def engine(tmp_path: Path, engine_store: Store) -> AsyncIterator[Engine]:
    settings = engine_settings(tmp_path, max_concurrent_executions=RUNS)
    eng = Engine(settings, engine_store, node_id="test-node", deliveries=RecordingRunner())
    await eng.start()
    yield eng
    await eng.stop()


async def _watch(database: str, key: str, engine: Engine, seen: list[tuple[int, int]]) -> None:
    import aiomysql

    conn = await aiomysql.connect(
        host=servers.MARIADB_HOST, port=servers.MARIADB_PORT, user="root", password=""
    )
    try:
        while True:
            async with conn.cursor() as cursor:
                await cursor.execute(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s",
                    (database,),
                )
                (listed,) = await cursor.fetchone()
            await conn.commit()
            running = engine.stats().by_datasource.get(key, {}).get("running", 0)
            seen.append((int(listed), running))
            await asyncio.sleep(0.02)
    finally:
        conn.close()


async def test_sheets_on_another_datasource_keep_to_its_limit(
    engine: Engine, engine_store: Store, mariadb: Source, tmp_path: Path
) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    data = tmp_path / "main.db"
    with contextlib.closing(sqlite3.connect(data)) as conn, conn:
        conn.execute("CREATE TABLE orders (id INTEGER, amount REAL)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i * 1.5) for i in range(20)])
    await mariadb.execute("CREATE TABLE notes (id INT, note VARCHAR(20))")
    await mariadb.execute("INSERT INTO notes VALUES (1, 'one'), (2, 'two')")
    main = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    slow = await add_datasource(engine_store, "mysql", mariadb.config, max_concurrent_queries=1)
    async with engine_store.engine.connect() as conn:
        slow_name = await conn.scalar(
            sa.select(schema.datasources.c.name).where(schema.datasources.c.id == slow)
        )
    config = await add_config(
        engine_store,
        main,
        "SELECT id, amount FROM orders ORDER BY id",
        output_format="excel",
        format_options={
            "sheet_name": "Orders",
            "sheets": [
                {
                    "name": "Notes",
                    "datasource": slow_name,
                    "query": "SELECT id, note, SLEEP(0.2) AS slept FROM notes ORDER BY id",
                }
            ],
        },
    )
    seen: list[tuple[int, int]] = []
    watcher = asyncio.create_task(
        _watch(str(mariadb.config["database"]), f"datasource-{slow}", engine, seen),
        name="processlist-watch",
    )
    try:
        ids = [
            await engine.create_and_submit(config, trigger_type=TriggerType.MANUAL)
            for _ in range(RUNS)
        ]
        await asyncio.gather(*(t for i in ids if (t := engine.task(i)) is not None))
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    runs = [await executions.get_execution(engine_store, i) for i in ids]
    assert [r.status.value for r in runs if r is not None] == ["COMPLETED"] * RUNS, [
        r.error_message for r in runs if r is not None
    ]
    assert max(listed for listed, _ in seen) == 1, seen  # one connection at a time, never more
    assert max(running for _, running in seen) == 1
    for run in runs:
        assert run is not None and run.file_path is not None
        book = openpyxl.load_workbook(run.file_path, read_only=True)
        assert book.sheetnames == ["Orders", "Notes"]
        assert len(list(book["Notes"].iter_rows(values_only=True))) == 3
        book.close()
