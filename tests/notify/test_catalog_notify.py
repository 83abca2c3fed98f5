"""Notices in the catalog TOML (issue 17, item 6): a report's `notify` (owners and rules) and a
schedule's `deadline` are applied to the store and exported back; bad ones are refused naming
their place, before anything is written."""

from __future__ import annotations

import pytest

from reporthubd import catalog
from reporthubd.store import catalog as store_catalog
from reporthubd.store.database import Store

TEXT = """
[[datasources]]
name = "warehouse"
type = "sqlite"
connection_config = { path = "/tmp/warehouse.db" }

[[reports]]
name = "sales-daily"
datasource = "warehouse"
output_format = "csv"
query = "SELECT 1 AS n"

[reports.notify]
owners = ["ann@example.com"]

[[reports.notify.rules]]
events = ["failed", "missed", "recovered"]
notify = ["owners", "delivery:7"]
suspend_after = 3
remind_every_minutes = 60

[[reports.schedules]]
cron = "0 6 * * 1-5"
timezone = "Europe/Berlin"
deadline = "07:30"
"""


async def test_notify_and_deadline_round_trip(store: Store) -> None:
    parsed = catalog.parse(TEXT)
    report = parsed.reports[0]
    assert report.notify is not None and report.notify["owners"] == ["ann@example.com"]
    assert report.schedules[0].deadline == "07:30"
    await store_catalog.apply(store, parsed)
    exported, errors = await store_catalog.export(store)
    assert errors == []
    assert exported == parsed
    again = catalog.parse(catalog.render(exported))
    assert again == parsed
    assert (await store_catalog.apply(store, again)).empty
    changed = TEXT.replace('deadline = "07:30"', 'deadline = "+90m"')
    plan = await store_catalog.apply(store, catalog.parse(changed))
    assert not plan.empty
    assert (await store_catalog.export(store))[0].reports[0].schedules[0].deadline == "+90m"


@pytest.mark.parametrize(
    ("edit", "where", "says"),
    [
        (
            ('events = ["failed", "missed", "recovered"]', 'events = ["failed", "exploded"]'),
            "reports[0].notify",
            "rules[0].events[1]: unknown event 'exploded'",
        ),
        (
            ('owners = ["ann@example.com"]', 'owners = ["ann"]'),
            "reports[0].notify",
            "owners[0]: 'ann' is not an email address",
        ),
        (
            ('deadline = "07:30"', 'deadline = "07:30 Mars/Olympus"'),
            "reports[0].schedules[0].deadline",
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            ("suspend_after = 3", "suspend_after = 0"),
            "reports[0].notify",
            "rules[0].suspend_after: must be a whole number of at least 1",
        ),
    ],
)
def test_bad_notices_are_refused_naming_the_key(
    edit: tuple[str, str], where: str, says: str
) -> None:
    with pytest.raises(catalog.CatalogError) as caught:
        catalog.parse(TEXT.replace(*edit))
    problems = [(p.where, p.message) for p in caught.value.problems]
    assert len(problems) == 1, problems
    assert problems[0][0] == where and says in problems[0][1], problems
