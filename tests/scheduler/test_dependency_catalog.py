"""Dependencies in the catalog TOML (`apply` / `export`) and in `check`, with the errors that name
the key: a dependency cycle, an unknown report, a bad deadline or policy."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd import catalog
from reporthubd.config import StoreSettings
from reporthubd.store import catalog as store_catalog
from reporthubd.store import definitions, migrate, schema
from reporthubd.store.database import Store
from reporthubd.waits import WaitPolicy, WaitRule, find_cycle
from tests.daemon_process import write_config
from tests.scheduler.helpers import add_schedule, seed_config

CATALOG = """
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

[[reports]]
name = "daily sales"
datasource = "warehouse"
query = "SELECT 1 AS one"
output_format = "csv"

[[reports.schedules]]
cron = "0 7 * * *"
timezone = "Europe/Berlin"
depends_on = ["nightly load"]
readiness_query = "SELECT max(loaded_at) >= :window_end FROM etl_log"
wait_deadline = "09:00"
wait_policy = "run_anyway"
"""


async def test_apply_and_export_round_trip_a_dependency(store: Store) -> None:
    await store_catalog.apply(store, catalog.parse(CATALOG))
    loaded = await definitions.load_definitions(store, default_timezone="UTC")
    assert not loaded.errors
    rules = [s.waits for s in loaded.schedules.values()]
    assert rules == [
        None,
        WaitRule(
            depends_on=("nightly load",),
            readiness_query="SELECT max(loaded_at) >= :window_end FROM etl_log",
            deadline="09:00",
            policy=WaitPolicy.RUN_ANYWAY,
        ),
    ]
    exported, errors = await store_catalog.export(store)
    assert not errors
    text = catalog.render(exported)
    assert 'depends_on = ["nightly load"]' in text and 'wait_deadline = "09:00"' in text
    again = await store_catalog.apply(store, catalog.parse(text))
    assert again.empty, [str(c) for c in again.changes]


@pytest.mark.parametrize(
    ("old", "new", "where", "message"),
    [
        (
            'cron = "0 2 * * *"\n',
            'cron = "0 2 * * *"\ndepends_on = ["daily sales"]\n',
            "file",
            "reports[1].schedules[0].depends_on: dependency cycle daily sales -> nightly load "
            "-> daily sales",
        ),
        (
            'wait_deadline = "09:00"',
            'wait_deadline = "soon"',
            "reports[1].schedules[0]",
            "wait_deadline: 'soon' is neither +N s/m/h after the fire",
        ),
        (
            'wait_policy = "run_anyway"',
            'wait_policy = "maybe"',
            "reports[1].schedules[0]",
            "wait_policy: must be skip or run_anyway, got 'maybe'",
        ),
    ],
)
def test_bad_dependencies_in_the_file_name_the_key(
    old: str, new: str, where: str, message: str
) -> None:
    with pytest.raises(catalog.CatalogError) as caught:
        catalog.parse(CATALOG.replace(old, new))
    problems = [(p.where, p.message) for p in caught.value.problems]
    assert any(w.startswith(where) and message in m for w, m in problems), problems


async def test_a_dependency_on_an_unknown_report_is_refused(store: Store) -> None:
    text = CATALOG.replace('depends_on = ["nightly load"]', 'depends_on = ["nightly lode"]')
    with pytest.raises(catalog.CatalogError) as caught:
        await store_catalog.apply(store, catalog.parse(text))
    assert [(p.where, p.message) for p in caught.value.problems] == [
        (
            "reports[1].schedules[0].depends_on",
            "no report named 'nightly lode' (in neither the file nor the store)",
        )
    ]
    async with store.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(schema.configs)) == 0


def test_find_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


async def test_check_names_a_dependency_cycle_and_an_unknown_report(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(StoreSettings(url=url))
    await store.start()
    await migrate.upgrade(store)
    load = await seed_config(store, "load")
    sales = await seed_config(store, "sales")
    await add_schedule(store, load, "0 2 * * *", depends_on=["sales"])
    cyclic = await add_schedule(store, sales, "0 7 * * *", depends_on=[load])
    unknown = await add_schedule(store, sales, "0 8 * * *", depends_on=["nowhere"])
    bad = await add_schedule(store, sales, "0 9 * * *", wait_policy="skip")
    await store.stop()
    config, _ = write_config(tmp_path, url)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "reporthubd", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "depends_on: dependency cycle load -> sales -> load" in out
    assert f"report_schedules id={unknown}: depends_on: no active report 'nowhere'" in out
    assert (
        f"report_schedules id={bad}: wait_policy: set without depends_on or readiness_query" in out
    )
    assert f"id={cyclic}: depends_on: no active" not in out
