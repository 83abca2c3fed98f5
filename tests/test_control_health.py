"""/healthz and /readyz over a real port; /readyz follows the store's server down and back up."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess, NotifySocket, call, write_config
from tests.private_servers import PrivateMariaDB


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    server = PrivateMariaDB(tmp_path / "mariadb")
    server.dir.mkdir()
    server.install()
    server.start()
    server.create_database()
    yield server
    server.stop()


def test_readyz_follows_the_store_down_and_up(tmp_path: Path, mariadb: PrivateMariaDB) -> None:
    config, port = write_config(
        tmp_path, mariadb.url, store={"auto_upgrade": True, "connect_timeout_seconds": 2.0}
    )
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        notify.wait_for("READY=1", timeout=60)
        status, body = call(port, "/readyz")
        assert (status, body["status"], body["data"]) == (
            200,
            "success",
            {"store": "up", "journal_pending": 0},
        )
        assert set(body) == {"status", "message", "data"}

        mariadb.stop()
        status, body = call(port, "/readyz")
        assert status == 503
        assert body["status"] == "error" and "unreachable" in str(body["error"])
        assert set(body) == {"status", "message", "error"}
        assert call(port, "/healthz")[0] == 200  # alive, just not ready
        status, body = call(port, "/api/executions")  # an API read while the store is down
        assert status == 503 and body["message"] == "store unavailable", body

        mariadb.start()
        status, body = call(port, "/readyz")
        assert status == 200, body
        assert daemon.proc.poll() is None  # the same process throughout
    finally:
        daemon.stop()
        notify.close()


def test_healthz_envelope_and_unknown_path(tmp_path: Path) -> None:
    config, port = write_config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        notify.wait_for("READY=1")
        status, body = call(port, "/healthz")
        assert status == 200
        assert body["status"] == "success" and body["message"] == "alive"
        assert isinstance(body["data"], dict) and body["data"]["node_id"]
        status, body = call(port, "/no/such/route")
        assert status == 404 and body["status"] == "error"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            assert answer.headers["Content-Type"].startswith("text/plain")
            exposition = answer.read().decode()
        assert "reporthubd_store_up 1.0" in exposition
        assert "# TYPE reporthubd_executions_total counter" in exposition
        assert "reporthubd_node_heartbeat_age_seconds" in exposition
    finally:
        daemon.stop()
        notify.close()
