"""`reporthubd check` on notices (issue 17, item 6): a report's notify object and a schedule's
deadline the daemon would refuse are listed with their row and key; good ones are not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reporthubd.store.database import Store
from tests.daemon_process import write_config
from tests.engine.conftest import add_config, add_datasource, add_schedule


async def test_check_names_bad_notify_objects_and_deadlines(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    source = await add_datasource(store, "sqlite", {"path": str(tmp_path / "data.db")})
    good = await add_config(
        store,
        source,
        "SELECT 1",
        notify={
            "owners": ["ann@example.com"],
            "rules": [{"events": ["late"], "notify": ["owners"]}],
        },
    )
    bad_event = await add_config(
        store,
        source,
        "SELECT 1",
        notify={"rules": [{"events": ["failed", "on_fire"], "notify": ["owners"]}]},
    )
    await add_schedule(store, good, "0 6 * * *", deadline="07:30 Europe/Berlin")
    bad_zone = await add_schedule(store, good, "0 7 * * *", deadline="08:00 Atlantis/Central")
    config, _ = write_config(tmp_path, store_url)
    result = subprocess.run(
        [sys.executable, "-m", "reporthubd", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "2 invalid active rows" in out, out
    assert (
        f"report_configs id={bad_event}: 'report-" in out
        and "notify.rules[0].events[1]: unknown event 'on_fire'" in out
    ), out
    assert (
        f"report_schedules id={bad_zone}: deadline: unknown time zone 'Atlantis/Central'" in out
    ), out
    assert f"report_configs id={good}:" not in out
