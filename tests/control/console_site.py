"""A real daemon with a token and a small catalog for the console tests: a report that runs for a
second or two (a recursive count of `top` rows), one whose query fails, and one whose file share
is missing until the test creates it (its delivery fails for good, then is redelivered)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.daemon_process import DaemonProcess, NotifySocket, call, write_config

TOKEN = "console-test-token-0123456789"
CATALOG = """
[[datasources]]
name = "local"
type = "sqlite"
connection_config = {{ path = "{source}" }}

[[reports]]
name = "counting"
description = "Counts up to top"
datasource = "local"
output_format = "csv"
query = '''WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :top)
SELECT n, n * 2 AS twice FROM c'''
parameters = {{ top = 10 }}

[[reports.schedules]]
cron = "0 9 * * *"
timezone = "Europe/Berlin"

[[reports.deliveries]]
name = "share"
method = "file_share"
config = {{ path = "{share}" }}

[[reports]]
name = "broken"
datasource = "local"
output_format = "csv"
query = "SELECT amount FROM no_such_table"

[[reports]]
name = "handover"
datasource = "local"
output_format = "csv"
query = "SELECT 1 AS one"

[[reports.deliveries]]
name = "late share"
method = "file_share"
max_retry = 0
config = {{ path = "{late_share}" }}
"""


@dataclass
class Site:
    port: int
    directory: Path
    daemon: DaemonProcess
    notify: NotifySocket

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, body: object | None = None) -> tuple[int, dict[str, object]]:
        method = "GET" if body is None else "POST"
        return call(self.port, path, method=method, body=body, token=TOKEN, timeout=60)

    def config_id(self, name: str) -> int:
        with sqlite3.connect(self.directory / "store.db") as db:
            row = db.execute("SELECT id FROM report_configs WHERE name = ?", (name,)).fetchone()
        assert row is not None, f"no report {name}"
        return int(row[0])

    def schedule_id(self, name: str) -> int:
        with sqlite3.connect(self.directory / "store.db") as db:
            row = db.execute(
                "SELECT s.id FROM report_schedules s JOIN report_configs c ON c.id = s.config_id "
                "WHERE c.name = ?",
                (name,),
            ).fetchone()
        assert row is not None, f"no schedule of {name}"
        return int(row[0])

    def stop(self) -> None:
        self.daemon.stop()
        self.notify.close()


def start(directory: Path) -> Site:
    source = directory / "source.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE IF NOT EXISTS numbers (n INTEGER)")
    (directory / "share").mkdir(exist_ok=True)
    catalog = directory / "catalog.toml"
    catalog.write_text(
        CATALOG.format(
            source=source, share=directory / "share", late_share=directory / "late-share"
        ),
        encoding="utf-8",
    )
    (directory / "tokens").write_text(TOKEN + "\n", encoding="utf-8")
    config, port = write_config(
        directory,
        f"sqlite:///{directory / 'store.db'}",
        control={"token_file": str(directory / "tokens")},
    )
    notify = NotifySocket(directory)
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": str(notify.path)})
    notify.wait_for("READY=1", timeout=60)
    subprocess.run(
        [sys.executable, "-m", "reporthubd", "apply", str(catalog), "-c", str(config)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    call(port, "/api/scheduler/reload", method="POST", token=TOKEN)
    return Site(port=port, directory=directory, daemon=daemon, notify=notify)


def wait_terminal(site: Site, execution_id: str, timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = site.api(f"/api/execution/{execution_id}")
        data = body["data"]
        assert status == 200 and isinstance(data, dict), body
        if data["status"] not in ("PENDING", "RUNNING"):
            return data
        time.sleep(0.2)
    raise AssertionError(f"execution {execution_id} did not finish within {timeout}s")


def post_from(
    site: Site, path: str, *, origin: str | None = None, fetch_site: str | None = None
) -> tuple[int, dict[str, object]]:
    """A POST with the token, as a browser on another site would send it."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(site.url + path, data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if origin is not None:
        request.add_header("Origin", origin)
    if fetch_site is not None:
        request.add_header("Sec-Fetch-Site", fetch_site)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
