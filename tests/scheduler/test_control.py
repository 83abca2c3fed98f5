"""The scheduler's control routes and `reporthubd next`, on a real daemon over a real port
(SQLite store), plus SIGHUP and the definitions watcher."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd import cli
from reporthubd.config import StoreSettings
from reporthubd.store import migrate, schema
from reporthubd.store.database import Store
from tests.daemon_process import write_config
from tests.scheduler.helpers import add_schedule, seed_config, update_schedule
from tests.scheduler.nodes import Node


async def _store(tmp_path: Path) -> tuple[Store, str]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(StoreSettings(url=url))
    await store.start()
    await migrate.upgrade(store)
    return store, url


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def test_status_jobs_next_trigger_and_sighup_reload(tmp_path: Path) -> None:
    store, url = await _store(tmp_path)
    config_id = await seed_config(store, path=str(tmp_path / "src.db"))
    good = await add_schedule(store, config_id, "0 9 * * *", timezone="Europe/Berlin")
    bad = await add_schedule(store, config_id, "0 9 * * *", timezone="Not/AZone")
    node = Node(tmp_path / "n", url, "node-c", reload_interval_seconds=3600.0)
    try:
        await node.ready()
        call = node.request
        status = (await asyncio.to_thread(call, "GET", "/api/scheduler/status"))["data"]
        assert status["node_id"] == "node-c" and status["schedules_loaded"] == 1
        assert status["schedules_disabled"][0]["schedule_id"] == bad
        assert "Not/AZone" in status["schedules_disabled"][0]["reason"]
        assert status["last_reload"]["ok"] is True
        assert set(status["fire_lateness"]) == {"fires", "p50_ms", "p99_ms", "max_ms"}
        assert status["executions"]["queued"] == 0

        jobs = (await asyncio.to_thread(call, "GET", "/api/scheduler/jobs"))["data"]["jobs"]
        by_id = {job["schedule_id"]: job for job in jobs}
        assert by_id[good]["cron_expression"] == "0 9 * * *"
        assert by_id[good]["timezone"] == "Europe/Berlin"
        assert "T09:00:00+0" in by_id[good]["next_fire_local"]
        assert by_id[bad]["disabled"]

        nxt = await asyncio.to_thread(call, "GET", f"/api/schedules/{good}/next?n=3")
        fires = nxt["data"]["fires"]
        assert len(fires) == 3 and all("T09:00:00+0" in f["local"] for f in fires)
        refused = await asyncio.to_thread(call, "GET", f"/api/schedules/{bad}/next")
        assert refused["status"] == "error" and "Not/AZone" in refused["error"]

        answer = await asyncio.to_thread(
            call,
            "POST",
            f"/api/scheduler/trigger/{good}",
            {"scheduled_for": "2026-01-05T09:00:00+01:00"},
        )
        assert answer["status"] == "success", answer
        execution_id = answer["data"]["execution_id"]
        async with store.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(schema.executions).where(schema.executions.c.id == execution_id)
                )
            ).one()
        assert (row.trigger_type, row.schedule_id, row.attempt) == ("manual", good, 1)
        assert row.scheduled_for.isoformat() == "2026-01-05T08:00:00+00:00"
        missing = await asyncio.to_thread(call, "POST", "/api/scheduler/trigger/424242")
        assert missing["status"] == "error" and "424242" in missing["error"]
        naive = await asyncio.to_thread(
            call, "POST", f"/api/scheduler/trigger/{good}", {"scheduled_for": "2026-01-05T09:00"}
        )
        assert naive["status"] == "error" and "offset" in naive["error"]

        # SIGHUP: the daemon reloads; the schedule fixed in the store is picked up
        await update_schedule(store, bad, timezone="Asia/Tokyo")
        node.process.signal(signal.SIGHUP)

        async def loaded() -> bool:
            data = (await asyncio.to_thread(call, "GET", "/api/scheduler/status"))["data"]
            return bool(data["schedules_loaded"] == 2 and not data["schedules_disabled"])

        await _until(loaded)
        reload = (await asyncio.to_thread(call, "POST", "/api/scheduler/reload"))["data"]
        assert reload["ok"] and (reload["added"], reload["removed"]) == (0, 0)
    finally:
        node.stop()
        await store.stop()


async def test_the_definitions_watcher_reloads_by_itself(tmp_path: Path) -> None:
    store, url = await _store(tmp_path)
    config_id = await seed_config(store, path=str(tmp_path / "src.db"))
    node = Node(tmp_path / "n", url, "node-w", reload_interval_seconds=1.0)
    try:
        await node.ready()
        added = await add_schedule(store, config_id, "0 3 * * *")

        async def seen() -> bool:
            jobs = await asyncio.to_thread(node.request, "GET", "/api/scheduler/jobs")
            return added in {job["schedule_id"] for job in jobs["data"]["jobs"]}

        await _until(seen)
        status = await asyncio.to_thread(node.request, "GET", "/api/scheduler/status")
        assert status["data"]["last_reload"]["source"] == "definitions changed"
    finally:
        node.stop()
        await store.stop()


def test_next_for_an_expression_prints_utc_then_local(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["next", "--cron", "30 2 * * *", "--tz", "Europe/Berlin", "--after", "2026-03-28T12:00Z"]
    assert cli.main([*argv, "-n", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "2026-03-29T01:00:00Z  2026-03-29T03:00:00+02:00 Europe/Berlin",
        "2026-03-30T00:30:00Z  2026-03-30T02:30:00+02:00 Europe/Berlin",
    ]
    assert cli.main([*argv, "-n", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"utc": "2026-03-29T01:00:00Z", "local": "2026-03-29T03:00:00+02:00"}
    ]
    assert cli.main(["next", "--cron", "61 * * * *", "--tz", "UTC"]) == 1
    assert "invalid cron expression" in capsys.readouterr().err


async def test_next_for_a_stored_schedule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, url = await _store(tmp_path)
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "0 * * * *", timezone="Australia/Lord_Howe")
    await store.stop()
    config, _ = write_config(tmp_path, url)
    argv = ["next", str(schedule_id), "-c", str(config), "--after", "2026-04-04T12:30Z", "-n", "4"]
    code = await asyncio.to_thread(cli.main, argv)
    assert code == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == [
        "2026-04-04T13:00:00Z",
        "2026-04-04T14:00:00Z",
        "2026-04-04T15:30:00Z",
        "2026-04-04T16:30:00Z",
    ]
