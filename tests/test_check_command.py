"""`reporthubd check` lists every invalid active row by table and id, and exits 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.daemon_process import write_config


async def _seed(store: Store) -> dict[str, int]:
    """One valid chain and three invalid rows: a bad cron, an unknown datasource type, and
    malformed JSON. Server databases refuse malformed JSON text in a JSON column, so there the
    third row holds JSON that is not an object (a double-encoded string), which is the same
    defect as far as reporthubd is concerned."""
    malformed = "{not json" if store.dialect == "sqlite" else '"{\\"host\\": \\"x\\"}"'
    async with store.engine.begin() as conn:
        good_ds = (
            await conn.execute(
                sa.insert(schema.datasources).values(
                    name="good", type="sqlite", connection_config={"path": "/tmp/x.db"}
                )
            )
        ).inserted_primary_key[0]
        bad_type = (
            await conn.execute(
                sa.insert(schema.datasources).values(
                    name="bad-type", type="excelsheet", connection_config={"path": "x"}
                )
            )
        ).inserted_primary_key[0]
        await conn.execute(
            sa.text(
                "INSERT INTO report_datasources (name, type, connection_config) "
                "VALUES ('bad-json', 'postgresql', :raw)"
            ),
            {"raw": malformed},
        )
        bad_json = (
            await conn.execute(
                sa.select(schema.datasources.c.id).where(schema.datasources.c.name == "bad-json")
            )
        ).scalar_one()
        config = (
            await conn.execute(
                sa.insert(schema.configs).values(
                    name="daily",
                    datasource_id=good_ds,
                    query_text="SELECT 1",
                    output_format="csv",
                )
            )
        ).inserted_primary_key[0]
        good_schedule = (
            await conn.execute(
                sa.insert(schema.schedules).values(config_id=config, cron_expression="0 9 * * *")
            )
        ).inserted_primary_key[0]
        bad_cron = (
            await conn.execute(
                sa.insert(schema.schedules).values(config_id=config, cron_expression="61 25 * * *")
            )
        ).inserted_primary_key[0]
        # An inactive broken row is not checked.
        await conn.execute(
            sa.insert(schema.schedules).values(
                config_id=config, cron_expression="nonsense", is_active=False
            )
        )
    return {
        "bad_type": int(bad_type),
        "bad_json": int(bad_json),
        "bad_cron": int(bad_cron),
        "good_schedule": int(good_schedule),
    }


async def test_check_lists_the_three_invalid_rows(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    ids = await _seed(store)
    config, _ = write_config(tmp_path, store_url)
    result = subprocess.run(
        [sys.executable, "-m", "reporthubd", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "3 invalid active rows" in out
    assert f"report_schedules id={ids['bad_cron']}: cron_expression" in out
    assert f"report_datasources id={ids['bad_type']}: type: unknown value 'excelsheet'" in out
    assert f"report_datasources id={ids['bad_json']}: connection_config:" in out
    assert f"id={ids['good_schedule']}" not in out
    assert "nonsense" not in out


async def test_check_on_a_clean_store_exits_0(store: Store, store_url: str, tmp_path: Path) -> None:
    config, _ = write_config(tmp_path, store_url)
    result = subprocess.run(
        [sys.executable, "-m", "reporthubd", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all well" in result.stdout
