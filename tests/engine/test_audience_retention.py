"""Retention of data-driven runs: the janitor's pass (Engine.clean_up) prunes a burst's
audiences and its row with its runs, after `execution_retention_days`, in batches; a burst
whose parent has not ended is kept, however old."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd.engine import Engine
from reporthubd.store import audiences as audience_rows
from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.engine.conftest import (
    RecordingRunner,
    add_config,
    add_datasource,
    engine_settings,
    run_to_end,
)
from tests.engine.test_audiences import add_driver

AUDIENCES = 23


@pytest.fixture
async def engine(tmp_path: Path, engine_store: Store) -> AsyncIterator[Engine]:
    settings = engine_settings(tmp_path, max_concurrent_executions=4)
    eng = Engine(settings, engine_store, node_id="test-node", deliveries=RecordingRunner())
    await eng.start()
    yield eng
    await eng.stop()


async def _count(store: Store, table: sa.Table) -> int:
    async with store.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def test_old_bursts_go_with_their_runs_and_live_ones_stay(
    engine: Engine, engine_store: Store, tmp_path: Path
) -> None:
    data = tmp_path / "data.db"
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE branches (code TEXT)")
        conn.executemany(
            "INSERT INTO branches VALUES (?)", [(f"B{i:02d}",) for i in range(AUDIENCES)]
        )
    conn.close()
    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config = await add_config(
        engine_store, ds, "SELECT :branch AS branch", file_name_template="st_{{ branch }}"
    )
    await add_driver(
        engine_store, config, ds, "SELECT code AS branch FROM branches", key_column="branch"
    )
    parent = await run_to_end(engine, config)
    assert parent.status.value == "COMPLETED", parent.error_message
    # A burst whose parent still runs (another node's, say): kept whatever its age.
    async with engine_store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.executions).values(
                id="live-parent", config_id=config, trigger_type="manual", status="RUNNING"
            )
        )
    await audience_rows.open_burst(engine_store, "live-parent", config)
    await audience_rows.add_audiences(
        engine_store,
        [audience_rows.Audience(burst_id="live-parent", key=f"k{i}", seq=i) for i in range(3)],
    )
    assert await _count(engine_store, schema.audiences) == AUDIENCES + 3
    assert await _count(engine_store, schema.bursts) == 2

    young = await engine.clean_up()
    assert young["bursts_pruned"] == 0
    assert await _count(engine_store, schema.audiences) == AUDIENCES + 3

    later = datetime.now(UTC) + timedelta(days=engine.settings.execution.execution_retention_days)
    # in batches smaller than one burst's audiences
    assert await audience_rows.prune_bursts(engine_store, before=later, batch_size=5) == 1
    swept = await engine.clean_up(now=later + timedelta(days=1))
    assert swept["executions_pruned"] == AUDIENCES + 1  # the parent and its children
    assert swept["bursts_pruned"] == 0  # gone already
    async with engine_store.engine.connect() as conn:
        left = (await conn.execute(sa.select(schema.audiences.c.burst_id))).scalars().all()
        bursts = (await conn.execute(sa.select(schema.bursts.c.burst_id))).scalars().all()
    assert (set(left), len(left), bursts) == ({"live-parent"}, 3, ["live-parent"])
    assert await audience_rows.get_burst(engine_store, parent.id) is None
