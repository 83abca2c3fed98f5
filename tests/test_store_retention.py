"""The janitor's retention of the daemon's own ledgers (store/retention.py), on every store:
settled notices, waits, backfills with their fires, and late fires older than the cutoff go;
anything still someone's work stays, whatever its age; young rows stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from reporthubd.store import retention, schema
from reporthubd.store.database import Store
from tests.engine.conftest import add_config, add_datasource

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=200)
YOUNG = NOW - timedelta(days=3)
CUTOFF = NOW - timedelta(days=90)


async def _ids(store: Store, column: sa.Column[object]) -> set[object]:
    async with store.engine.connect() as conn:
        return set((await conn.execute(sa.select(column))).scalars())


async def test_settled_old_ledger_rows_go_and_live_or_young_ones_stay(store: Store) -> None:
    ds = await add_datasource(store, "sqlite", {"path": "/nonexistent.db"})
    config = await add_config(store, ds, "SELECT 1 AS one")
    notices = [
        ("n-old-sent", "SENT", OLD),
        ("n-old-failed", "FAILED", OLD),
        ("n-old-retrying", "RETRYING", OLD),  # still being sent: kept
        ("n-old-pending", "PENDING", OLD),
        ("n-young-sent", "SENT", YOUNG),
    ]
    runs = [("e-done", "COMPLETED"), ("e-pending", "PENDING")]
    waits = [
        ("e-done", "RELEASED", OLD),  # its run ended: goes
        ("e-pending", "RELEASED", OLD),  # handed to the pool, not started: kept
        ("e-gone", "EXPIRED", OLD),  # its run pruned already: goes
        ("e-waiting", "WAITING", OLD),  # still waiting (a long deadline): kept
        ("e-young", "EXPIRED", YOUNG),
    ]
    backfills = [("b-old-done", "COMPLETED", OLD), ("b-old-running", "RUNNING", None)]
    backfills += [("b-young-done", "CANCELLED", YOUNG)]
    fires_per_backfill = 7  # more than one batch of 3
    async with store.engine.begin() as conn:
        for nid, status, at in notices:
            await conn.execute(
                sa.insert(schema.notices).values(
                    id=nid, incident_key=f"k:{nid}", event="failed", target="owners",
                    status=status, created_at=at, config_id=config,
                )
            )  # fmt: skip
        for eid, status in runs:
            await conn.execute(
                sa.insert(schema.executions).values(
                    id=eid, config_id=config, trigger_type="schedule", status=status
                )
            )
        for eid, status, at in waits:
            await conn.execute(
                sa.insert(schema.waits).values(
                    execution_id=eid, schedule_id=1, config_id=config, scheduled_for=at,
                    status=status, deadline_at=at, next_check_at=at, created_at=at,
                    decided_at=None if status == "WAITING" else at,
                )
            )  # fmt: skip
        for bid, status, finished in backfills:
            await conn.execute(
                sa.insert(schema.backfills).values(
                    id=bid, schedule_id=1, config_id=config, range_from=OLD, range_to=OLD,
                    status=status, created_at=OLD, finished_at=finished,
                )
            )  # fmt: skip
            for n in range(fires_per_backfill):
                await conn.execute(
                    sa.insert(schema.backfill_fires).values(
                        backfill_id=bid, scheduled_for=OLD + timedelta(hours=n), status="DONE"
                    )
                )
        for n, at in enumerate((OLD, OLD, YOUNG)):
            await conn.execute(
                sa.insert(schema.late_fires).values(
                    schedule_id=n + 1, scheduled_for=at, config_id=config, created_at=at
                )
            )

    counts = await retention.prune_ledgers(store, before=CUTOFF, batch_size=3)

    assert counts == {
        "notices_pruned": 2,
        "waits_pruned": 2,
        "backfills_pruned": 1,
        "late_fires_pruned": 2,
    }
    assert await _ids(store, schema.notices.c.id) == {
        "n-old-retrying",
        "n-old-pending",
        "n-young-sent",
    }
    assert await _ids(store, schema.waits.c.execution_id) == {"e-pending", "e-waiting", "e-young"}
    assert await _ids(store, schema.backfills.c.id) == {"b-old-running", "b-young-done"}
    assert await _ids(store, schema.backfill_fires.c.backfill_id) == {
        "b-old-running",
        "b-young-done",
    }
    async with store.engine.connect() as conn:
        fires = await conn.scalar(sa.select(sa.func.count()).select_from(schema.backfill_fires))
    assert fires == 2 * fires_per_backfill
    assert await _ids(store, schema.late_fires.c.schedule_id) == {3}
    # A second pass finds nothing more.
    again = await retention.prune_ledgers(store, before=CUTOFF, batch_size=3)
    assert set(again.values()) == {0}
