"""The status page, loaded in headless Chromium: schedules, history strip, a failure's reason."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from reporthubd import catalog
from reporthubd.config import StoreSettings
from reporthubd.store import catalog as store_catalog
from reporthubd.store import migrate, schema
from reporthubd.store.database import Store
from tests import servers
from tests.daemon_process import DaemonProcess, NotifySocket, write_config

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
REASON = 'relation "orders" does not exist <script>alert(1)</script>'
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def _seed(url: str) -> None:
    store = Store(StoreSettings(url=url))
    await store.start()
    await migrate.upgrade(store)
    text = (REPO / "examples" / "catalog.toml").read_text()
    await store_catalog.apply(store, catalog.parse(text))
    now = datetime.now(UTC)
    async with store.engine.begin() as conn:
        config_id = await conn.scalar(sa.select(schema.configs.c.id))
        for n, status in enumerate(["COMPLETED"] * 5 + ["FAILED"]):
            await conn.execute(
                sa.insert(schema.executions).values(
                    id=f"00000000-0000-0000-0000-00000000000{n}",
                    config_id=config_id,
                    trigger_type="manual",
                    status=status,
                    created_at=now - timedelta(minutes=10 - n),
                    finished_at=now - timedelta(minutes=9 - n),
                    error_message=REASON if status == "FAILED" else None,
                )
            )
    await store.stop()


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    chromium = shutil.which("chromium")
    if chromium is None:
        servers.unavailable("chromium not installed (Debian package chromium)")
        raise AssertionError  # unreachable
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=90,
        )


def test_status_page_in_chromium(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    asyncio.run(_seed(url))
    config, port = write_config(tmp_path, url)
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        notify.wait_for("READY=1")
        page = f"http://127.0.0.1:{port}/"
        dom = _chromium("--dump-dom", page)
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        assert "daily-sales" in html and "0 7 * * 1-5" in html and "Europe/Berlin" in html
        assert 'relation "orders" does not exist' in html  # the failure's reason is visible
        assert "<script>alert(1)</script>" not in html  # ...and escaped
        assert html.count('class="mark COMPLETED"') == 5 and html.count('class="mark FAILED"') == 1
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        result = _chromium(f"--screenshot={shot}", "--window-size=1200,900", page)
        assert result.returncode == 0, result.stderr[-2000:]
        assert shot.stat().st_size > 10_000
        phone = ARTIFACTS / "status-page-phone.png"
        result = _chromium(f"--screenshot={phone}", "--window-size=390,844", page)
        assert result.returncode == 0 and phone.stat().st_size > 5_000
    finally:
        daemon.stop()
        notify.close()
