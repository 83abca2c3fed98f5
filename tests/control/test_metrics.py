"""GET /metrics reflects what the daemon did: schedules, fires, executions, deliveries."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.daemon_process import DaemonProcess, NotifySocket, call, write_config

CATALOG = """
[[datasources]]
name = "local"
type = "sqlite"
connection_config = {{ path = "{source}" }}

[[reports]]
name = "tick"
datasource = "local"
output_format = "csv"
query = "SELECT 1 AS one"

[[reports.schedules]]
cron = "* * * * * *"

[[reports.deliveries]]
name = "share"
method = "file_share"
config = {{ path = "{share}" }}
"""


def _metric(exposition: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", exposition, re.MULTILINE)
    assert match, f"{name} not in the exposition"
    return float(match.group(1))


def test_metrics_follow_the_daemon(tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    sqlite3.connect(source).close()
    (tmp_path / "share").mkdir()
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG.format(source=source, share=tmp_path / "share"))
    store = tmp_path / "store.db"
    config, port = write_config(
        tmp_path, f"sqlite:///{store}", scheduler={"reload_interval_seconds": 1.0}
    )
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        notify.wait_for("READY=1")
        subprocess.run(
            [sys.executable, "-m", "reporthubd", "apply", str(catalog), "-c", str(config)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        with sqlite3.connect(store) as db:  # a schedule another service wrote badly
            db.execute(
                "INSERT INTO report_schedules (config_id, cron_expression) VALUES (1, '61 * * * *')"
            )
        assert call(port, "/api/scheduler/reload", method="POST")[0] == 200
        deadline = time.monotonic() + 30
        exposition = ""
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
                exposition = answer.read().decode()
            if 'reporthubd_deliveries_total{method="file_share",outcome' in exposition and (
                _metric(exposition, "reporthubd_fire_lateness_seconds_count") >= 2
            ):
                break
            time.sleep(0.5)
        assert _metric(exposition, "reporthubd_schedules_loaded") == 1
        assert _metric(exposition, "reporthubd_schedules_disabled") == 1
        assert _metric(exposition, "reporthubd_fire_lateness_seconds_count") >= 2
        assert _metric(exposition, 'reporthubd_executions_total{status="COMPLETED"}') >= 1
        assert _metric(exposition, "reporthubd_rows_written_total") >= 1
        assert "reporthubd_deliveries_total{" in exposition
        assert _metric(exposition, "reporthubd_store_up") == 1
    finally:
        daemon.stop()
        notify.close()
