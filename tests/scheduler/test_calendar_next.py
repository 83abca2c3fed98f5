"""`reporthubd next --cron EXPR --calendar NAME [--policy P]`: an ad-hoc expression under a stored
business calendar, marked as a stored schedule's fires are (SKIPPED / SHIFTED with the reason),
over a SQLite store. Hand-checked: Friday 25 December 2026 is Christmas Day in Berlin (the 26th
is a Saturday), so its 09:00 fire moves to Monday the 28th, or back to Thursday the 24th (not
a public holiday)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd import cli
from reporthubd.config import StoreSettings
from reporthubd.store import migrate, schema
from reporthubd.store.database import Store
from tests.daemon_process import write_config

CHRISTMAS = "2026-12-25T08:00:00Z  2026-12-25T09:00:00+01:00 Europe/Berlin"


@pytest.fixture
async def config(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(StoreSettings(url=url))
    await store.start()
    try:
        await migrate.upgrade(store)
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.insert(schema.calendars).values(name="de-berlin", country="DE", subdivision="BE")
            )
            await conn.execute(
                sa.insert(schema.calendars).values(
                    name="switched-off", country="DE", is_active=False
                )
            )
    finally:
        await store.stop()
    path, _ = write_config(tmp_path, url)
    return path


async def _next(config: Path, *args: str) -> int:
    argv = ["next", "--cron", "0 9 * * 1-5", "--tz", "Europe/Berlin", "-c", str(config)]
    argv += ["--after", "2026-12-23T12:00Z", "-n", "4", *args]
    return await asyncio.to_thread(cli.main, argv)


async def test_next_marks_an_expression_under_a_stored_calendar(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _next(config, "--calendar", "de-berlin") == 0
    assert capsys.readouterr().out.splitlines() == [
        "2026-12-24T08:00:00Z  2026-12-24T09:00:00+01:00 Europe/Berlin",
        f"{CHRISTMAS}  SHIFTED -> 2026-12-28T09:00:00+01:00 (holiday: Christmas Day, de-berlin)",
        "2026-12-28T08:00:00Z  2026-12-28T09:00:00+01:00 Europe/Berlin",
        "2026-12-29T08:00:00Z  2026-12-29T09:00:00+01:00 Europe/Berlin",
    ]
    assert await _next(config, "--calendar", "de-berlin", "--policy", "skip") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"{CHRISTMAS}  SKIPPED (holiday: Christmas Day, de-berlin)"
    assert await _next(config, "--calendar", "de-berlin", "--policy", "previous_business_day") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        f"{CHRISTMAS}  SHIFTED -> 2026-12-24T09:00:00+01:00 (holiday: Christmas Day, de-berlin)"
    )
    assert await _next(config, "--calendar", "de-berlin", "--json") == 0
    shifted = json.loads(capsys.readouterr().out)[1]
    assert (shifted["status"], shifted["runs_utc"]) == ("shifted", "2026-12-28T08:00:00Z")


async def test_a_calendar_not_stored_or_misused_is_refused_naming_the_option(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _next(config, "--calendar", "de-hamburg") == 1
    assert capsys.readouterr().err.strip() == (
        "--calendar: no active calendar 'de-hamburg' in report_calendars (active: 'de-berlin')"
    )
    assert await _next(config, "--calendar", "switched-off") == 1
    assert capsys.readouterr().err.startswith("--calendar: no active calendar 'switched-off'")
    assert await _next(config, "--policy", "skip") == 2
    assert capsys.readouterr().err.strip() == "--policy: only with --calendar"
    argv = ["next", "1", "-c", str(config), "--calendar", "de-berlin"]
    assert await asyncio.to_thread(cli.main, argv) == 2
    assert capsys.readouterr().err.startswith("--calendar: only with --cron")
