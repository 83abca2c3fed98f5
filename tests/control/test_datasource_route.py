"""POST /api/test-datasource/{id} against the running PostgreSQL and MariaDB and a SQLite file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests import servers
from tests.daemon_process import DaemonProcess, NotifySocket, call, write_config

WRONG = "Wr0ng-Passw0rd-zz"
CATALOG = f"""
[[datasources]]
name = "pg"
type = "postgresql"
[datasources.connection_config]
host = "{servers.POSTGRES_HOST}"
port = {servers.POSTGRES_PORT}
database = "postgres"
username = "postgres"

[[datasources]]
name = "maria"
type = "mysql"
[datasources.connection_config]
host = "{servers.MARIADB_HOST}"
port = {servers.MARIADB_PORT}
database = "mysql"
username = "root"
password = ""

[[datasources]]
name = "maria-wrong-password"
type = "mysql"
[datasources.connection_config]
host = "{servers.MARIADB_HOST}"
port = {servers.MARIADB_PORT}
database = "mysql"
username = "root"
password = "{WRONG}"

[[datasources]]
name = "closed-port"
type = "postgresql"
connection_config = {{ host = "127.0.0.1", port = {servers.free_port()}, database = "x" }}

[[datasources]]
name = "local"
type = "sqlite"
connection_config = {{ path = "SQLITE_PATH" }}
"""


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp_path = tmp_path_factory.mktemp("test-datasource")
    catalog = tmp_path / "catalog.toml"
    source = tmp_path / "source.db"
    sqlite3.connect(source).close()
    catalog.write_text(CATALOG.replace("SQLITE_PATH", str(source)))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    config, port = write_config(tmp_path, url)
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": str(notify.path)})
    notify.wait_for("READY=1")
    subprocess.run(
        [sys.executable, "-m", "reporthubd", "apply", str(catalog), "-c", str(config)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # A row another service wrote badly: an unknown type.
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO report_datasources (name, type, connection_config) "
                "VALUES ('odd', 'excelsheet', '{}')"
            )
        )
    engine.dispose()
    yield port
    daemon.stop()
    notify.close()


@pytest.mark.parametrize(
    ("datasource_id", "version_fragment"), [(1, "PostgreSQL"), (2, "MariaDB"), (5, "3.")]
)
def test_reachable_sources_report_version_and_round_trip(
    port: int, datasource_id: int, version_fragment: str
) -> None:
    status, body = call(port, f"/api/test-datasource/{datasource_id}", method="POST")
    data = body["data"]
    assert status == 200 and data["ok"] is True, body  # type: ignore[index]
    assert version_fragment in str(data["server_version"])  # type: ignore[index]
    assert data["round_trip_ms"] >= 0  # type: ignore[index,operator]


def test_wrong_password_fails_cleanly_without_the_secret(port: int) -> None:
    status, body = call(port, "/api/test-datasource/3", method="POST")
    assert status == 200 and body["data"]["ok"] is False  # type: ignore[index]
    error = str(body["data"]["error"])  # type: ignore[index]
    assert servers.MARIADB_HOST in error and WRONG not in str(body)


def test_unreachable_host_fails_fast(port: int) -> None:
    status, body = call(port, "/api/test-datasource/4", method="POST")
    assert status == 200 and body["data"]["ok"] is False  # type: ignore[index]
    assert body["data"]["elapsed_ms"] < 10_000  # type: ignore[index,operator]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/test-datasource/999", 404),
        ("/api/test-datasource/abc", 400),
        ("/api/test-datasource/6", 422),
    ],
)
def test_bad_ids(port: int, path: str, expected: int) -> None:
    status, body = call(port, path, method="POST")
    assert status == expected and body["status"] == "error"
