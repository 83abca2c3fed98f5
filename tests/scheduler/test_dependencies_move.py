"""A waiting run survives its node (issue 20, item 2): two daemons on MariaDB; the one that
claimed the fire is SIGKILLed while the run waits for its readiness probe; the other adopts it,
keeps checking, and runs it once the probe is true; the killed node, restarted, runs nothing
again."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reporthubd.store import schema
from tests.scheduler.helpers import add_schedule, executions, seed_config
from tests.scheduler.nodes import Node, mariadb_store
from tests.scheduler.test_dependencies_daemon import PROBE, SCHEDULER, _cron_at, _until


async def test_a_waiting_run_moves_to_another_node_when_its_node_is_killed(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE ready_flag (at TEXT)")
    async with mariadb_store(tmp_path) as (store, url):
        config_id = await seed_config(store, "probed", path=str(source))
        fire = (datetime.now(UTC) + timedelta(seconds=15)).replace(microsecond=0)
        schedule_id = await add_schedule(
            store,
            config_id,
            _cron_at(fire),
            timezone="UTC",
            readiness_query=PROBE,
            wait_deadline="+120s",
        )
        nodes = {n: Node(tmp_path / n, url, f"node-{n}", **SCHEDULER) for n in ("a", "b")}
        restarted = None
        try:
            for node in nodes.values():
                await node.ready()

            async def claimed() -> Any:
                rows = await executions(store, schedule_id)
                return rows[0] if rows and rows[0].node_id else None

            run = await _until("the fire claimed", claimed)
            await asyncio.sleep(2)  # it waits, checked now and then
            assert (await executions(store, schedule_id))[0].status == "PENDING"
            owner = run.node_id.removeprefix("node-")
            survivor = "b" if owner == "a" else "a"
            nodes[owner].process.signal(signal.SIGKILL)
            nodes[owner].process.wait(10)
            await asyncio.sleep(5)  # past node_lost_after_seconds: its run and checks move
            with sqlite3.connect(source) as db:
                db.execute("INSERT INTO ready_flag VALUES ('now')")

            async def done() -> Any:
                rows = await executions(store, schedule_id)
                return rows if rows and rows[0].status == "COMPLETED" else None

            rows = await _until("the run completed on the other node", done)
            assert rows[0].node_id == f"node-{survivor}"
            # the killed node comes back: nothing runs twice
            restarted = Node(tmp_path / f"{owner}2", url, f"node-{owner}", **SCHEDULER)
            await restarted.ready()
            await asyncio.sleep(3)
        finally:
            for node in nodes.values():
                node.stop()
            if restarted is not None:
                restarted.stop()
        rows = await executions(store, schedule_id)
        assert [(r.status, r.attempt) for r in rows] == [("COMPLETED", 0)]
        async with store.engine.connect() as conn:
            wait = (await conn.execute(sa.select(schema.waits))).one()
        assert wait.status == "RELEASED" and wait.last_result == "readiness probe true"
