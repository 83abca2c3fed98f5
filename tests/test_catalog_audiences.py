"""A report's driver in the catalog TOML (`[reports.audiences]`): apply, export and re-apply
round trip; a bad datasource name, an unknown key, and `check` naming a driver column the report
does not take."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd import catalog
from reporthubd.commands import audience_checks
from reporthubd.config import Settings
from reporthubd.store import catalog as store_catalog
from reporthubd.store import schema
from reporthubd.store.database import Store


def _text(data: Path, driver: str, extra: str = "") -> str:
    return f'''
[[datasources]]
name = "branches-db"
type = "sqlite"
connection_config = {{ path = "{data}" }}

[[reports]]
name = "Branch statement"
datasource = "branches-db"
output_format = "csv"
query = "SELECT code FROM branches WHERE code = :branch"

[reports.audiences]
query = "{driver}"
key_column = "branch"
{extra}

[[reports.deliveries]]
name = "archive"
method = "file_share"
config = {{ path = "/tmp" }}
'''


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "branches.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE branches (code TEXT, manager TEXT, city TEXT)")
        conn.execute("INSERT INTO branches VALUES ('B1', 'a@example.com', 'Bonn')")
    conn.close()
    return path


async def test_apply_export_reapply(store: Store, data: Path) -> None:
    text = _text(data, "SELECT code AS branch, manager AS recipients FROM branches")
    plan = await store_catalog.apply(store, catalog.parse(text))
    assert "+ audience driver Branch statement/audiences" in [str(c) for c in plan.changes]
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(schema.audience_drivers))).all()
    assert [(r.key_column, r.is_active) for r in rows] == [("branch", True)]
    exported, errors = await store_catalog.export(store)
    assert errors == []
    rendered = catalog.render(exported)
    assert "[reports.audiences]" in rendered and 'key_column = "branch"' in rendered
    assert (await store_catalog.apply(store, catalog.parse(rendered))).empty
    # Without the table the driver is deactivated; with --prune it goes.
    bare = text.replace("[reports.audiences]", "").replace(
        'query = "SELECT code AS branch, manager AS recipients FROM branches"\n'
        'key_column = "branch"',
        "",
    )
    plan = await store_catalog.apply(store, catalog.parse(bare))
    assert [str(c) for c in plan.changes] == [
        "~ audience driver Branch statement/audiences (is_active)"
    ]
    await store_catalog.apply(store, catalog.parse(bare), prune=True)
    async with store.engine.connect() as conn:
        assert (await conn.execute(sa.select(schema.audience_drivers))).all() == []


async def test_a_driver_on_an_unknown_datasource_is_refused(store: Store, data: Path) -> None:
    text = _text(data, "SELECT code AS branch FROM branches", 'datasource = "nowhere"')
    with pytest.raises(catalog.CatalogError) as caught:
        await store_catalog.apply(store, catalog.parse(text))
    assert "reports[0].audiences.datasource: no datasource named 'nowhere'" in str(caught.value)
    async with store.engine.connect() as conn:
        assert (await conn.execute(sa.select(schema.configs))).all() == []  # nothing written


def test_an_unknown_key_is_named(data: Path) -> None:
    text = _text(data, "SELECT code AS branch FROM branches", 'recipient_column = "x"')
    with pytest.raises(catalog.CatalogError) as caught:
        catalog.parse(text)
    assert "reports[0].audiences.recipient_column" in str(caught.value)


async def test_check_names_a_column_the_report_does_not_take(
    store: Store, data: Path, tmp_path: Path
) -> None:
    text = _text(data, "SELECT code AS branch, manager AS recipients, city FROM branches")
    await store_catalog.apply(store, catalog.parse(text))
    settings = Settings.model_validate({"execution": {"workspace": str(tmp_path / "ws")}})
    found = await audience_checks.problems(store, settings)
    assert [str(p) for p in found] == [
        "report_audience_drivers id=1: report config 1: driver column 'city' is not a "
        "parameter of report 'Branch statement' (it takes: branch)"
    ]
