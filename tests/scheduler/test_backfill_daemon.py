"""Backfill acceptance (issue 20, item 3) with real `reporthubd run` processes over MariaDB.

- March 2026 for `30 2 * * *` Europe/Berlin (summer time from 29 March): one run per fire with
  its logical time; the spring-forward day fires once, at 03:00 CEST (the classic cron rule for
  a wall time in the gap). "We fixed the query; re-run March": the first five days are run with
  a broken query (they fail), the query is fixed, the month is backfilled (the failed ones are
  kept), then `reprocess failed` runs exactly those five as their next attempt; each dry run
  lists exactly what then runs.
- Backfill beside the live scheduler on two nodes: the backfill's fires are also the missed
  fires both nodes' catch-up claims (run_all) and the per-second fires they claim live; every
  fire has one attempt-0 row and one run, nothing is doubled.
(A daemon SIGKILLed mid-backfill: test_backfill_resume.py.)
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from reporthubd.config import Settings
from reporthubd.scheduler import backfill
from reporthubd.store import schema
from tests.scheduler.helpers import add_schedule, executions, seed_config, update_schedule
from tests.scheduler.nodes import Node, mariadb_store

FAST = {"heartbeat_interval_seconds": 0.5, "node_lost_after_seconds": 3.0}
# A query that takes a few tenths of a second on SQLite: a backfill is caught mid-way.
_NY = ZoneInfo("America/New_York")
BUSY_QUERY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "
    "SELECT max(x) AS n FROM c"
)


async def _until(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f} s")
        await asyncio.sleep(0.3)


async def _api(node: Node, method: str, path: str, body: Any = None) -> dict[str, Any]:
    return await asyncio.to_thread(node.request, method, path, body)


async def _finished(node: Node, backfill_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        answer = await _api(node, "GET", f"/api/backfills/{backfill_id}")
        data = answer["data"]
        return data if data["status"] not in ("PENDING", "RUNNING") else None

    found: dict[str, Any] = await _until(f"backfill {backfill_id} ends", check)
    return found


def _page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
        return str(answer.read().decode())


def _z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_a_dst_month_runs_each_fire_once_and_reprocess_failed_runs_the_failed(
    tmp_path: Path,
) -> None:
    async with mariadb_store(tmp_path) as (store, url):
        config_id = await seed_config(
            store, query="SELECT * FROM missing_table", path=str(tmp_path / "src.db")
        )
        schedule_id = await add_schedule(
            store, config_id, "30 2 * * *", timezone="Europe/Berlin", is_active=False
        )
        node = Node(tmp_path / "a", url, "node-a", **FAST)
        try:
            await node.ready()
            path = f"/api/schedules/{schedule_id}/backfill"
            bad = await _api(node, "POST", path, {"from": "2026-03-31", "to": "2026-03-01"})
            assert bad["status"] == "error" and bad["error"].startswith("from: "), bad
            assert "is after to" in bad["error"]
            bad = await _api(node, "POST", path, {"from": "2024-01-01", "to": "2026-03-01"})
            assert bad["error"].startswith("to: the range spans"), bad
            assert "scheduler.backfill_max_days (366)" in bad["error"]
            bad = await _api(node, "POST", path, {"from": "2026-03-01", "to": "x"})
            assert bad["error"].startswith("to: 'x' is not an ISO date"), bad
            bad = await _api(node, "POST", "/api/schedules/999999/backfill", {"from": "2026-03-01"})
            assert bad["error"] == "schedule_id: no schedule 999999 in report_schedules", bad

            # the first five days run with the broken query: all fail
            first = await _api(node, "POST", path, {"from": "2026-03-01", "to": "2026-03-05"})
            assert first["status"] == "success", first
            done = await _finished(node, first["data"]["backfill_id"])
            assert (done["status"], done["total"], done["done"], done["failed"]) == (
                "COMPLETED",
                5,
                5,
                5,
            )
            async with store.engine.begin() as conn:
                await conn.execute(
                    sa.update(schema.configs)
                    .where(schema.configs.c.id == config_id)
                    .values(query_text="SELECT 1 AS one")
                )

            month = {"from": "2026-03-01", "to": "2026-03-31", "dry_run": True}
            dry = (await _api(node, "POST", path, month))["data"]
            assert dry["backfill_id"] is None and dry["fires"] == 31 and dry["to_run"] == 26
            assert {f["reason"] for f in dry["not_run"]} == {"has a run: attempt 0 FAILED"}
            listed = [_z(f["scheduled_for"]) for f in dry["runs"]]
            answer = await _api(node, "POST", path, {**month, "dry_run": False})
            assert answer["status"] == "success", answer
            done = await _finished(node, answer["data"]["backfill_id"])
            assert (done["total"], done["done"], done["failed"]) == (26, 26, 0)
            page = await asyncio.to_thread(_page, node.port)
            assert answer["data"]["backfill_id"] in page and "26/26 done · 0 failed" in page

            rows = await executions(store, schedule_id)
            fires = [row.scheduled_for for row in rows]
            expected = _berlin_march_fires()
            assert sorted(set(fires)) == expected  # one fire per day, the right instants
            assert len(fires) == 31  # exactly one row per fire
            assert [r.scheduled_for for r in rows if r.status == "COMPLETED"] == listed
            spring = [r for r in rows if r.scheduled_for.date().isoformat() == "2026-03-29"]
            assert [r.scheduled_for for r in spring] == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC)]
            assert {(r.trigger_type, r.attempt) for r in rows} == {("backfill", 0)}

            again = {**month, "reprocess": "failed"}
            dry = (await _api(node, "POST", path, again))["data"]
            failed = [r.scheduled_for for r in rows if r.status == "FAILED"]
            assert [_z(f["scheduled_for"]) for f in dry["runs"]] == failed == expected[:5]
            assert {f["reason"] for f in dry["runs"]} == {"re-run: attempt 0 FAILED"}
            answer = await _api(node, "POST", path, {**again, "dry_run": False})
            done = await _finished(node, answer["data"]["backfill_id"])
            assert (done["total"], done["done"], done["failed"]) == (5, 5, 0)
            rerun = [r for r in await executions(store, schedule_id) if r.attempt == 1]
            assert [r.scheduled_for for r in rerun] == failed
            assert {r.status for r in rerun} == {"COMPLETED"}
            assert len(await executions(store, schedule_id)) == 36

            nothing = (await _api(node, "POST", path, {**month, "reprocess": "failed"}))["data"]
            assert nothing["to_run"] == 0 and nothing["backfill_id"] is None
            listing = await _api(node, "GET", f"/api/backfills?schedule_id={schedule_id}")
            assert [b["status"] for b in listing["data"]["backfills"]] == ["COMPLETED"] * 3
        finally:
            node.stop()


def _berlin_march_fires() -> list[datetime]:
    """02:30 Berlin each day of March 2026, by hand: 01:30 UTC (CET) up to the 28th, the 29th
    at 03:00 CEST (02:30 does not exist that day) = 01:00 UTC, then 00:30 UTC (CEST)."""
    out = [datetime(2026, 3, day, 1, 30, tzinfo=UTC) for day in range(1, 29)]
    out.append(datetime(2026, 3, 29, 1, 0, tzinfo=UTC))
    out += [datetime(2026, 3, day, 0, 30, tzinfo=UTC) for day in (30, 31)]
    return out


async def test_backfill_beside_the_live_scheduler_on_two_nodes_doubles_nothing(
    tmp_path: Path,
) -> None:
    async with mariadb_store(tmp_path) as (store, url):
        query = BUSY_QUERY.format(n=100_000)
        config_id = await seed_config(store, query=query, path=str(tmp_path / "src.db"))
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=40)
        schedule_id = await add_schedule(
            store,
            config_id,
            "* * * * * *",
            misfire_policy="run_all",
            misfire_grace_seconds=600,
            is_active=False,
            last_run_at=start,
        )
        settings = Settings.model_validate({"execution": {"max_concurrent_executions": 4}})
        requested = await backfill.request(
            store,
            settings,
            schedule_id,
            {"from": (start + timedelta(seconds=1)).isoformat(), "to": "2099-01-01"},
        )
        assert requested.backfill_id is not None and requested.plan.clipped_to_now
        planned = [fire.scheduled_for for fire in requested.plan.to_run]
        assert len(planned) >= 39
        # node a reloads rarely: the schedule stays inactive there; it runs the backfill
        a = Node(tmp_path / "a", url, "node-a", reload_interval_seconds=60.0, **FAST)
        b = None
        try:
            await a.ready()  # the schedule is inactive: node a runs the backfill alone

            async def some_done() -> bool:
                path = f"/api/backfills/{requested.backfill_id}"
                return bool((await _api(a, "GET", path))["data"]["done"] >= 5)

            await _until("a few backfilled fires", some_done)
            # Now the schedule goes live on node b, whose start catches up the fires missed
            # since last_run_at (run_all): the same fires the backfill works on.
            await update_schedule(store, schedule_id, is_active=True)
            b = Node(tmp_path / "b", url, "node-b", reload_interval_seconds=1.0, **FAST)
            await b.ready()
            done = await _finished(b, requested.backfill_id)
            assert (done["total"], done["done"], done["failed"]) == (len(planned), len(planned), 0)
            await asyncio.sleep(3)  # live fires go on beside it
        finally:
            a.stop()
            if b is not None:
                b.stop()
        rows = await executions(store, schedule_id)
        zero = Counter(r.scheduled_for for r in rows if r.attempt == 0)
        assert zero and max(zero.values()) == 1  # the unique key, as ever
        assert [r for r in rows if r.attempt > 0] == []  # nothing run twice
        seconds = sorted(int(t.timestamp()) for t in zero)
        assert seconds == list(range(seconds[0], seconds[-1] + 1))  # nothing lost
        assert set(planned) <= set(zero)
        by_trigger = Counter(r.trigger_type for r in rows if r.scheduled_for in set(planned))
        # both claimed some: the backfill before node b came, node b's catch-up the rest
        assert by_trigger["backfill"] >= 5 and by_trigger["schedule"] >= 1, by_trigger
        ran = Counter(r.scheduled_for for r in rows if r.status == "COMPLETED")
        assert all(ran[fire] == 1 for fire in planned)
        async with store.engine.connect() as conn:
            followed = dict(
                (
                    await conn.execute(
                        sa.select(
                            schema.backfill_fires.c.scheduled_for,
                            schema.backfill_fires.c.execution_id,
                        ).where(schema.backfill_fires.c.backfill_id == requested.backfill_id)
                    )
                ).all()
            )
        # each backfill fire names the one run of that fire, whoever claimed it
        assert {r.scheduled_for: r.id for r in rows if r.scheduled_for in followed} == followed
