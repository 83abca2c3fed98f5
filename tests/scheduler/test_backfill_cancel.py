"""Cancelling a backfill cancels its runs that are RUNNING in a real `reporthubd run` daemon
(the engine's cancel path, the one `POST /api/execution/{id}/cancel` takes), over a SQLite
store: they end CANCELLED "backfill cancelled by <who>", the backfill counts them, and no
further fire starts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from reporthubd.config import StoreSettings
from reporthubd.store import backfills, migrate
from reporthubd.store.database import Store
from tests.daemon_process import DaemonProcess, call, write_config
from tests.scheduler.helpers import SLOW_QUERY, add_schedule, executions, seed_config


async def _until(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def test_cancelling_a_backfill_cancels_its_running_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(StoreSettings(url=url))
    await store.start()
    try:
        await migrate.upgrade(store)
        # each run counts to 10^9: it runs until it is cancelled
        config_id = await seed_config(store, query=SLOW_QUERY, path=str(tmp_path / "src.db"))
        schedule_id = await add_schedule(
            store, config_id, "0 7 * * *", timezone="Europe/Berlin", is_active=False
        )
        config, port = write_config(
            tmp_path,
            url,
            scheduler={"heartbeat_interval_seconds": 0.5, "node_lost_after_seconds": 3.0},
        )
        daemon = DaemonProcess(config)
        try:

            async def healthy() -> bool:
                try:
                    return (await asyncio.to_thread(call, port, "/healthz"))[0] == 200
                except OSError:
                    return False

            await _until("the daemon answers", healthy)
            body = {"from": "2026-06-01", "to": "2026-06-10", "concurrency": 2, "deliver": False}
            status, answer = await asyncio.to_thread(
                call, port, f"/api/schedules/{schedule_id}/backfill", method="POST", body=body
            )
            assert status == 201, answer
            backfill_id = answer["data"]["backfill_id"]  # type: ignore[index]

            async def two_running() -> bool:
                rows = await executions(store, schedule_id)
                return [r.status for r in rows] == ["RUNNING", "RUNNING"]

            await _until("two fires running", two_running)
            status, answer = await asyncio.to_thread(
                call,
                port,
                f"/api/backfills/{backfill_id}/cancel",
                method="POST",
                body={"by": "alice"},
            )
            assert status == 200, answer

            async def settled() -> backfills.Progress | None:
                found = await backfills.progress(store, backfill_id)
                return found if found.running == 0 and found.done == 2 else None

            done = await _until("the started fires end", settled, timeout=30)
            assert done.backfill.status == "CANCELLED"
            assert done.by_status == {"CANCELLED": 2, "PENDING": 8}
            rows = await executions(store, schedule_id)
            assert [(r.status, r.error_message) for r in rows] == [
                ("CANCELLED", "backfill cancelled by alice"),
                ("CANCELLED", "backfill cancelled by alice"),
            ]
            assert daemon.proc.poll() is None  # the daemon goes on
        finally:
            daemon.stop()
        assert len(await executions(store, schedule_id)) == 2  # nothing started after the cancel
    finally:
        await store.stop()
