"""Engine behaviour on SQLite data sources (fast): statuses, max_rows, empty results, deliveries,
parameters, the pool, cancel, drain, the janitor and the `execute` command."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd import cli, domain
from reporthubd.deliverers.base import DeliveryReport
from reporthubd.engine import Engine, UnknownConfig
from reporthubd.store import executions, schema
from reporthubd.store.database import Store
from tests.engine.conftest import (
    RecordingRunner,
    add_config,
    add_datasource,
    add_delivery,
    add_schedule,
    engine_settings,
    run_to_end,
)

Status = domain.ExecutionStatus
SLOW = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000000) "
    "SELECT max(x) FROM c"
)


@pytest.fixture
def data_db(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "data.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER, name TEXT, amount REAL)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?)", [(i, f"n{i}", i * 1.5) for i in range(1, 101)]
        )
    conn.close()
    return {"path": str(path)}


async def _sqlite_config(engine: Engine, data_db: dict[str, str], query: str, **values: Any) -> int:
    ds = await add_datasource(engine.store, "sqlite", data_db)
    return await add_config(engine.store, ds, query, **values)


async def test_sqlite_report_and_read_only(engine: Engine, data_db: dict[str, str]) -> None:
    config = await _sqlite_config(
        engine, data_db, "SELECT * FROM t WHERE id <= :n ORDER BY id", parameters={"n": 10}
    )
    execution = await run_to_end(engine, config)
    assert execution.status is Status.COMPLETED and execution.row_count == 10
    with Path(execution.file_path).open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "name", "amount"] and rows[1] == ["1", "n1", "1.5"]
    writer = await _sqlite_config(engine, data_db, "DELETE FROM t")
    failed = await run_to_end(engine, writer)
    assert failed.status is Status.FAILED and "readonly" in (failed.error_message or "")


async def test_max_rows_fails_or_truncates(engine: Engine, data_db: dict[str, str]) -> None:
    too_many = await _sqlite_config(engine, data_db, "SELECT * FROM t", max_rows=30)
    execution = await run_to_end(engine, too_many)
    assert execution.status is Status.FAILED
    assert "more than max_rows (30)" in (execution.error_message or "")
    cut = await _sqlite_config(
        engine, data_db, "SELECT * FROM t", max_rows=30, format_options={"truncate": True}
    )
    execution = await run_to_end(engine, cut)
    assert execution.status is Status.COMPLETED and execution.row_count == 30
    lines = Path(execution.file_path).read_text().splitlines()
    assert len(lines) == 32 and "truncated" in lines[-1]


async def test_empty_result_skip(engine: Engine, data_db: dict[str, str]) -> None:
    config = await _sqlite_config(
        engine, data_db, "SELECT * FROM t WHERE id < 0", empty_result_policy="skip"
    )
    await add_delivery(engine.store, config)
    execution = await run_to_end(engine, config)
    assert execution.status is Status.COMPLETED and execution.row_count == 0
    assert execution.file_path is None and not (engine.workspace / execution.id).exists()
    runner = engine.deliveries
    assert isinstance(runner, RecordingRunner)
    (job,) = runner.jobs
    assert job.file is None and job.skip_reason and "empty" in job.skip_reason
    assert len(job.deliveries) == 1
    # The default policy delivers an empty file (header only).
    deliver = await _sqlite_config(engine, data_db, "SELECT * FROM t WHERE id < 0")
    execution = await run_to_end(engine, deliver)
    assert execution.status is Status.COMPLETED and execution.row_count == 0
    assert Path(execution.file_path).read_text() == "id,name,amount\n"


@pytest.mark.parametrize(
    ("report", "status"),
    [
        (DeliveryReport(delivered=2), Status.COMPLETED),
        (DeliveryReport(delivered=1, failed=1), Status.PARTIAL),
        (DeliveryReport(failed=2), Status.FAILED),
        (DeliveryReport(delivered=1, pending=1), Status.RUNNING),
    ],
)
async def test_delivery_report_decides_the_status(
    tmp_path: Path,
    engine_store: Store,
    data_db: dict[str, str],
    report: DeliveryReport,
    status: Status,
) -> None:
    runner = RecordingRunner(report=report)
    engine = Engine(engine_settings(tmp_path), engine_store, node_id="test-node", deliveries=runner)
    await engine.start()
    try:
        config = await _sqlite_config(engine, data_db, "SELECT id FROM t", name="Daily sales")
        await add_delivery(engine.store, config)
        await add_delivery(engine.store, config)
        execution = await run_to_end(engine, config)
    finally:
        await engine.stop()
    assert execution.status is status
    assert execution.file_path and execution.row_count == 100  # file columns in every case
    (job,) = runner.jobs
    assert job.file is not None and job.file.row_count == 100 and len(job.deliveries) == 2
    assert job.variables["report_name"] == "Daily sales"
    assert job.variables["file_name"] == execution.file_name
    if status is Status.RUNNING:
        assert execution.finished_at is None
    else:
        assert execution.finished_at is not None


async def test_no_deliver(engine: Engine, data_db: dict[str, str]) -> None:
    config = await _sqlite_config(engine, data_db, "SELECT id FROM t")
    await add_delivery(engine.store, config)
    execution = await run_to_end(engine, config, deliver=False)
    assert execution.status is Status.COMPLETED
    assert engine.deliveries.jobs == []  # type: ignore[attr-defined]


async def test_parameter_precedence_and_logical_time(
    engine: Engine, data_db: dict[str, str]
) -> None:
    config = await _sqlite_config(
        engine,
        data_db,
        "SELECT :a AS a, :b AS b, :c AS c, :day AS day, :since AS since",
        parameters={
            "a": "config",
            "b": "config",
            "c": "config",
            "day": "{{ yesterday }}",
            "since": "{{ window_start | fmt('%Y-%m-%d %H:%M') }}",
        },
        file_name_template="{{ report_name }}_{{ today }}",
    )
    fire = datetime(2026, 3, 9, 8, tzinfo=UTC)
    values = []
    for _ in range(2):
        schedule = await add_schedule(
            engine.store,
            config,
            "0 9 * * 1-5",
            timezone="Europe/Berlin",
            parameters={"b": "schedule", "c": "schedule"},
        )
        execution = await run_to_end(
            engine,
            config,
            trigger_type=domain.TriggerType.SCHEDULE,
            schedule_id=schedule,
            scheduled_for=fire,
            parameters={"c": "trigger"},
        )
        assert execution.status is Status.COMPLETED, execution.error_message
        values.append(execution.parameters)
    assert (
        values[0]
        == values[1]
        == {
            "a": "config",
            "b": "schedule",
            "c": "trigger",
            "day": "2026-03-08",
            "since": "2026-03-06 09:00",
        }
    )
    rows = Path(execution.file_path).read_text().splitlines()
    assert rows[1] == "config,schedule,trigger,2026-03-08,2026-03-06 09:00"


async def test_definition_problems_fail_the_row(engine: Engine, data_db: dict[str, str]) -> None:
    config = await _sqlite_config(engine, data_db, "SELECT 1")
    async with engine.store.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.configs).where(schema.configs.c.id == config).values(is_active=False)
        )
    execution = await run_to_end(engine, config)
    assert execution.status is Status.FAILED and "inactive" in (execution.error_message or "")
    with pytest.raises(UnknownConfig):
        await engine.create_and_submit(424242, trigger_type=domain.TriggerType.MANUAL)


async def test_missing_sqlite_file(engine: Engine, tmp_path: Path) -> None:
    ds = await add_datasource(engine.store, "sqlite", {"path": str(tmp_path / "nope.db")})
    config = await add_config(engine.store, ds, "SELECT 1")
    execution = await run_to_end(engine, config)
    assert execution.status is Status.FAILED and "no such database" in (
        execution.error_message or ""
    )


async def test_pool_limits_queue_and_never_drop(
    tmp_path: Path, engine_store: Store, data_db: dict[str, str]
) -> None:
    settings = engine_settings(tmp_path, max_concurrent_executions=2)
    engine = Engine(settings, engine_store, node_id="test-node")
    await engine.start()
    try:
        ds = await add_datasource(engine.store, "sqlite", data_db, max_concurrent_queries=1)
        hold = await add_config(engine.store, ds, SLOW)
        config = await add_config(engine.store, ds, "SELECT id FROM t")
        holder = await engine.create_and_submit(hold, trigger_type=domain.TriggerType.MANUAL)
        ids = [
            await engine.create_and_submit(config, trigger_type=domain.TriggerType.MANUAL)
            for _ in range(4)
        ]
        while (progress := engine.progress(holder)) is None or progress.phase == "queued":
            await asyncio.sleep(0.01)
        # The datasource allows one query: the other four wait (in order), none is dropped.
        assert engine.stats()["running"] == 1 and engine.stats()["queued"] == 4
        key = f"datasource-{ds}"
        while engine.stats()["by_datasource"][key]["queued"] < 4:  # still loading definitions
            await asyncio.sleep(0.01)
        assert engine.stats()["by_datasource"][key] == {"running": 1, "queued": 4}
        assert await engine.cancel(holder, "make room")
        await asyncio.gather(*(t for i in ids if (t := engine.task(i)) is not None))
        rows = [await executions.get_execution(engine.store, i) for i in ids]
    finally:
        await engine.stop()
    assert all(r is not None and r.status is Status.COMPLETED for r in rows)
    starts = [r.started_at for r in rows if r is not None]
    assert starts == sorted(starts)  # first come, first served
    assert engine.stats()["running"] == engine.stats()["queued"] == 0


async def test_cancel_running_queued_and_pending(
    tmp_path: Path, engine_store: Store, data_db: dict[str, str]
) -> None:
    engine = Engine(
        engine_settings(tmp_path, max_concurrent_executions=1), engine_store, node_id="test-node"
    )
    await engine.start()
    try:
        slow = await _sqlite_config(engine, data_db, SLOW)
        running = await engine.create_and_submit(slow, trigger_type=domain.TriggerType.MANUAL)
        queued = await engine.create_and_submit(slow, trigger_type=domain.TriggerType.MANUAL)
        while (progress := engine.progress(running)) is None or progress.phase == "queued":
            await asyncio.sleep(0.01)
        assert await engine.cancel(queued, "not needed")
        assert await engine.cancel(running, "stop it")
        lonely = await executions.insert_execution(
            engine.store, config_id=slow, trigger_type=domain.TriggerType.MANUAL
        )
        assert lonely is not None and await engine.cancel(lonely, "never started")
        assert not await engine.cancel(lonely, "again")
        engine.submit(lonely)  # not PENDING any more: ignored
        task = engine.task(lonely)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await engine.stop()
    for execution_id, reason in (
        (running, "stop it"),
        (queued, "not needed"),
        (lonely, "never started"),
    ):
        execution = await executions.get_execution(engine_store, execution_id)
        assert execution is not None and execution.status is Status.CANCELLED
        assert execution.error_message == reason and execution.finished_at is not None
    assert not (engine.workspace / running).exists()


async def test_drain_cancels_late_work_with_a_reason(
    tmp_path: Path, engine_store: Store, data_db: dict[str, str]
) -> None:
    engine = Engine(engine_settings(tmp_path), engine_store, node_id="test-node")
    await engine.start()
    quick = await _sqlite_config(engine, data_db, "SELECT id FROM t")
    slow = await _sqlite_config(engine, data_db, SLOW)
    fast_id = await engine.create_and_submit(quick, trigger_type=domain.TriggerType.MANUAL)
    slow_id = await engine.create_and_submit(slow, trigger_type=domain.TriggerType.MANUAL)
    await engine.drain(0.5)
    fast = await executions.get_execution(engine_store, fast_id)
    late = await executions.get_execution(engine_store, slow_id)
    assert fast is not None and fast.status is Status.COMPLETED
    assert late is not None and late.status is Status.CANCELLED
    assert "drain grace period" in (late.error_message or "")
    with pytest.raises(RuntimeError):
        engine.submit("x")


async def test_drain_leaves_queued_runs_pending_for_another_node(
    tmp_path: Path, engine_store: Store, data_db: dict[str, str]
) -> None:
    engine = Engine(
        engine_settings(tmp_path, max_concurrent_executions=1), engine_store, node_id="test-node"
    )
    await engine.start()
    slow = await _sqlite_config(engine, data_db, SLOW)
    running_id = await engine.create_and_submit(slow, trigger_type=domain.TriggerType.MANUAL)
    queued_id = await engine.create_and_submit(slow, trigger_type=domain.TriggerType.MANUAL)
    for _ in range(400):  # the first one holds the only slot
        first = await executions.get_execution(engine_store, running_id)
        if first is not None and first.status is Status.RUNNING:
            break
        await asyncio.sleep(0.05)
    await engine.drain(0.2)
    ran = await executions.get_execution(engine_store, running_id)
    queued = await executions.get_execution(engine_store, queued_id)
    assert ran is not None and ran.status is Status.CANCELLED
    assert queued is not None and queued.status is Status.PENDING
    assert queued.node_id == "test-node" and queued.finished_at is None


async def test_janitor_removes_old_files_and_prunes_rows(
    engine: Engine, data_db: dict[str, str]
) -> None:
    config = await _sqlite_config(engine, data_db, "SELECT id FROM t")
    done = await run_to_end(engine, config)
    running = await executions.insert_execution(
        engine.store,
        config_id=config,
        trigger_type=domain.TriggerType.MANUAL,
        status=Status.RUNNING,
    )
    assert running is not None
    (engine.workspace / running).mkdir()
    (engine.workspace / "orphan-dir").mkdir()
    old = (datetime.now(UTC) - timedelta(days=30)).timestamp()
    for directory in engine.workspace.iterdir():
        for entry in [directory, *directory.iterdir()]:
            os.utime(entry, (old, old))
    fresh = await run_to_end(engine, config)
    # Old execution rows (and their delivery logs) are pruned in batches.
    created = datetime.now(UTC) - timedelta(days=200)
    async with engine.store.engine.begin() as conn:
        for n in range(1203):
            await conn.execute(
                sa.insert(schema.executions).values(
                    id=f"old-{n}",
                    config_id=config,
                    trigger_type="manual",
                    status="COMPLETED",
                    created_at=created,
                )
            )
    swept = await engine.clean_up()
    assert swept == {
        "directories_removed": 2,
        "executions_pruned": 1203,
        "bursts_pruned": 0,
        "notices_pruned": 0,
        "waits_pruned": 0,
        "backfills_pruned": 0,
        "late_fires_pruned": 0,
    }
    assert not (engine.workspace / done.id).exists()
    assert not (engine.workspace / "orphan-dir").exists()
    assert (engine.workspace / running).exists()  # still RUNNING: kept
    assert (engine.workspace / fresh.id).exists()  # young: kept
    assert await executions.get_execution(engine.store, done.id) is not None  # rows are young


async def test_execute_command(tmp_path: Path, data_db: dict[str, str], capsys: Any) -> None:
    store_url = f"sqlite:///{tmp_path}/cli-store.db"
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'[store]\nurl = "{store_url}"\n[execution]\nworkspace = "{tmp_path / "ws"}"\n'
        '[logging]\nlevel = "WARNING"\n'
    )
    from reporthubd.config import Settings

    settings = Settings.model_validate({"store": {"url": store_url}})
    store = Store(settings.store)
    await store.start()
    from reporthubd.store import migrate

    await migrate.upgrade(store)
    ds = await add_datasource(store, "sqlite", data_db)
    good = await add_config(
        store, ds, "SELECT id, :tag AS tag FROM t WHERE id <= 3", parameters={"tag": "x"}
    )
    bad = await add_config(store, ds, "SELECT * FROM missing_table")
    await store.stop()

    out = tmp_path / "copy.csv"
    code = await asyncio.to_thread(
        cli.main,
        [
            "execute",
            "-c",
            str(config_file),
            str(good),
            "--param",
            "tag=cli",
            "--no-deliver",
            "--output",
            str(out),
            "--json",
        ],
    )
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["status"] == "COMPLETED" and printed["row_count"] == 3
    assert printed["parameters"] == {"tag": "cli"} and printed["output"] == str(out)
    assert out.read_text().splitlines() == ["id,tag", "1,cli", "2,cli", "3,cli"]

    code = await asyncio.to_thread(cli.main, ["execute", "-c", str(config_file), str(bad)])
    text = capsys.readouterr().out
    assert code == 1 and "FAILED" in text and "missing_table" in text
    code = await asyncio.to_thread(cli.main, ["execute", "-c", str(config_file), "99999"])
    assert code == 1
    code = await asyncio.to_thread(
        cli.main, ["execute", "-c", str(config_file), str(good), "--param", "novalue"]
    )
    assert code == 2


async def test_reload_resizes_the_pool_but_keeps_the_workspace(
    engine: Engine, tmp_path: Path
) -> None:
    new = engine_settings(tmp_path / "elsewhere", max_concurrent_executions=7)
    message = await engine.on_reload(new)
    assert "7" in message and engine.stats()["max_concurrent_executions"] == 7
    assert engine.settings.execution.workspace == str(tmp_path / "workspace")


async def test_metrics_count_executions(engine: Engine, data_db: dict[str, str]) -> None:
    from reporthubd import metrics

    def sample(name: str, **labels: str) -> float:
        value = metrics.REGISTRY.get_sample_value(name, labels or None)
        return value or 0.0

    before = sample("reporthubd_executions_total", status="COMPLETED")
    rows_before = sample("reporthubd_rows_written_total")
    config = await _sqlite_config(engine, data_db, "SELECT id FROM t")
    await run_to_end(engine, config)
    assert sample("reporthubd_executions_total", status="COMPLETED") == before + 1
    assert sample("reporthubd_rows_written_total") == rows_before + 100
    assert sample("reporthubd_executions_running") == 0
    stats = engine.stats()
    assert stats.running == stats["running"] == 0 and stats.as_dict()["accepting"] is True
