"""GET /api/executions (filters, paging, bad input) and GET /api/execution/{id}/file."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from tests.daemon_process import DaemonProcess, NotifySocket, call, write_config

CATALOG = """
[[datasources]]
name = "local"
type = "sqlite"
connection_config = {{ path = "{source}" }}

[[reports]]
name = "numbers"
datasource = "local"
output_format = "csv"
query = "SELECT n, n * n AS square FROM numbers WHERE n <= :top ORDER BY n"
parameters = {{ top = 100 }}

[[reports.deliveries]]
name = "share"
method = "file_share"
config = {{ path = "{share}" }}
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, int]]:
    tmp_path = tmp_path_factory.mktemp("history")
    source = tmp_path / "source.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE numbers (n INTEGER)")
        db.executemany("INSERT INTO numbers VALUES (?)", [(n,) for n in range(1, 1001)])
    catalog = tmp_path / "catalog.toml"
    (tmp_path / "share").mkdir()
    catalog.write_text(CATALOG.format(source=source, share=tmp_path / "share"))
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


def _run(port: int, top: int) -> str:
    status, body = call(port, "/api/execute/1", method="POST", body={"parameters": {"top": top}})
    assert status == 202, body
    execution_id = str(body["data"]["execution_id"])  # type: ignore[index]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = call(port, f"/api/execution/{execution_id}")
        if body["data"]["status"] in ("COMPLETED", "FAILED"):  # type: ignore[index]
            assert body["data"]["status"] == "COMPLETED", body  # type: ignore[index]
            return execution_id
        time.sleep(0.1)
    raise AssertionError(f"execution {execution_id} did not finish")


def test_list_filters_pages_and_downloads(daemon: tuple[DaemonProcess, int]) -> None:
    _, port = daemon
    assert call(port, "/api/executions")[1]["data"]["total"] == 0  # type: ignore[index]
    first, second, third = _run(port, 10), _run(port, 20), _run(port, 30)

    status, body = call(port, "/api/executions?limit=2")
    data = body["data"]
    assert status == 200 and data["total"] == 3  # type: ignore[index]
    assert [i["id"] for i in data["items"]] == [third, second]  # type: ignore[index]
    status, body = call(port, "/api/executions?limit=2&offset=2")
    assert [i["id"] for i in body["data"]["items"]] == [first]  # type: ignore[index]
    assert body["data"]["next_after"] is None  # type: ignore[index]

    # Keyset pages: after = the previous answer's next_after; no count on such a page.
    cursor = data["next_after"]  # type: ignore[index]
    assert isinstance(cursor, str)
    status, body = call(port, "/api/executions?limit=2&after=" + urllib.parse.quote(cursor))
    page = body["data"]
    assert status == 200 and [i["id"] for i in page["items"]] == [first]  # type: ignore[index]
    assert page["total"] is None and page["next_after"] is None  # type: ignore[index]
    status, body = call(port, "/api/executions?limit=1&config_id=1&status=COMPLETED")
    cursor = body["data"]["next_after"]  # type: ignore[index]
    status, body = call(
        port,
        "/api/executions?limit=1&config_id=1&status=COMPLETED&after=" + urllib.parse.quote(cursor),
    )
    assert [i["id"] for i in body["data"]["items"]] == [second]  # type: ignore[index]
    status, body = call(port, f"/api/executions?offset=1&after={urllib.parse.quote(cursor)}")
    assert status == 200, body  # an offset counts from the cursor
    assert [i["id"] for i in body["data"]["items"]] == [first]  # type: ignore[index]

    status, body = call(port, "/api/executions?config_id=1&status=COMPLETED,FAILED")
    assert status == 200 and body["data"]["total"] == 3  # type: ignore[index]
    status, body = call(port, "/api/executions?status=FAILED")
    assert body["data"]["total"] == 0  # type: ignore[index]
    status, body = call(port, "/api/executions?since=2999-01-01T00:00:00Z")
    assert body["data"]["total"] == 0  # type: ignore[index]

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/execution/{second}/file") as answer:
        content = answer.read()
        disposition = answer.headers["Content-Disposition"]
    assert content.decode().splitlines() == ["n,square"] + [f"{n},{n * n}" for n in range(1, 21)]
    assert disposition.startswith("attachment; filename=") and ".csv" in disposition
    _, body = call(port, f"/api/execution/{second}")
    data = body["data"]
    assert data["file_sha256"] == hashlib.sha256(content).hexdigest()  # type: ignore[index]
    ledger = data["deliveries"]  # type: ignore[index]
    assert [d["delivery_id"] for d in ledger] == [1]
    (attempt,) = ledger[0]["attempts"]
    assert attempt["attempt"] == 1 and attempt["status"] == "SUCCESS"
    assert attempt["target"].endswith(".csv") and attempt["error"] is None


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "status=completed",
        "until=",
        "limit=ten",
        "offset=-1",
        "config_id=abc",
        "status=DONE",
        "since=yesterday",
        "until=2026-01-01T00:00:00",
        "after=yesterday",
        "after=2026-01-01T00:00:00|x",
    ],
)
def test_bad_filters_are_400(daemon: tuple[DaemonProcess, int], query: str) -> None:
    _, port = daemon
    status, body = call(port, f"/api/executions?{query}")
    assert status == 400 and body["status"] == "error" and body["error"]


def test_unknown_execution_file_is_404(daemon: tuple[DaemonProcess, int]) -> None:
    _, port = daemon
    status, body = call(port, "/api/execution/00000000-0000-0000-0000-000000000000/file")
    assert status == 404 and "does not exist" in str(body["error"])


def test_execute_waits_for_the_result_and_checks_its_body(
    daemon: tuple[DaemonProcess, int],
) -> None:
    _, port = daemon
    body_in = {"parameters": {"top": 5}, "wait": 60, "scheduled_for": "2026-11-01T09:00:00+01:00"}
    status, body = call(port, "/api/execute/1", method="POST", body=body_in)
    data = body["data"]
    assert status == 200 and data["status"] == "COMPLETED", body  # type: ignore[index]
    assert data["row_count"] == 5 and data["scheduled_for"] == "2026-11-01T08:00:00+00:00"  # type: ignore[index]
    for bad in (
        {"wait": -1},
        {"wait": "soon"},
        {"scheduled_for": "2026-11-01T09:00:00"},
        {"parameters": [1]},
        {"deliver": "yes"},
    ):
        status, body = call(port, "/api/execute/1", method="POST", body=bad)
        assert status == 400 and body["status"] == "error", (bad, body)
    assert call(port, "/api/execute/999", method="POST")[0] == 404
