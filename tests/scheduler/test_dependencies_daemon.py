"""Dependencies and readiness (issue 20, item 2) on three `reporthubd run` processes sharing
MariaDB. Every schedule fires once, at the same instant T:

- `late_b` waits for report `late_a`, whose query takes a few seconds: b runs once, after a;
- `failed_b` waits for `failed_a`, whose query fails: b's deadline (+8 s) passes and `skip`
  records it SKIPPED, once, with what it waited for;
- `probe_b` waits for its readiness probe (`SELECT count(*) > 0 FROM ready_flag`), which turns
  true 20 s after T: b runs once, then.

While they wait, the runs are visible (GET /api/waits) with what they wait for.

(A waiting run whose node is killed: test_dependencies_move.py.)
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reporthubd.store import schema
from tests.scheduler.helpers import add_schedule, executions, seed_config
from tests.scheduler.nodes import Node, mariadb_store

# Report A must still be running when the test first lists the waits (3 s after the fire):
# 4,000,000 steps took 1.2 s on a quiet machine, so A had finished and B had been released.
SLOW = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000000) "
    "SELECT max(x) AS n FROM c"
)
BROKEN = "SELECT * FROM nowhere"
PROBE = "SELECT count(*) > 0 FROM ready_flag WHERE :window_end > :window_start"
SCHEDULER = {
    "heartbeat_interval_seconds": 0.5,
    "node_lost_after_seconds": 3.0,
    "wait_check_max_seconds": 1.0,
}


def _page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
        return str(answer.read().decode())


def _cron_at(when: datetime) -> str:
    return f"{when.second} {when.minute} {when.hour} * * *"


async def _until(what: str, check: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f} s")
        await asyncio.sleep(0.3)


async def test_runs_wait_for_their_dependencies_and_probe_on_three_nodes(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE ready_flag (at TEXT)")
    async with mariadb_store(tmp_path) as (store, url):
        path = str(source)
        ids = {
            "late_a": await seed_config(store, "late_a", query=SLOW, path=path),
            "late_b": await seed_config(store, "late_b", path=path),
            "failed_a": await seed_config(
                store, "failed_a", query="SELECT * FROM nowhere", path=path
            ),
            "failed_b": await seed_config(store, "failed_b", path=path),
            "probe_b": await seed_config(store, "probe_b", path=path),
        }
        fire = (datetime.now(UTC) + timedelta(seconds=20)).replace(microsecond=0)
        cron = _cron_at(fire)
        schedules = {
            "late_a": await add_schedule(store, ids["late_a"], cron, timezone="UTC"),
            "late_b": await add_schedule(
                store,
                ids["late_b"],
                cron,
                timezone="UTC",
                depends_on=["late_a"],
                wait_deadline="+120s",
            ),
            "failed_a": await add_schedule(store, ids["failed_a"], cron, timezone="UTC"),
            "failed_b": await add_schedule(
                store,
                ids["failed_b"],
                cron,
                timezone="UTC",
                depends_on=[ids["failed_a"]],
                wait_deadline="+8s",
                wait_policy="skip",
            ),
            "probe_b": await add_schedule(
                store,
                ids["probe_b"],
                cron,
                timezone="UTC",
                readiness_query=PROBE,
                wait_deadline="+120s",
            ),
        }
        nodes = [Node(tmp_path / n, url, f"node-{n}", **SCHEDULER) for n in ("a", "b", "c")]
        try:
            for node in nodes:
                await node.ready()
            await asyncio.sleep(max(0.0, (fire - datetime.now(UTC)).total_seconds() + 3))

            async def all_waiting() -> list[dict[str, Any]] | None:
                answer = await asyncio.to_thread(nodes[1].request, "GET", "/api/waits")
                found = answer["data"]["waits"]
                return (
                    found
                    if {w["schedule_id"] for w in found}
                    >= {schedules["late_b"], schedules["probe_b"]}
                    else None
                )

            seen = await _until("the waiting runs listed", all_waiting)
            by_schedule = {w["schedule_id"]: w for w in seen}
            assert by_schedule[schedules["late_b"]]["waiting_for"] == (
                f"report 'late_a' COMPLETED for {fire.date().isoformat()} (UTC)"
            )
            assert by_schedule[schedules["probe_b"]]["waiting_for"] == (
                "the readiness probe to return true"
            )
            page = await asyncio.to_thread(_page, nodes[2].port)
            assert "Waiting for dependencies" in page
            assert "report &#x27;late_a&#x27; COMPLETED for" in page

            async def flag_time() -> bool:
                return datetime.now(UTC) >= fire + timedelta(seconds=20)

            await _until("20 s after the fire", flag_time)
            with sqlite3.connect(source) as db:
                db.execute("INSERT INTO ready_flag VALUES ('now')")
            flagged = datetime.now(UTC)

            async def settled() -> bool:
                rows = [r for r in await executions(store) if r.schedule_id in schedules.values()]
                return len(rows) == 5 and all(
                    r.status in ("COMPLETED", "FAILED", "SKIPPED") for r in rows
                )

            await _until("every fire settled", settled)
            await asyncio.sleep(2)  # anything doubled would show now
        finally:
            for node in nodes:
                node.stop()
        rows = {r.schedule_id: r for r in await executions(store)}
        assert len(await executions(store)) == 5  # one execution per fire, nothing doubled
        assert all(r.scheduled_for == fire for r in rows.values())
        late_a, late_b = rows[schedules["late_a"]], rows[schedules["late_b"]]
        assert late_a.status == "COMPLETED" and late_b.status == "COMPLETED"
        assert late_b.started_at >= late_a.finished_at  # b ran after a
        failed_b = rows[schedules["failed_b"]]
        assert rows[schedules["failed_a"]].status == "FAILED"
        assert failed_b.status == "SKIPPED" and failed_b.started_at is None
        assert failed_b.error_message.startswith("waited until ")
        assert "report 'failed_a' COMPLETED" in failed_b.error_message
        assert failed_b.error_message.endswith(f"not yet COMPLETED: {ids['failed_a']}")
        probe_b = rows[schedules["probe_b"]]
        assert probe_b.status == "COMPLETED" and probe_b.started_at >= flagged
        async with store.engine.connect() as conn:
            waits = {r.schedule_id: r for r in await conn.execute(sa.select(schema.waits))}
        assert waits[schedules["late_b"]].status == "RELEASED"
        assert waits[schedules["failed_b"]].status == "EXPIRED"
        assert waits[schedules["probe_b"]].last_result == "readiness probe true"
        assert schedules["late_a"] not in waits  # a schedule without a rule never waits
