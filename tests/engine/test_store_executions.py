"""The engine's store functions on every store backend (SQLite, MariaDB, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from reporthubd import domain
from reporthubd.store import executions, schema
from reporthubd.store.database import Store
from tests.engine.conftest import add_config, add_datasource, add_delivery, add_schedule

pytestmark = pytest.mark.backends
Status = domain.ExecutionStatus


async def test_run_definitions_statuses_listing_and_pruning(store: Store) -> None:
    ds = await add_datasource(store, "sqlite", {"path": "/tmp/x.db"}, max_concurrent_queries=2)
    config = await add_config(store, ds, "SELECT 1", parameters={"a": 1})
    schedule = await add_schedule(store, config, "0 9 * * *", timezone="Europe/Berlin")
    delivery = await add_delivery(store, config)
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.recipients).values(delivery_id=delivery, email="a@example.com")
        )
        await conn.execute(
            sa.insert(schema.recipients).values(delivery_id=delivery, email="not an address")
        )
    found = await executions.load_run_definitions(store, config, schedule, default_timezone="UTC")
    assert found.config.parameters == {"a": 1}
    assert found.datasource.max_concurrent_queries == 2
    assert found.schedule is not None and str(found.schedule.timezone) == "Europe/Berlin"
    assert [d.id for d in found.deliveries] == [delivery]
    assert [r.email for r in found.deliveries[0].recipients] == ["a@example.com"]
    assert len(found.problems) == 1  # the bad recipient is reported, not fatal
    with pytest.raises(executions.DefinitionProblem, match="does not exist"):
        await executions.load_run_definitions(store, 9999, None, default_timezone="UTC")
    assert await executions.get_config(store, 9999) is None

    old = datetime.now(UTC) - timedelta(days=100)
    async with store.engine.begin() as conn:
        for n in range(7):
            await conn.execute(
                sa.insert(schema.executions).values(
                    id=f"old-{n}",
                    config_id=config,
                    trigger_type="manual",
                    status="COMPLETED" if n < 6 else "RUNNING",
                    created_at=old,
                )
            )
        await conn.execute(
            sa.insert(schema.delivery_logs).values(
                execution_id="old-1", delivery_id=delivery, attempt=1, status="SUCCESS"
            )
        )
    young = await executions.insert_execution(
        store, config_id=config, trigger_type=domain.TriggerType.MANUAL
    )
    assert young is not None
    found_statuses = await executions.statuses(store, ["old-0", "old-6", young, "nope"])
    assert found_statuses == {
        "old-0": Status.COMPLETED,
        "old-6": Status.RUNNING,
        young: Status.PENDING,
    }
    listed = await executions.list_executions(store, config_id=config, limit=3)
    assert listed[0].id == young and len(listed) == 3
    running = await executions.list_executions(store, statuses_in=(Status.RUNNING,))
    assert [e.id for e in running] == ["old-6"]

    pruned = await executions.prune_executions(
        store, before=datetime.now(UTC) - timedelta(days=90), batch_size=4
    )
    assert pruned == 6  # two batches; the RUNNING one and the young one stay
    left = await executions.statuses(store, ["old-0", "old-6", young])
    assert set(left) == {"old-6", young}
    async with store.engine.connect() as conn:
        logs = await conn.execute(sa.select(sa.func.count()).select_from(schema.delivery_logs))
        assert logs.scalar() == 0
