"""Workbooks through the daemon: `apply` a catalog with a three-sheet report, run it through the
API (POST /api/execute with wait), download the file and read it back with openpyxl; a report
whose sheet uses a parameter it does not take answers FAILED naming the sheet's key."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from tests.daemon_process import DaemonProcess, NotifySocket, call, write_config

CATALOG = """
[[datasources]]
name = "local"
type = "sqlite"
connection_config = {{ path = "{source}" }}

[[datasources]]
name = "other"
type = "sqlite"
connection_config = {{ path = "{other}" }}

[[reports]]
name = "book"
datasource = "local"
output_format = "excel"
query = "SELECT n, n * 1.5 AS half_more FROM numbers WHERE n <= :top ORDER BY n"
parameters = {{ top = 100 }}

[reports.format_options]
sheet_name = "Numbers"

[[reports.format_options.sheets]]
name = "Squares"
query = "SELECT n, n * n AS square FROM numbers WHERE n <= :top / 2 ORDER BY n"

[[reports.format_options.sheets]]
name = "Words"
datasource = "other"
query = "SELECT w FROM words WHERE length(w) <= :top ORDER BY w"

[[reports]]
name = "bad-book"
datasource = "local"
output_format = "excel"
query = "SELECT n FROM numbers WHERE n <= :top"
parameters = {{ top = 3 }}
format_options = {{ sheets = [{{ name = "Region", query = "SELECT :region AS r" }}] }}
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, int]]:
    tmp_path = tmp_path_factory.mktemp("workbook")
    source, other = tmp_path / "source.db", tmp_path / "other.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE numbers (n INTEGER)")
        db.executemany("INSERT INTO numbers VALUES (?)", [(n,) for n in range(1, 1001)])
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE words (w TEXT)")
        db.executemany("INSERT INTO words VALUES (?)", [("a" * n,) for n in range(1, 31)])
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG.format(source=source, other=other))
    config, port = write_config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    notify = NotifySocket(tmp_path)
    process = DaemonProcess(config, env={"NOTIFY_SOCKET": str(notify.path)})
    notify.wait_for("READY=1")
    subprocess.run(
        [sys.executable, "-m", "reporthubd", "apply", str(catalog), "-c", str(config)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    yield process, port
    process.stop()
    notify.close()


def test_a_workbook_through_the_api(daemon: tuple[DaemonProcess, int]) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    _, port = daemon
    body_in = {"parameters": {"top": 20}, "wait": 60}
    status, body = call(port, "/api/execute/1", method="POST", body=body_in)
    data = body["data"]
    assert status == 200 and data["status"] == "COMPLETED", body  # type: ignore[index]
    assert data["row_count"] == 20 + 10 + 20  # type: ignore[index]
    url = f"http://127.0.0.1:{port}/api/execution/{data['id']}/file"  # type: ignore[index]
    with urllib.request.urlopen(url, timeout=30) as answer:
        book = openpyxl.load_workbook(io.BytesIO(answer.read()), read_only=True)
    assert book.sheetnames == ["Numbers", "Squares", "Words"]
    numbers = list(book["Numbers"].iter_rows(values_only=True))
    squares = list(book["Squares"].iter_rows(values_only=True))
    words = list(book["Words"].iter_rows(values_only=True))
    assert (len(numbers), len(squares), len(words)) == (21, 11, 21)
    assert numbers[2] == (2, 3.0) and squares[-1] == (10, 100) and words[1] == ("a",)


def test_a_sheet_parameter_the_report_does_not_take(daemon: tuple[DaemonProcess, int]) -> None:
    _, port = daemon
    _, body = call(port, "/api/execute/2", method="POST", body={"wait": 60})
    data = body["data"]
    assert data["status"] == "FAILED", body  # type: ignore[index]
    message = str(data["error_message"])  # type: ignore[index]
    assert "format option 'sheets[1].query' ('Region')" in message
    assert "region" in message
