"""The engine runs a real report (SQLite source) and hands the file to the ledger: deliveries
run, a pending retry leaves the execution RUNNING with its file kept, the ledger settles it."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from reporthubd import domain
from reporthubd.engine import Engine
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.store import delivery_logs, executions, schema
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.deliverers.conftest import settings_for

DS = domain.DeliveryStatus
ES = domain.ExecutionStatus


async def test_engine_run_delivers_retries_and_settles(sqlite_store: Store, tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE sales (id INTEGER, region TEXT, amount REAL)")
        db.executemany(
            "INSERT INTO sales VALUES (?, ?, ?)", [(i, "north", i * 1.5) for i in range(1, 501)]
        )
    share = tmp_path / "share"
    share.mkdir()
    receiver = peers.WebhookReceiver()  # down for the first attempt
    async with sqlite_store.engine.begin() as conn:
        ds = (
            await conn.execute(
                sa.insert(schema.datasources).values(
                    name="src", type="sqlite", connection_config={"path": str(source)}
                )
            )
        ).inserted_primary_key[0]
        config_id = (
            await conn.execute(
                sa.insert(schema.configs).values(
                    name="sales",
                    datasource_id=ds,
                    query_text="SELECT id, region, amount FROM sales ORDER BY id",
                    output_format="csv",
                    file_name_template="sales_{{ today }}",
                )
            )
        ).inserted_primary_key[0]
        for method, config in [
            ("file_share", {"path": str(share), "sub_path": "{{ report_name }}/{{ date }}"}),
            ("webhook", {"url": receiver.url, "mode": "multipart"}),
        ]:
            await conn.execute(
                sa.insert(schema.deliveries).values(
                    config_id=config_id,
                    name=method,
                    method=method,
                    delivery_config=config,
                    retry_interval_minutes=1,
                )
            )
    settings = settings_for(sqlite_store, workspace=str(tmp_path / "workspace"))
    ledger = DeliveryLedger(settings, sqlite_store, node_id="engine-test")
    engine = Engine(settings, sqlite_store, node_id="engine-test", deliveries=ledger)
    await engine.start()
    try:
        execution_id = await engine.create_and_submit(
            config_id, trigger_type=domain.TriggerType.MANUAL
        )
        task = engine.task(execution_id)
        assert task is not None
        await task
        execution = await executions.get_execution(sqlite_store, execution_id)
        assert execution is not None and execution.status is ES.RUNNING  # a retry is pending
        assert execution.file_path and Path(execution.file_path).is_file()
        today = datetime.now(UTC).date().isoformat()
        landed = share / "sales" / today / f"sales_{today}.csv"
        assert landed.read_bytes() == Path(execution.file_path).read_bytes()
        # The janitor keeps the file of an execution whose deliveries have not settled.
        assert (await engine.clean_up(now=datetime(2100, 1, 1, tzinfo=UTC)))[
            "directories_removed"
        ] == 0
        assert Path(execution.file_path).is_file()

        await receiver.start()
        (pending,) = [
            r
            for r in await delivery_logs.logs_for_execution(sqlite_store, execution_id)
            if r.pending
        ]
        assert pending.next_retry_at is not None
        delay = (pending.next_retry_at - datetime.now(UTC)).total_seconds()
        await asyncio.sleep(max(0.0, delay) + 0.01)
        assert await ledger.process_due() == 1
    finally:
        await engine.stop()
        await receiver.stop()

    execution = await executions.get_execution(sqlite_store, execution_id)
    assert execution is not None and execution.status is ES.COMPLETED
    (hit,) = receiver.hits
    metadata, data = hit.multipart_file()
    assert data == landed.read_bytes()
    assert metadata["row_count"] == 500


async def test_delivery_templates_see_the_file_stem_and_extension(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """`file_stem` and `file_ext` (documented for every delivery template) are in the variables
    the engine hands to the ledger, not only in jobs built by hand."""
    source = tmp_path / "source.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE t (n INTEGER)")
        db.execute("INSERT INTO t VALUES (1)")
    share = tmp_path / "share"
    share.mkdir()
    async with sqlite_store.engine.begin() as conn:
        ds = (
            await conn.execute(
                sa.insert(schema.datasources).values(
                    name="src", type="sqlite", connection_config={"path": str(source)}
                )
            )
        ).inserted_primary_key[0]
        config_id = (
            await conn.execute(
                sa.insert(schema.configs).values(
                    name="numbers",
                    datasource_id=ds,
                    query_text="SELECT n FROM t",
                    output_format="csv",
                    file_name_template="numbers_{{ today }}",
                )
            )
        ).inserted_primary_key[0]
        await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=config_id,
                name="share",
                method="file_share",
                delivery_config={"path": str(share), "sub_path": "{{ file_ext }}/{{ file_stem }}"},
            )
        )
    settings = settings_for(sqlite_store, workspace=str(tmp_path / "workspace"))
    ledger = DeliveryLedger(settings, sqlite_store, node_id="engine-test")
    engine = Engine(settings, sqlite_store, node_id="engine-test", deliveries=ledger)
    await engine.start()
    try:
        execution_id = await engine.create_and_submit(
            config_id, trigger_type=domain.TriggerType.MANUAL
        )
        task = engine.task(execution_id)
        assert task is not None
        await task
    finally:
        await engine.stop()
    execution = await executions.get_execution(sqlite_store, execution_id)
    assert execution is not None and execution.status is ES.COMPLETED, execution
    stem = f"numbers_{datetime.now(UTC).date().isoformat()}"
    assert (share / "csv" / stem / f"{stem}.csv").read_text().splitlines() == ["n", "1"]
