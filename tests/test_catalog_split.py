"""A split-by-key report in the catalog TOML (`format_options.split_by` beside
`[reports.audiences]`): apply, export and re-apply round trip; `apply` refuses a split_by that
is no column name; `check` names a split report without a driver key, and with `--connect` a
split column the query does not return."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd import catalog
from reporthubd.commands import column_checks, split_checks
from reporthubd.config import Settings
from reporthubd.store import catalog as store_catalog
from reporthubd.store import schema
from reporthubd.store.database import Store
from reporthubd.store.definitions import load_definitions


def _source(data: Path) -> str:
    return f'''
[[datasources]]
name = "branches-db"
type = "sqlite"
connection_config = {{ path = "{data}" }}
'''


def _report(split_by: str, *, key_column: str | None = "branch", name: str = "A") -> str:
    key = f'key_column = "{key_column}"' if key_column else ""
    return f"""
[[reports]]
name = "Statement {name}"
datasource = "branches-db"
output_format = "csv"
query = "SELECT branch, amount FROM sales ORDER BY amount"

[reports.format_options]
split_by = {split_by}

[reports.audiences]
query = "SELECT code AS branch, manager AS recipients FROM branches"
{key}
"""


def _text(data: Path, split_by: str) -> str:
    return _source(data) + _report(split_by)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "branches.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE branches (code TEXT, manager TEXT)")
        conn.execute("INSERT INTO branches VALUES ('B1', 'a@example.com')")
        conn.execute("CREATE TABLE sales (branch TEXT, amount INTEGER)")
        conn.execute("INSERT INTO sales VALUES ('B1', 3)")
    conn.close()
    return path


async def test_apply_export_reapply(store: Store, data: Path) -> None:
    plan = await store_catalog.apply(store, catalog.parse(_text(data, '"branch"')))
    assert not plan.empty
    async with store.engine.connect() as conn:
        (options,) = (await conn.execute(sa.select(schema.configs.c.format_options))).scalars()
    assert options == {"split_by": "branch"}
    exported, errors = await store_catalog.export(store)
    assert errors == []
    rendered = catalog.render(exported)
    assert 'split_by = "branch"' in rendered and 'key_column = "branch"' in rendered
    assert (await store_catalog.apply(store, catalog.parse(rendered))).empty


async def test_apply_refuses_a_split_by_that_names_no_column(store: Store, data: Path) -> None:
    with pytest.raises(catalog.CatalogError) as caught:
        await store_catalog.apply(store, catalog.parse(_text(data, "3")))
    message = str(caught.value)
    assert "reports[0]" in message and "format option 'split_by' must be the name of a column" in (
        message
    )


async def test_check_names_a_split_without_a_key_and_a_missing_column(
    store: Store, data: Path, tmp_path: Path
) -> None:
    text = (
        _source(data)
        + _report('"branch"', name="good")
        + _report('"branch"', key_column=None, name="keyless")
        + _report('"brnach"', name="typo")
    )
    await store_catalog.apply(store, catalog.parse(text))
    found = await load_definitions(store, default_timezone="UTC")
    ids = {config.name: config.id for config in found.configs.values()}
    offline = [str(p) for p in await split_checks.problems(store, found)]
    assert offline == [
        f"report_configs id={ids['Statement keyless']}: 'Statement keyless': format option "
        "'split_by' needs the report's audience driver (id 2) to have a key_column (each file "
        "goes to the audience of the same key)"
    ]
    settings = Settings.model_validate({"execution": {"workspace": str(tmp_path / "ws")}})
    described, _notes = await column_checks.problems(found, settings)
    assert [str(p) for p in described] == [
        f"report_configs id={ids['Statement typo']}: 'Statement typo': format option "
        "'split_by': the result has no column 'brnach' (its columns: branch, amount)"
    ]


async def test_check_names_a_split_report_without_a_driver(store: Store, data: Path) -> None:
    text = _text(data, '"branch"').split("[reports.audiences]")[0]
    await store_catalog.apply(store, catalog.parse(text))
    found = await load_definitions(store, default_timezone="UTC")
    (problem,) = await split_checks.problems(store, found)
    assert "'Statement A': format option 'split_by' needs an active audience driver" in str(problem)
