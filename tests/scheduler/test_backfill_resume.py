"""Backfill acceptance (issue 20, item 3), a daemon SIGKILLed mid-backfill: `0 6 * * *`
America/New_York from 20 October to 8 November 2026 (summer time ends 1 November) with
--no-deliver, on MariaDB. Restarted, the daemon resumes where it stopped: no fire that had run
runs again, every fire ends with one COMPLETED run at 06:00 New York time, and nothing is
delivered, also for a run adopted or recovered after the kill."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from reporthubd.store import schema
from tests.scheduler.helpers import add_schedule, executions, seed_config
from tests.scheduler.nodes import Node, mariadb_store
from tests.scheduler.test_backfill_daemon import _NY, BUSY_QUERY, FAST, _api, _finished, _until


async def test_a_daemon_killed_mid_backfill_resumes_where_it_stopped(tmp_path: Path) -> None:
    async with mariadb_store(tmp_path) as (store, url):
        query = BUSY_QUERY.format(n=300_000)
        config_id = await seed_config(store, query=query, path=str(tmp_path / "src.db"))
        share = tmp_path / "share"
        share.mkdir()
        async with store.engine.begin() as conn:  # --no-deliver: nothing may reach it
            await conn.execute(
                sa.insert(schema.deliveries).values(
                    config_id=config_id,
                    name="share",
                    method="file_share",
                    delivery_config={"path": str(share)},
                )
            )
        schedule_id = await add_schedule(
            store, config_id, "0 6 * * *", timezone="America/New_York", is_active=False
        )
        node = Node(tmp_path / "a", url, "node-a", **FAST)
        try:
            await node.ready()
            body = {"from": "2026-10-20", "to": "2026-11-08", "no_deliver": True}
            bad = await _api(node, "POST", f"/api/schedules/{schedule_id}/backfill", body)
            assert bad["error"].startswith("no_deliver: unknown key"), bad
            body = {"from": "2026-10-20", "to": "2026-11-08", "deliver": False}
            answer = await _api(node, "POST", f"/api/schedules/{schedule_id}/backfill", body)
            backfill_id = answer["data"]["backfill_id"]
            total = answer["data"]["to_run"]
            assert total == 20

            async def some_done() -> bool:
                data = (await _api(node, "GET", f"/api/backfills/{backfill_id}"))["data"]
                return bool(5 <= data["done"] < total)

            await _until("a few fires done", some_done)
            node.process.signal(signal.SIGKILL)
            node.process.wait(10)
            before = {r.id: r for r in await executions(store, schedule_id)}
            finished_before = {r.scheduled_for for r in before.values() if r.status == "COMPLETED"}
            assert 5 <= len(finished_before) < total
            node.stop()
            node = Node(tmp_path / "a2", url, "node-a", **FAST)
            await node.ready()
            done = await _finished(node, backfill_id)
            assert (done["status"], done["done"], done["total"], done["failed"]) == (
                "COMPLETED",
                total,
                total,
                0,
            )
        finally:
            node.stop()
        rows = await executions(store, schedule_id)
        ran = Counter(r.scheduled_for for r in rows if r.status == "COMPLETED")
        assert len(ran) == total and set(ran.values()) == {1}
        for row in rows:  # nothing that had run ran again
            if row.scheduled_for in finished_before:
                assert row.id in before and before[row.id].status == "COMPLETED"
        others = [r for r in rows if r.status != "COMPLETED"]
        assert all("node lost" in (r.error_message or "") for r in others), others
        # no delivery, also for the runs the restarted daemon adopted
        assert list(share.iterdir()) == []
        async with store.engine.connect() as conn:
            logs = (await conn.execute(sa.select(schema.delivery_logs))).all()
        assert logs == []
        # the New York fires keep 06:00 local across the end of summer time (1 November)
        local = {r.scheduled_for.astimezone(_NY).hour for r in rows}
        assert local == {6}
