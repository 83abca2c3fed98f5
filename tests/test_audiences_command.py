"""`reporthubd audiences CONFIG_ID`: a data-driven report's dry run from the command line (a
real subprocess over a SQLite store): the listing, a bad driver named with exit code 1, nothing
written."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd.config import StoreSettings
from reporthubd.store import migrate, schema
from reporthubd.store.database import Store
from tests.daemon_process import write_config


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(StoreSettings(url=f"sqlite:///{tmp_path}/store.db"))
    await store.start()
    await migrate.upgrade(store)
    yield store
    await store.stop()


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reporthubd", "audiences", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_command_lists_the_audiences_and_names_a_bad_column(
    tmp_path: Path, sqlite_store: Store
) -> None:
    data = tmp_path / "data.db"
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE branches (code TEXT, manager TEXT)")
        conn.executemany(
            "INSERT INTO branches VALUES (?, ?)",
            [("B1", "a@example.com"), ("B2", "b@example.com; c@example.com")],
        )
    conn.close()
    async with sqlite_store.engine.begin() as conn:
        ds = (
            await conn.execute(
                sa.insert(schema.datasources).values(
                    name="src", type="sqlite", connection_config={"path": str(data)}
                )
            )
        ).inserted_primary_key[0]
        config = (
            await conn.execute(
                sa.insert(schema.configs).values(
                    name="Statement",
                    datasource_id=ds,
                    output_format="csv",
                    query_text="SELECT * FROM branches WHERE code = :branch AND 1 = :one",
                )
            )
        ).inserted_primary_key[0]
        await conn.execute(
            sa.insert(schema.audience_drivers).values(
                config_id=config,
                datasource_id=ds,
                key_column="branch",
                query_text="SELECT code AS branch, manager AS recipients FROM branches",
            )
        )
        await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=config, name="mail", method="email", delivery_config={}
            )
        )
    path, _ = write_config(tmp_path, f"sqlite:///{tmp_path}/store.db")

    listed = _cli(path, str(config), "--param", "one=1", "--json")
    assert listed.returncode == 0, listed.stderr
    answer = json.loads(listed.stdout)
    assert [(a["key"], a["targets"], a["parameters"]) for a in answer["audiences"]] == [
        ("B1", ["email:a@example.com"], {"one": "1", "branch": "B1"}),
        ("B2", ["email:b@example.com", "email:c@example.com"], {"one": "1", "branch": "B2"}),
    ]
    text = _cli(path, str(config), "--param", "one=1")
    assert text.returncode == 0 and "Statement: 2 audiences (dry run, nothing sent)" in text.stdout

    async with sqlite_store.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.audience_drivers).values(
                query_text="SELECT code AS branch, manager AS recipients, 'x' AS region "
                "FROM branches"
            )
        )
    refused = _cli(path, str(config))
    assert refused.returncode == 1
    assert "driver column 'region' is not a parameter of report 'Statement'" in refused.stderr
    async with sqlite_store.engine.connect() as conn:
        rows = (
            await conn.execute(sa.select(sa.func.count()).select_from(schema.executions))
        ).scalar()
    assert rows == 0  # a dry run writes nothing
