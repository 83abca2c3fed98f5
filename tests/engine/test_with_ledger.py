"""The engine with the real delivery ledger: a file share delivery receives the file and is
logged; an empty result with policy skip logs SKIPPED deliveries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from reporthubd.engine import Engine
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.engine.conftest import add_config, add_datasource, engine_settings, run_to_end


async def test_engine_and_ledger(tmp_path: Path, engine_store: Store) -> None:
    data = tmp_path / "data.db"
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(5)])
    conn.close()
    share = tmp_path / "share"
    share.mkdir()
    settings = engine_settings(tmp_path)
    ledger = DeliveryLedger(settings, engine_store, node_id="test-node")
    engine = Engine(settings, engine_store, node_id="test-node", deliveries=ledger)
    await engine.start()
    try:
        ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
        full = await add_config(
            engine_store, ds, "SELECT id FROM t", name="Full", file_name_template="full_{report_id}"
        )
        empty = await add_config(
            engine_store,
            ds,
            "SELECT id FROM t WHERE id < 0",
            name="Empty",
            empty_result_policy="skip",
        )
        async with engine_store.engine.begin() as conn:
            for config in (full, empty):
                await conn.execute(
                    sa.insert(schema.deliveries).values(
                        config_id=config,
                        name=f"share-{config}",
                        method="file_share",
                        delivery_config={"path": str(share)},
                    )
                )
        delivered = await run_to_end(engine, full)
        skipped = await run_to_end(engine, empty)
    finally:
        await engine.stop()
    assert delivered.status.value == "COMPLETED", delivered.error_message
    assert (share / delivered.file_name).read_text() == "id\n0\n1\n2\n3\n4\n"
    assert skipped.status.value == "COMPLETED" and skipped.row_count == 0
    async with engine_store.engine.connect() as conn:
        logs = (
            await conn.execute(
                sa.select(schema.delivery_logs.c.execution_id, schema.delivery_logs.c.status)
            )
        ).all()
    assert sorted((row.execution_id, row.status) for row in logs) == sorted(
        [(delivered.id, "SUCCESS"), (skipped.id, "SKIPPED")]
    )
