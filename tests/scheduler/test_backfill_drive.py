"""A backfill driven in-process against every store backend (the runner without a daemon):
a fire its calendar moves records where it went, as the live scheduler does; a cancelled
backfill's started runs are cancelled by the node that owns them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from reporthubd import domain
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.scheduler import backfill
from reporthubd.scheduler.backfill_runner import BackfillRunner, Drive
from reporthubd.store import backfill_fires, backfills, schema
from reporthubd.store.database import Store
from tests.scheduler.helpers import add_schedule, executions, seed_config, settings

NODE = "node-a"


async def _taken(store: Store, backfill_id: str) -> backfills.Backfill:
    taken = await backfills.take(store, node_id=NODE, lease_seconds=120)
    assert [b.id for b in taken] == [backfill_id]
    return taken[0]


async def _complete(store: Store, execution_id: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.executions)
            .where(schema.executions.c.id == execution_id)
            .values(status="COMPLETED", finished_at=datetime.now(UTC), row_count=1)
        )


async def test_a_fire_its_calendar_moves_records_where_it_went(store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.calendars).values(name="de-berlin", country="DE", subdivision="BE")
        )
    config_id = await seed_config(store)
    schedule_id = await add_schedule(
        store,
        config_id,
        "0 9 * * 1-5",
        timezone="Europe/Berlin",
        is_active=False,
        calendar_name="de-berlin",
        calendar_policy="next_business_day",
    )
    # Easter 2026 in Berlin: Good Friday 3 April and Easter Monday 6 April both move to Tuesday
    asked = await backfill.request(
        store,
        settings(),
        schedule_id,
        {"from": "2026-04-02", "to": "2026-04-07", "concurrency": 4, "by": "test"},
    )
    assert asked.backfill_id is not None
    pending: set[asyncio.Task[None]] = set()

    def submit(execution_id: str, *, deliver: bool = True) -> None:
        task = asyncio.create_task(_complete(store, execution_id))
        pending.add(task)
        task.add_done_callback(pending.discard)

    runner = BackfillRunner(
        store=store,
        settings=settings(),
        node_id=NODE,
        lifecycle=Lifecycle(store, node_id=NODE),
        submit=submit,
    )
    found = await _taken(store, asked.backfill_id)
    async with asyncio.timeout(60):
        await Drive(runner, found).run()

    rows = await executions(store, schedule_id)
    got = {
        r.scheduled_for.astimezone(UTC).isoformat(): (
            r.shifted_to.astimezone(UTC).isoformat() if r.shifted_to else None,
            r.shift_reason,
        )
        for r in rows
    }
    moved = "next_business_day: runs 2026-04-07 09:00 Europe/Berlin"
    assert sorted(got) == [
        "2026-04-02T07:00:00+00:00",
        "2026-04-03T07:00:00+00:00",
        "2026-04-06T07:00:00+00:00",
        "2026-04-07T07:00:00+00:00",
    ]
    assert got["2026-04-02T07:00:00+00:00"] == (None, None)
    assert got["2026-04-07T07:00:00+00:00"] == (None, None)
    for friday_or_monday in ("2026-04-03T07:00:00+00:00", "2026-04-06T07:00:00+00:00"):
        shifted_to, reason = got[friday_or_monday]
        assert shifted_to == "2026-04-07T07:00:00+00:00"
        assert reason is not None and reason.endswith(moved), reason
        assert reason.startswith("holiday: "), reason
    assert all(r.status == "COMPLETED" and r.trigger_type == "backfill" for r in rows)


async def test_cancelling_a_backfill_cancels_its_started_runs_on_their_node(
    store: Store,
) -> None:
    config_id = await seed_config(store)
    schedule_id = await add_schedule(
        store, config_id, "0 7 * * *", timezone="Europe/Berlin", is_active=False
    )
    asked = await backfill.request(
        store,
        settings(),
        schedule_id,
        {"from": "2026-05-01", "to": "2026-05-06", "concurrency": 2, "by": "test"},
    )
    assert asked.backfill_id is not None
    submitted: list[str] = []
    lifecycle = Lifecycle(store, node_id=NODE)
    # The engine's cancel of a run queued in its pool that has not started (Engine.cancel
    # takes this path for a PENDING row): the submitted runs never start here.
    runner = BackfillRunner(
        store=store,
        settings=settings(),
        node_id=NODE,
        lifecycle=lifecycle,
        submit=lambda execution_id, *, deliver=True: submitted.append(execution_id),
        cancel=lifecycle.cancel_pending,
    )
    found = await _taken(store, asked.backfill_id)
    drive = asyncio.create_task(Drive(runner, found).run(), name="test-backfill-drive")
    try:
        async with asyncio.timeout(30):
            while len(submitted) < 2:
                await asyncio.sleep(0.05)
        assert await runner.cancel_runs() == []  # not cancelled: nothing to do
        await backfills.cancel(store, asked.backfill_id, by="alice")
        # another node owns none of these runs: it cancels nothing
        assert await backfill_fires.cancelled_runs(store, node_id="node-b") == []
        assert sorted(await runner.cancel_runs()) == sorted(submitted)
        async with asyncio.timeout(30):
            await drive
    finally:
        drive.cancel()

    rows = await executions(store, schedule_id)
    assert sorted(r.id for r in rows) == sorted(submitted)
    for row in rows:
        assert row.status == domain.ExecutionStatus.CANCELLED.value
        assert row.error_message == "backfill cancelled by alice"
    fire_rows = await backfill_fires.fires(store, asked.backfill_id)
    assert [f.status for f in fire_rows].count("CANCELLED") == 2
    assert [f.status for f in fire_rows].count("PENDING") == 4
    progress: Any = (await backfills.progress(store, asked.backfill_id)).as_json()
    assert progress["status"] == "CANCELLED"
    assert progress["done"] == 2 and progress["running"] == 0
    assert progress["cancelled_by"] == "alice"
