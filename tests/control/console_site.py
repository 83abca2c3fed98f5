"""A real daemon with a token and a small catalog for the console tests: a report that runs for a
second or two (a recursive count of `top` rows), one whose query fails, one whose file share
is missing until the test creates it (its delivery fails for good, then is redelivered), and
one whose webhook delivery waits at a gate the test opens (`Site.gate`): a run of it stays
RUNNING until then, so a test watches it live without racing its end."""

from __future__ import annotations

import http.server
import sqlite3
import subprocess
import sys
import threading
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
name = "gated"
description = "Counts up to top; its webhook answers when the test opens the gate"
datasource = "local"
output_format = "csv"
query = '''WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :top)
SELECT n FROM c'''
parameters = {{ top = 10 }}

[[reports.deliveries]]
name = "gate"
method = "webhook"
config = {{ url = "{gate_url}" }}

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


class Gate:
    """An HTTP receiver whose answers wait while the gate is closed (open at first)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.opened.set()
        self.received = 0
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                gate.received += 1
                gate.opened.wait(120)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="console-site-gate", daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.opened.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@dataclass
class Site:
    port: int
    directory: Path
    daemon: DaemonProcess
    notify: NotifySocket
    gate: Gate

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
        self.gate.opened.set()
        self.daemon.stop()
        self.notify.close()
        self.gate.close()


def start(directory: Path) -> Site:
    source = directory / "source.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE IF NOT EXISTS numbers (n INTEGER)")
    (directory / "share").mkdir(exist_ok=True)
    gate = Gate()
    catalog = directory / "catalog.toml"
    catalog.write_text(
        CATALOG.format(
            source=source,
            share=directory / "share",
            late_share=directory / "late-share",
            gate_url=gate.url,
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
    return Site(port=port, directory=directory, daemon=daemon, notify=notify, gate=gate)


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
