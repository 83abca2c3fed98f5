"""Migrations from empty to head on every backend; idempotent; schema matches schema.py."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from reporthubd.store import migrate, schema
from reporthubd.store.database import Store

CONTRACT_TABLES = {
    "report_datasources",
    "report_configs",
    "report_schedules",
    "report_deliveries",
    "report_delivery_recipients",
    "report_executions",
    "report_delivery_logs",
    "report_nodes",
}


async def _tables(store: Store) -> set[str]:
    async with store.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def test_upgrade_from_empty_to_head_then_again_changes_nothing(empty_store: Store) -> None:
    assert (await migrate.schema_state(empty_store)).current is None
    assert await _tables(empty_store) == set()

    before, after = await migrate.upgrade(empty_store)
    assert (before, after) == (None, migrate.head_revision())
    tables = await _tables(empty_store)
    assert tables >= CONTRACT_TABLES

    again = await migrate.upgrade(empty_store)
    assert again == (after, after)
    assert await _tables(empty_store) == tables
    assert (await migrate.schema_state(empty_store)).up_to_date


async def test_migrated_schema_matches_the_table_definitions(store: Store) -> None:
    def diff(conn: sa.Connection) -> list[object]:
        context = MigrationContext.configure(
            conn, opts={"version_table": migrate.VERSION_TABLE, "compare_type": True}
        )
        return list(compare_metadata(context, schema.metadata))

    async with store.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_unknown_revision_is_reported_with_what_to_do(store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = 'ffff9999'"))
    state = await migrate.schema_state(store)
    assert not state.known
    problem = state.problem()
    assert problem is not None and "ffff9999" in problem and "reporthubd db current" in problem
