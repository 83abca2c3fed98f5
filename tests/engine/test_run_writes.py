"""A run's own writes on a MariaDB store: each status change and record is one round trip there
(store/executions.py `_update_mysql`), and the write that makes a file the run's is the fencing
check (engine/pipeline.py): a run another node took before that write records nothing, delivers
nothing and leaves no file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd import domain
from reporthubd.config import Settings
from reporthubd.engine.pipeline import Run, RunContext
from reporthubd.engine.streaming import Progress
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.store import executions, migrate
from reporthubd.store.database import Store
from tests import servers
from tests.engine.conftest import RecordingRunner, add_config, add_datasource, add_delivery

Status = domain.ExecutionStatus
NODE = "node-a"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    database = await asyncio.to_thread(servers.create_database, "mariadb", tmp_path)
    settings = Settings.model_validate({"store": {"url": database.url}})
    store = Store(settings.store)
    await store.start()
    await migrate.upgrade(store)
    try:
        yield store
    finally:
        await store.stop()
        await asyncio.to_thread(database.drop)


async def _config(store: Store, tmp_path: Path) -> int:
    path = tmp_path / "source.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (n INTEGER, name TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"row {i}") for i in range(50)])
    source = await add_datasource(store, "sqlite", {"path": str(path)})
    return await add_config(store, source, "SELECT n, name FROM t ORDER BY n")


async def _row(store: Store, config_id: int, status: Status = Status.PENDING) -> str:
    execution_id = await executions.insert_execution(
        store,
        config_id=config_id,
        trigger_type=domain.TriggerType.MANUAL,
        status=status,
        node_id=NODE,
    )
    assert execution_id is not None
    return execution_id


async def test_conditional_writes_answer_whether_they_moved_the_row(
    store: Store, tmp_path: Path
) -> None:
    execution_id = await _row(store, await _config(store, tmp_path))
    started = datetime(2026, 12, 4, 3, 4, 5, 123456, tzinfo=UTC)
    assert await executions.update_execution(
        store,
        execution_id,
        only_if_status=(Status.PENDING,),
        status=Status.RUNNING,
        node_id=NODE,
        started_at=started,
        heartbeat_at=started,
    )
    # The same move again, and a write fenced to another node: nothing moves.
    assert not await executions.update_execution(
        store, execution_id, only_if_status=(Status.PENDING,), status=Status.RUNNING
    )
    assert not await executions.update_execution(
        store, execution_id, only_if_status=(Status.RUNNING,), only_if_node="node-b", row_count=1
    )
    # An unchanged value still counts as written (the row matched).
    assert await executions.update_execution(
        store, execution_id, only_if_node=NODE, durable=True, heartbeat_at=started
    )
    parameters = {"branch": "Zürich 'HQ' \\ %s \"x\"", "n": [1, 2.5, None], "nested": {"a": True}}
    assert await executions.update_execution(
        store,
        execution_id,
        only_if_status=(Status.RUNNING,),
        only_if_node=NODE,
        durable=True,
        parameters=parameters,
        file_name="st_'B001'.csv",
        row_count=12,
        error_message=None,
    )
    row = await executions.get_execution(store, execution_id)
    assert row is not None
    assert (row.status, row.node_id, row.started_at, row.heartbeat_at) == (
        Status.RUNNING,
        NODE,
        started,
        started,
    )
    assert row.parameters == parameters
    assert (row.file_name, row.row_count, row.error_message) == ("st_'B001'.csv", 12, None)

    assert await executions.beat_owned_run(store, NODE, execution_id, now=started)
    assert not await executions.beat_owned_run(store, "node-b", execution_id, now=started)


async def test_a_refused_write_raises_the_store_s_error_and_the_pool_goes_on(
    store: Store, tmp_path: Path
) -> None:
    execution_id = await _row(store, await _config(store, tmp_path), Status.RUNNING)
    with pytest.raises(sa.exc.DataError):
        await executions.update_execution(store, execution_id, file_name="x" * 5000)
    with pytest.raises(ValueError, match="naive"):
        await executions.update_execution(store, execution_id, heartbeat_at=datetime(2026, 1, 1))
    with pytest.raises(KeyError):
        await executions.update_execution(store, execution_id, no_such_column=1)
    assert await executions.update_execution(store, execution_id, row_count=3)
    row = await executions.get_execution(store, execution_id)
    assert row is not None and row.row_count == 3 and row.file_name is None


def _run(store: Store, tmp_path: Path, execution: domain.Execution, definitions: object) -> Run:
    settings = Settings.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp_path}/unused.db"},
            "execution": {"workspace": str(tmp_path / "ws")},
        }
    )
    runner = RecordingRunner()
    context = RunContext(
        settings=settings,
        store=store,
        node_id=NODE,
        lifecycle=Lifecycle(store, node_id=NODE),
        deliveries=runner,
        cancel_reason=lambda execution_id: "cancelled",
    )
    assert isinstance(definitions, executions.RunDefinitions)
    run = Run(context, execution, definitions, Progress(execution.id), deliver=True)
    context.lifecycle.ownership.hold(execution.id)
    return run


@pytest.mark.parametrize("deliveries", [0, 1])
@pytest.mark.parametrize("taken", [False, True])
async def test_a_run_taken_before_its_file_is_recorded_records_and_delivers_nothing(
    store: Store, tmp_path: Path, deliveries: int, taken: bool
) -> None:
    config_id = await _config(store, tmp_path)
    for _ in range(deliveries):
        await add_delivery(store, config_id)
    execution_id = await _row(store, config_id, Status.RUNNING)
    execution = await executions.get_execution(store, execution_id)
    assert execution is not None
    definitions = await executions.load_run_definitions(
        store, config_id, None, default_timezone="UTC"
    )
    run = _run(store, tmp_path, execution, definitions)
    if taken:  # another node judged this one lost while it ran
        assert await executions.update_execution(
            store,
            execution_id,
            only_if_status=(Status.RUNNING,),
            status=Status.FAILED,
            node_id="node-b",
            error_message="node lost",
        )
    await run.execute()
    row = await executions.get_execution(store, execution_id)
    assert row is not None
    runner = run.context.deliveries
    assert isinstance(runner, RecordingRunner)
    directory = tmp_path / "ws" / execution_id
    if taken:
        assert (row.status, row.error_message, row.file_name) == (Status.FAILED, "node lost", None)
        assert runner.jobs == []
        assert not directory.exists()
        assert run.lifecycle.ownership.was_lost(execution_id) == bool(deliveries)
    else:
        assert (row.status, row.row_count) == (Status.COMPLETED, 50)
        assert row.file_name is not None and row.file_name.endswith(".csv")
        assert row.file_path is not None and Path(row.file_path).is_file()
        assert len(runner.jobs) == deliveries
