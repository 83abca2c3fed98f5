"""Reports as code without a foot-gun (issue 21, item 5): a named schedule's edited cron is an
update of that schedule, export writes the names; an unnamed schedule's edited cron creates a
second one, and the plan lists the row it leaves active and calls out the report that would
fire on both. On every store backend, and once through the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd import catalog
from reporthubd.store import catalog as store_catalog
from reporthubd.store import catalog_schedules, schema
from reporthubd.store.database import Store
from tests.daemon_process import write_config

FILE = """
[[datasources]]
name = "local"
type = "sqlite"
connection_config = {{ path = "/tmp/none.db" }}

[[reports]]
name = "sales"
datasource = "local"
output_format = "csv"
query = "SELECT 1"

[[reports.schedules]]
{name}cron = "*/2 * * * *"
timezone = "Europe/Berlin"
"""


async def _schedules(store: Store) -> list[tuple[int, str | None, str, bool]]:
    s = schema.schedules
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(s.c.id, s.c.name, s.c.cron_expression, s.c.is_active).order_by(s.c.id)
        )
        return [(int(r.id), r.name, r.cron_expression, bool(r.is_active)) for r in rows]


async def _edited_export(store: Store) -> catalog.Catalog:
    """Export the store, change the schedule's cron from */2 to */5 in the text, parse it."""
    exported, errors = await store_catalog.export(store)
    assert errors == []
    text = catalog.render(exported)
    assert text.count('cron = "*/2 * * * *"') == 1, text
    return catalog.parse(text.replace('cron = "*/2 * * * *"', 'cron = "*/5 * * * *"'))


async def test_a_named_schedules_edited_cron_is_one_update(store: Store) -> None:
    await store_catalog.apply(store, catalog.parse(FILE.format(name='name = "morning"\n')))
    [(schedule_id, name, _, _)] = await _schedules(store)
    assert name == "morning"

    edited = await _edited_export(store)
    assert edited.reports[0].schedules[0].name == "morning", "export writes the names"
    dry = await store_catalog.apply(store, edited, dry_run=True)
    plan = await store_catalog.apply(store, edited)
    for said in (dry, plan):
        assert said.summary() == "0 to create, 1 to update, 0 to delete", said
        [change] = said.changes
        assert change.kind == "schedule" and change.label.startswith("sales/morning [*/5")
        assert "cron_expression" in change.fields
        assert said.notes == ()
    assert await _schedules(store) == [(schedule_id, "morning", "*/5 * * * *", True)]


async def test_an_unnamed_edit_lists_the_row_it_leaves_active(store: Store) -> None:
    await store_catalog.apply(store, catalog.parse(FILE.format(name="")))
    [(old_id, _, _, _)] = await _schedules(store)

    edited = await _edited_export(store)
    dry = await store_catalog.apply(store, edited, dry_run=True)
    assert await _schedules(store) == [(old_id, None, "*/2 * * * *", True)], "dry run wrote"
    plan = await store_catalog.apply(store, edited)
    for said in (dry, plan):
        assert said.summary() == "1 to create, 0 to update, 0 to delete"
        left, both = said.notes
        assert f"schedule id={old_id} [*/2 * * * *] Europe/Berlin" in left
        assert "stays active" in left
        assert "names 1 active schedule but the report would have 2 active" in both
    rows = await _schedules(store)
    assert [(cron, active) for _, _, cron, active in rows] == [
        ("*/2 * * * *", True),
        ("*/5 * * * *", True),
    ]

    # With --prune the leftover goes, and the plan says that instead.
    pruned = await store_catalog.apply(store, edited, prune=True)
    assert pruned.summary() == "0 to create, 0 to update, 1 to delete"
    assert pruned.notes == ()
    assert [cron for _, _, cron, _ in await _schedules(store)] == ["*/5 * * * *"]


async def test_naming_an_exported_schedule_adopts_its_row(store: Store) -> None:
    """An unnamed stored schedule gets its name from the file on the next apply (matched by its
    cron and zone), and from then on is found by it."""
    await store_catalog.apply(store, catalog.parse(FILE.format(name="")))
    [(schedule_id, _, _, _)] = await _schedules(store)
    plan = await store_catalog.apply(store, catalog.parse(FILE.format(name='name = "am"\n')))
    assert [(c.action, c.fields) for c in plan.changes] == [("update", ("name",))]
    assert await _schedules(store) == [(schedule_id, "am", "*/2 * * * *", True)]


def test_schedule_names_are_unique_within_a_report() -> None:
    text = (
        FILE.format(name='name = "am"\n')
        + '\n[[reports.schedules]]\nname = "am"\ncron = "0 9 * * *"\n'
    )
    with pytest.raises(catalog.CatalogError, match="schedule name"):
        catalog.parse(text)


def test_match_prefers_names_then_cron() -> None:
    specs = [
        catalog.ScheduleSpec(name="b", cron="0 9 * * *"),
        catalog.ScheduleSpec(cron="0 9 * * *"),
    ]
    stored = [
        {
            "id": 1,
            "name": None,
            "cron_expression": "0 9 * * *",
            "timezone": None,
            "is_active": True,
        },
        {"id": 2, "name": "b", "cron_expression": "0 7 * * *", "timezone": None, "is_active": True},
        {
            "id": 3,
            "name": "c",
            "cron_expression": "0 8 * * *",
            "timezone": None,
            "is_active": False,
        },
    ]
    matched = catalog_schedules.match(specs, stored)
    assert [row["id"] if row else None for _, row in matched.pairs] == [2, 1]
    assert [row["id"] for row in matched.leftovers] == [3]
    assert catalog_schedules.notes("r", specs, matched.leftovers) == [], "inactive: not listed"


def test_the_command_line_prints_the_notes(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    exe = [sys.executable, "-m", "reporthubd"]
    subprocess.run([*exe, "db", "upgrade", "-c", str(config)], check=True, capture_output=True)
    first = tmp_path / "first.toml"
    first.write_text(FILE.format(name=""), encoding="utf-8")
    subprocess.run([*exe, "apply", str(first), "-c", str(config)], check=True, capture_output=True)
    edited = tmp_path / "edited.toml"
    edited.write_text(FILE.format(name="").replace("*/2", "*/5"), encoding="utf-8")
    done = subprocess.run(
        [*exe, "apply", str(edited), "--dry-run", "-c", str(config)],
        check=True,
        capture_output=True,
        text=True,
    )
    lines = done.stdout.splitlines()
    assert "+ schedule sales [*/5 * * * *] Europe/Berlin" in lines, done.stdout
    notes = [line for line in lines if line.startswith("! sales: ")]
    assert len(notes) == 2 and "stays active" in notes[0], done.stdout
    assert lines[-1] == "would apply: 1 to create, 0 to update, 0 to delete"
