"""`apply` refuses a dependency cycle that runs through the store's schedules as well as the
file's (store/catalog_dependencies.py), naming the file's key; nothing is written. On every
store backend."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from reporthubd import catalog
from reporthubd.store import catalog as store_catalog
from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.scheduler.helpers import add_schedule, update_schedule
from tests.scheduler.test_dependency_catalog import CATALOG

# "nightly load" alone, now waiting for "daily sales" (stored: it waits for "nightly load")
NIGHTLY_WAITS = """
[[datasources]]
name = "warehouse"
type = "sqlite"
connection_config = { path = ":memory:" }

[[reports]]
name = "nightly load"
datasource = "warehouse"
query = "SELECT 1 AS one"
output_format = "csv"

[[reports.schedules]]
cron = "0 2 * * *"
timezone = "Europe/Berlin"
depends_on = ["daily sales"]
"""


async def _ids(store: Store) -> dict[str, int]:
    c = schema.configs
    async with store.engine.connect() as conn:
        return {row.name: int(row.id) for row in await conn.execute(sa.select(c.c.id, c.c.name))}


async def _depends(store: Store) -> dict[int, object]:
    s = schema.schedules
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.select(s.c.id, s.c.depends_on).order_by(s.c.id))
        return {int(row.id): row.depends_on for row in rows}


async def test_a_cycle_through_a_stored_report_is_refused_naming_the_key(store: Store) -> None:
    await store_catalog.apply(store, catalog.parse(CATALOG))
    before = await _depends(store)
    expected = [
        (
            "reports[0].schedules[0].depends_on",
            "dependency cycle nightly load -> daily sales -> nightly load (through the stored "
            "schedules of 'daily sales')",
        )
    ]
    with pytest.raises(catalog.CatalogError) as caught:
        await store_catalog.apply(store, catalog.parse(NIGHTLY_WAITS))
    assert [(p.where, p.message) for p in caught.value.problems] == expected
    with pytest.raises(catalog.CatalogError):  # a dry run says so too
        await store_catalog.apply(store, catalog.parse(NIGHTLY_WAITS), dry_run=True)
    assert await _depends(store) == before

    # a dependency stored by config id is the same report
    ids = await _ids(store)
    daily = next(sid for sid, deps in before.items() if deps)
    await update_schedule(store, daily, depends_on=[ids["nightly load"]])
    with pytest.raises(catalog.CatalogError) as caught:
        await store_catalog.apply(store, catalog.parse(NIGHTLY_WAITS))
    assert [(p.where, p.message) for p in caught.value.problems] == expected


async def test_a_stored_schedule_the_file_no_longer_names_still_counts(store: Store) -> None:
    await store_catalog.apply(store, catalog.parse(CATALOG))
    ids = await _ids(store)
    # a second schedule of "nightly load", outside the file, waits for "daily sales"
    await add_schedule(
        store,
        ids["nightly load"],
        "0 3 * * *",
        timezone="Europe/Berlin",
        is_active=False,
        depends_on=["daily sales"],
    )
    with pytest.raises(catalog.CatalogError) as caught:
        await store_catalog.apply(store, catalog.parse(CATALOG))
    assert [(p.where, p.message) for p in caught.value.problems] == [
        (
            "reports[1].schedules[0].depends_on",
            "dependency cycle daily sales -> nightly load -> daily sales (through the stored "
            "schedules of 'nightly load')",
        )
    ]
    # --prune deletes that schedule: no cycle is left
    plan = await store_catalog.apply(store, catalog.parse(CATALOG), prune=True)
    assert [c.action for c in plan.changes if c.kind == "schedule"] == ["delete"]


async def test_no_cycle_applies_as_before(store: Store) -> None:
    await store_catalog.apply(store, catalog.parse(CATALOG))
    # "daily sales" waits for "nightly load"; a third report waiting for both is no cycle
    third = CATALOG + (
        '\n[[reports]]\nname = "month end"\ndatasource = "warehouse"\n'
        'query = "SELECT 1 AS one"\noutput_format = "csv"\n\n[[reports.schedules]]\n'
        'cron = "0 8 1 * *"\ntimezone = "Europe/Berlin"\n'
        'depends_on = ["daily sales", "nightly load"]\n'
    )
    await store_catalog.apply(store, catalog.parse(third))
    assert sorted(await _ids(store)) == ["daily sales", "month end", "nightly load"]
