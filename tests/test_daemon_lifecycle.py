"""The daemon as systemd sees it: READY, RELOADING, WATCHDOG, STOPPING, exit codes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd.config import StoreSettings
from reporthubd.daemon import Supervisor
from reporthubd.store import migrate
from reporthubd.store.database import Store
from tests.daemon_process import DaemonProcess, NotifySocket, call, write_config


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


def test_notify_ready_reload_watchdog_and_stop(tmp_path: Path, notify: NotifySocket) -> None:
    config, port = write_config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    daemon = DaemonProcess(
        config, env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"}
    )
    try:
        notify.wait_for("READY=1")
        status, body = call(port, "/healthz")
        assert status == 200 and body["status"] == "success"

        pings_before = sum(m.count("WATCHDOG=1") for m in notify.messages)
        notify.wait_for("WATCHDOG=1", timeout=5)
        notify.wait_for("WATCHDOG=1", timeout=5)
        assert sum(m.count("WATCHDOG=1") for m in notify.messages) >= pings_before + 2

        seen = len(notify.messages)
        daemon.signal(signal.SIGHUP)
        notify.wait_for("READY=1")
        after_hup = [line for m in notify.messages[seen:] for line in m.splitlines()]
        assert "RELOADING=1" in after_hup
        assert after_hup.index("RELOADING=1") < len(after_hup) - after_hup[::-1].index("READY=1")

        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert daemon.wait(timeout=10) == 0
        assert time.monotonic() - started < 5.0 + 2  # within the configured drain grace
    finally:
        daemon.stop()
    assert "reporthubd stopped" in daemon.output()


def test_failed_reload_keeps_running_and_says_why(tmp_path: Path, notify: NotifySocket) -> None:
    config, port = write_config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        notify.wait_for("READY=1")
        good = config.read_text()
        config.write_text(good + "\n[execution]\nbogus_key = 1\n")
        daemon.signal(signal.SIGHUP)
        notify.wait_for("READY=1")
        assert call(port, "/healthz")[0] == 200
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.stop()
    events = [json.loads(line) for line in daemon.output().splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"].startswith("reload failed")]
    assert failed, daemon.output()
    assert "bogus_key" in failed[0]["reason"] or "execution" in failed[0]["reason"]


def test_second_signal_forces_exit(tmp_path: Path, notify: NotifySocket) -> None:
    config, _ = write_config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        notify.wait_for("READY=1")
        daemon.signal(signal.SIGTERM)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) in (0, 1)
    finally:
        daemon.stop()


def test_store_at_unknown_revision_refuses_to_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"

    async def prepare() -> None:
        store = Store(StoreSettings(url=url))
        await store.start()
        await migrate.upgrade(store)
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = 'ffff9999'")
            )
        await store.stop()

    asyncio.run(prepare())
    config, _ = write_config(tmp_path, url)
    result = subprocess.run(
        [sys.executable, "-m", "reporthubd", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ffff9999" in result.stderr and "reporthubd db current" in result.stderr


def test_server_store_behind_head_names_the_upgrade_command(tmp_path: Path) -> None:
    """Server stores are not upgraded automatically: an empty one makes `run` say what to run."""
    config, _ = write_config(
        tmp_path, f"sqlite:///{tmp_path / 'store.db'}", store={"auto_upgrade": False}
    )
    result = subprocess.run(
        [sys.executable, "-m", "reporthubd", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "reporthubd db upgrade" in result.stderr


async def test_a_dying_background_task_is_reported_as_the_failure() -> None:
    supervisor = Supervisor()

    async def crash() -> None:
        raise RuntimeError("boom")

    supervisor.spawn("crashing-loop", crash())
    await asyncio.wait_for(supervisor.failed.wait(), timeout=5)
    assert supervisor.failure is not None and "crashing-loop" in supervisor.failure
    assert "boom" in supervisor.failure
    await supervisor.stop()


async def test_a_forever_task_that_returns_is_a_failure_but_a_one_shot_is_not() -> None:
    supervisor = Supervisor()

    async def done() -> None:
        return None

    supervisor.spawn("one-shot", done(), forever=False)
    await asyncio.sleep(0.05)
    assert not supervisor.failed.is_set()
    supervisor.spawn("loop", done())
    await asyncio.wait_for(supervisor.failed.wait(), timeout=5)
    assert supervisor.failure == "background task loop exited unexpectedly"
    await supervisor.stop()
