"""Business calendars in the catalog TOML (`apply` / `export`) against every store backend, and
the errors that name the key: an unknown country or subdivision, a calendar closing a whole
month, an unknown calendar name or policy."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd import catalog
from reporthubd.config import StoreSettings
from reporthubd.store import catalog as store_catalog
from reporthubd.store import definitions, migrate, schema
from reporthubd.store.database import Store
from tests.daemon_process import write_config
from tests.scheduler.helpers import add_schedule, seed_config

CATALOG = """
[[calendars]]
name = "de-berlin"
country = "DE"
subdivision = "BE"
added = { "2027-12-24" = "Christmas Eve (office closed)" }
removed = ["2027-03-08"]

[[datasources]]
name = "warehouse"
type = "sqlite"
connection_config = { path = ":memory:" }

[[reports]]
name = "daily sales"
datasource = "warehouse"
query = "SELECT 1 AS one"
output_format = "csv"

[[reports.schedules]]
cron = "0 9 * * 1-5"
timezone = "Europe/Berlin"
calendar = "de-berlin"
calendar_policy = "skip"

[[reports.schedules]]
cron = "0 7 * * 1-5"
timezone = "Europe/Berlin"
calendar = "de-berlin"
"""


async def test_apply_and_export_round_trip_a_calendar(store: Store) -> None:
    plan = await store_catalog.apply(store, catalog.parse(CATALOG))
    assert "+ calendar de-berlin" in [str(c) for c in plan.changes]
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(
                    schema.schedules.c.cron_expression,
                    schema.schedules.c.calendar_name,
                    schema.schedules.c.calendar_policy,
                ).order_by(schema.schedules.c.id)
            )
        ).all()
    # no policy given: next_business_day
    assert [tuple(r) for r in rows] == [
        ("0 9 * * 1-5", "de-berlin", "skip"),
        ("0 7 * * 1-5", "de-berlin", "next_business_day"),
    ]
    loaded = await definitions.load_definitions(store, default_timezone="UTC")
    assert not loaded.errors
    calendar = loaded.calendars_by_name["de-berlin"]
    assert [s.calendar for s in loaded.schedules.values()] == [calendar, calendar]
    assert calendar.closed_reason(date(2027, 12, 24)) == (
        "holiday: Christmas Eve (office closed), de-berlin"
    )
    exported, errors = await store_catalog.export(store)
    assert not errors
    text = catalog.render(exported)
    assert '[[calendars]]\nname = "de-berlin"\ncountry = "DE"\nsubdivision = "BE"\n' in text
    assert 'calendar = "de-berlin"\ncalendar_policy = "skip"' in text
    # applying the export changes nothing
    again = await store_catalog.apply(store, catalog.parse(text))
    assert again.empty, [str(c) for c in again.changes]


@pytest.mark.parametrize(
    ("old", "new", "where", "message"),
    [
        ('country = "DE"', 'country = "XX"', "calendars[0]", "country: unknown country code 'XX'"),
        (
            'subdivision = "BE"',
            'subdivision = "XY"',
            "calendars[0]",
            "subdivision: unknown subdivision 'XY' of DE",
        ),
        (
            'calendar_policy = "skip"',
            'calendar_policy = "someday"',
            "reports[0].schedules[0].calendar_policy",
            "calendar_policy: unknown policy 'someday'",
        ),
        (
            'added = { "2027-12-24" = "Christmas Eve (office closed)" }',
            "added = { " + ", ".join(f'"2027-08-{d:02d}" = "summer"' for d in range(1, 32)) + " }",
            "calendars[0]",
            "added: calendar 'de-berlin' closes every day of 2027-08",
        ),
    ],
)
def test_bad_calendars_in_the_file_name_the_key(
    old: str, new: str, where: str, message: str
) -> None:
    with pytest.raises(catalog.CatalogError) as caught:
        catalog.parse(CATALOG.replace(old, new))
    problems = [(p.where, p.message) for p in caught.value.problems]
    assert any(w == where and message in m for w, m in problems), problems


async def test_an_unknown_calendar_name_is_refused_and_nothing_written(store: Store) -> None:
    text = CATALOG.replace('calendar = "de-berlin"\n', 'calendar = "fr-paris"\n', 1)
    with pytest.raises(catalog.CatalogError) as caught:
        await store_catalog.apply(store, catalog.parse(text))
    assert [(p.where, p.message) for p in caught.value.problems] == [
        (
            "reports[0].schedules[0].calendar",
            "unknown calendar name 'fr-paris' (in neither [[calendars]] nor the store)",
        )
    ]
    async with store.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(schema.calendars)) == 0


async def test_check_names_bad_calendars_and_schedules(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(StoreSettings(url=url))
    await store.start()
    await migrate.upgrade(store)
    config_id = await seed_config(store)
    async with store.engine.begin() as conn:
        bad = await conn.execute(
            sa.insert(schema.calendars).values(name="atlantis", country="AT", subdivision="99")
        )
        await conn.execute(sa.insert(schema.calendars).values(name="de", country="DE"))
    unknown = await add_schedule(store, config_id, "0 9 * * *", calendar_name="nowhere")
    policy = await add_schedule(
        store, config_id, "0 8 * * *", calendar_name="de", calendar_policy="soon"
    )
    good = await add_schedule(store, config_id, "0 7 * * *", calendar_name="de")
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
    bad_id = bad.inserted_primary_key[0]
    assert f"report_calendars id={bad_id}: subdivision: unknown subdivision '99' of AT" in out
    assert f"report_schedules id={unknown}: calendar_name: unknown calendar 'nowhere'" in out
    assert f"report_schedules id={policy}: calendar_policy: unknown value 'soon'" in out
    assert f"id={good}:" not in out
