"""The engine inside a real `reporthubd run` process: trigger over HTTP, SIGTERM drains it and
records the cut-off execution CANCELLED with the reason."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import aiohttp

from reporthubd.config import StoreSettings
from reporthubd.store import executions, migrate
from reporthubd.store.database import Store
from tests.daemon_process import DaemonProcess, write_config
from tests.engine.conftest import add_config, add_datasource

SLOW = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500000000) "
    "SELECT max(x) FROM c"
)


async def test_sigterm_drains_the_engine(tmp_path: Path) -> None:
    data = tmp_path / "data.db"
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
    conn.close()
    url = f"sqlite:///{tmp_path}/store.db"
    store = Store(StoreSettings(url=url))
    await store.start()
    await migrate.upgrade(store)
    ds = await add_datasource(store, "sqlite", {"path": str(data)})
    quick = await add_config(store, ds, "SELECT 1 AS one")
    slow = await add_config(store, ds, SLOW)
    config, port = write_config(tmp_path, url, execution={"drain_grace_seconds": 0.5})
    daemon = DaemonProcess(config)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            async with http.post(f"{base}/api/execute/{quick}") as response:
                quick_id = (await response.json())["data"]["execution_id"]
            for _ in range(200):
                async with http.get(f"{base}/api/execution/{quick_id}") as response:
                    if (await response.json())["data"]["status"] == "COMPLETED":
                        break
                await asyncio.sleep(0.05)
            async with http.post(f"{base}/api/execute/{slow}") as response:
                slow_id = (await response.json())["data"]["execution_id"]
            for _ in range(200):
                async with http.get(f"{base}/api/execution/{slow_id}") as response:
                    if (await response.json())["data"]["status"] == "RUNNING":
                        break
                await asyncio.sleep(0.05)
        daemon.signal(signal.SIGTERM)
        assert await asyncio.to_thread(daemon.wait, 30) == 0, daemon.output()
    finally:
        daemon.stop()
    done = await executions.get_execution(store, quick_id)
    cut = await executions.get_execution(store, slow_id)
    await store.stop()
    assert done is not None and done.status.value == "COMPLETED" and done.file_path
    assert cut is not None and cut.status.value == "CANCELLED", daemon.output()[-2000:]
    assert "drain grace period" in (cut.error_message or "")
    assert not (tmp_path / "workspace" / slow_id).exists()
