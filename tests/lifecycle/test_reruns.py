"""A person's re-run of a fire is the fire's next attempt under the scheduler's claim key
(store/reruns.py), on every store backend: the scheduler's later claim of a fire a re-run took
runs nothing, a re-run of a fire that is running is refused naming the run, two re-runs at the
same moment make one run, and a backfill with reprocess `failed` sees the re-run's outcome."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from reporthubd import backfill_rules, domain
from reporthubd.lifecycle.events import Events, LifecycleEvent
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.store import claims, reruns, schema
from reporthubd.store.backfills import attempt_record
from reporthubd.store.database import Store
from tests.engine.conftest import add_config, add_datasource, add_schedule

S = domain.ExecutionStatus
ME = "node-me"
FIRE = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


async def _attempts(store: Store, schedule_id: int) -> list[tuple[int, str, str]]:
    e = schema.executions
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(e.c.attempt, e.c.status, e.c.trigger_type)
            .where(e.c.schedule_id == schedule_id, e.c.scheduled_for == FIRE)
            .order_by(e.c.attempt)
        )
        return [(int(r.attempt), r.status, r.trigger_type) for r in rows]


async def _set_status(store: Store, execution_id: str, status: S) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.executions)
            .where(schema.executions.c.id == execution_id)
            .values(status=status.value)
        )


async def test_a_rerun_is_the_fires_next_attempt_and_never_doubles_it(store: Store) -> None:
    source = await add_datasource(store, "sqlite", {"path": ":memory:"})
    config = await add_config(store, source, "SELECT 1 AS one")
    schedule = await add_schedule(store, config, "0 9 * * *")
    events = Events()
    seen: list[LifecycleEvent] = []
    events.subscribe(seen.append)
    life = Lifecycle(store, node_id=ME, events=events)

    # A fire nobody claimed yet: the re-run takes attempt 0, the scheduler's own key, and the
    # scheduler's claim of that fire afterwards inserts nothing.
    first = await life.rerun_fire(config_id=config, schedule_id=schedule, scheduled_for=FIRE)
    assert first.attempt == 0 and first.reason == "no run yet"
    fire = claims.FireClaim(schedule_id=schedule, config_id=config, scheduled_for=FIRE)
    taken, _ = await claims.claim_fires(store, [fire], node_id="node-scheduler")
    assert taken == []
    assert await _attempts(store, schedule) == [(0, "PENDING", "manual")]
    assert [(e.execution_id, e.new) for e in seen] == [(first.execution_id, S.PENDING)]

    # While that attempt is PENDING or RUNNING, a re-run is refused, naming it.
    for active in (S.PENDING, S.RUNNING):
        await _set_status(store, first.execution_id, active)
        with pytest.raises(reruns.FireActive, match=first.execution_id) as refused:
            await life.rerun_fire(config_id=config, schedule_id=schedule, scheduled_for=FIRE)
        assert refused.value.active.status is active and refused.value.active.attempt == 0
    assert len(seen) == 1

    # Once it ended, the re-run is attempt 1; two re-runs at the same moment make one run.
    await _set_status(store, first.execution_id, S.FAILED)
    both = await asyncio.gather(
        life.rerun_fire(config_id=config, schedule_id=schedule, scheduled_for=FIRE),
        life.rerun_fire(config_id=config, schedule_id=schedule, scheduled_for=FIRE),
        return_exceptions=True,
    )
    made = [r for r in both if isinstance(r, reruns.Rerun)]
    refused_now = [r for r in both if isinstance(r, reruns.FireActive)]
    assert len(made) == 1 and len(refused_now) == 1, both
    assert made[0].attempt == 1 and refused_now[0].active.execution_id == made[0].execution_id
    assert await _attempts(store, schedule) == [(0, "FAILED", "manual"), (1, "PENDING", "manual")]

    # A backfill with reprocess `failed` decides from the fire's latest attempt: the re-run's.
    await _set_status(store, made[0].execution_id, S.COMPLETED)
    e = schema.executions
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(e.c.scheduled_for, e.c.attempt, e.c.id, e.c.status, e.c.error_message).where(
                e.c.schedule_id == schedule
            )
        )
        history = backfill_rules.histories((r.scheduled_for, attempt_record(r)) for r in rows)
    decision = backfill_rules.decide(history[FIRE], backfill_rules.Reprocess.FAILED)
    assert decision.attempt is None and decision.follow is not None
    assert decision.follow.execution_id == made[0].execution_id

    # The re-run carries the parameters it was given (None: the fire's own, resolved at run).
    again = await life.rerun_fire(
        config_id=config, schedule_id=schedule, scheduled_for=FIRE, parameters={"top": 3}
    )
    async with store.engine.connect() as conn:
        parameters = await conn.scalar(
            sa.select(e.c.parameters).where(e.c.id == again.execution_id)
        )
    assert again.attempt == 2 and parameters == {"top": 3}
