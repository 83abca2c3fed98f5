"""Reports as code: apply upserts in one transaction, export round-trips, errors write nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd import catalog
from reporthubd.store import catalog as store_catalog
from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.daemon_process import write_config

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = (REPO / "examples" / "catalog.toml").read_text(encoding="utf-8")


async def _counts(store: Store) -> dict[str, int]:
    async with store.engine.connect() as conn:
        return {
            table.name: int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
            for table in schema.DEFINITION_TABLES
        }


async def test_apply_then_export_round_trips_one_of_everything(store: Store) -> None:
    parsed = catalog.parse(EXAMPLE)
    plan = await store_catalog.apply(store, parsed)
    assert [c.action for c in plan.changes] == ["create"] * 6
    assert await _counts(store) == {
        "report_datasources": 1,
        "report_configs": 1,
        "report_schedules": 1,
        "report_deliveries": 1,
        "report_delivery_recipients": 2,
    }

    exported, errors = await store_catalog.export(store)
    assert errors == []
    assert exported == parsed
    again = catalog.parse(catalog.render(exported))
    assert again == parsed

    # Applying the exported file changes nothing.
    assert (await store_catalog.apply(store, again)).empty


async def test_inline_secrets_are_masked_on_export_and_kept_on_reapply(store: Store) -> None:
    text = EXAMPLE.replace(
        'password = { env = "WAREHOUSE_PASSWORD" }', 'password = "s3cr3t-inline"'
    )
    await store_catalog.apply(store, catalog.parse(text))
    rendered = catalog.render((await store_catalog.export(store))[0])
    assert "s3cr3t-inline" not in rendered and 'password = "***"' in rendered
    assert (await store_catalog.apply(store, catalog.parse(rendered))).empty
    async with store.engine.connect() as conn:
        config = await conn.scalar(sa.select(schema.datasources.c.connection_config))
    assert config["password"] == "s3cr3t-inline"


async def test_changes_are_diffed_and_dry_run_writes_nothing(store: Store) -> None:
    await store_catalog.apply(store, catalog.parse(EXAMPLE))
    changed = EXAMPLE.replace("timeout_seconds = 300", "timeout_seconds = 60").replace(
        'email = "audit@example.com"', 'email = "controller@example.com"'
    )
    plan = await store_catalog.apply(store, catalog.parse(changed), dry_run=True)
    assert [str(c) for c in plan.changes] == [
        "~ report daily-sales (timeout_seconds)",
        "+ recipient daily-sales/finance-mail/controller@example.com",
    ]
    async with store.engine.connect() as conn:
        assert await conn.scalar(sa.select(schema.configs.c.timeout_seconds)) == 300

    plan = await store_catalog.apply(store, catalog.parse(changed), prune=True)
    assert "- recipient daily-sales/finance-mail/audit@example.com" in [
        str(c) for c in plan.changes
    ]
    assert (await _counts(store))["report_delivery_recipients"] == 2


async def test_prune_removes_what_the_file_no_longer_names(store: Store) -> None:
    await store_catalog.apply(store, catalog.parse(EXAMPLE))
    only_datasource = EXAMPLE.split("[[reports]]")[0]
    plan = await store_catalog.apply(store, catalog.parse(only_datasource), prune=True)
    assert "- report daily-sales" in [str(c) for c in plan.changes]
    assert await _counts(store) == {
        "report_datasources": 1,
        "report_configs": 0,
        "report_schedules": 0,
        "report_deliveries": 0,
        "report_delivery_recipients": 0,
    }


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (('cron = "0 7 * * 1-5"', 'cron = "0 25 * * *"'), "reports[0].schedules[0].cron"),
        (('type = "bcc"', 'type = "fax"'), "reports[0].deliveries[0].recipients[1].type"),
        (('output_format = "csv"', 'output_format = "docx"'), "reports[0].output_format"),
        (
            ("max_concurrent_queries = 2", "max_concurrent_querys = 2"),
            "datasources[0].max_concurrent_querys",
        ),
    ],
)
def test_an_error_names_its_place(edit: tuple[str, str], where: str) -> None:
    text = EXAMPLE.replace(*edit)
    line = next(n for n, s in enumerate(text.splitlines(), 1) if s.startswith(edit[1]))
    with pytest.raises(catalog.CatalogError) as caught:
        catalog.parse(text)
    assert [(p.where, p.line) for p in caught.value.problems] == [(where, line)]


async def test_apply_of_a_bad_file_writes_nothing(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    bad = EXAMPLE.replace('datasource = "warehouse"', 'datasource = "nowhere"')
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    config, _ = write_config(tmp_path, store_url)
    result = subprocess.run(
        [sys.executable, "-m", "reporthubd", "apply", str(path), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "reports[0].datasource: no datasource named 'nowhere'" in result.stderr
    assert "nothing was written" in result.stderr
    assert set((await _counts(store)).values()) == {0}

    good = tmp_path / "good.toml"
    good.write_text(EXAMPLE)
    result = subprocess.run(
        [sys.executable, "-m", "reporthubd", "apply", str(good), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "applied: 6 to create, 0 to update, 0 to delete" in result.stdout
    exported = subprocess.run(
        [sys.executable, "-m", "reporthubd", "export", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert exported.returncode == 0, exported.stderr
    assert catalog.parse(exported.stdout) == catalog.parse(EXAMPLE)
